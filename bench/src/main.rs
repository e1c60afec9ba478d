//! `kiln-bench` (`make bench`): starts a real Kiln cluster (release `kiln-server` + one
//! `kiln-node` on loopback ports it picks, data in a temporary directory) and prints
//!
//! 1. start latency: API `status/start` → the test guest's banner on the console, next to
//!    `kiln-vmm` alone and QEMU's `microvm` machine booting the same guest;
//! 2. VMM overhead: `kiln-vmm` RSS minus the guest memory it has resident;
//! 3. density: 50 test-guest VMs of 64 MiB started through the API on one node;
//! 4. live migration: Kiln node → node through the API (a second node joins for it) next to
//!    QEMU's `migrate` over TCP, for 256 MiB, 1 GiB and 4 GiB guests, idle and dirtying;
//! 5. HA failover: an HA VM's node killed (agent and VM, SIGKILL) → the guest's banner on the
//!    other node's console, in phases (detection, fencing wait, restart), default timings.
//!
//! Figures are printed, not asserted. Everything it started (server, agent, every `kiln-vmm`
//! and QEMU) is killed at the end, also on error or Ctrl-C.

mod cluster;
mod console;
mod failover;
mod migration;
mod procfs;
mod qmp;
mod shell;
mod stats;
mod vmm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::{Parser, ValueEnum};
use futures::future::{join_all, try_join};
use serde_json::json;

use cluster::{Api, Binaries, Cluster, Scratch, NODE};
use console::ServerConsole;
use stats::{ms, Summary};

/// Kiln benchmarks: start latency (vs QEMU microvm), VMM overhead, density.
#[derive(Debug, Parser)]
#[command(name = "kiln-bench", version)]
struct Args {
    /// Directory with release `kiln-server`, `kiln-node` and `kiln-vmm`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The Kiln test guest (`make guest`).
    #[arg(
        long,
        default_value = "target/guest/x86_64-unknown-none/release/kiln-test-guest"
    )]
    guest: PathBuf,
    /// QEMU binary for the comparison.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Which benchmarks to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,overhead,density,migration,failover"
    )]
    only: Vec<Part>,
    /// Runs per start-latency series.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// VMs in the density test.
    #[arg(long, default_value_t = 50)]
    vms: u32,
    /// Create-and-start requests in flight at once in the density test.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Guest memory of every VM, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: u32,
    /// Server heartbeat period (its default is 1000 ms): how soon the server sees a VM running.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Guest sizes of the migration table, in MiB.
    #[arg(long, value_delimiter = ',', default_value = "256,1024,4096")]
    migration_sizes: Vec<u32>,
    /// Migrations per guest size, load and migrator in the migration table (the table shows
    /// medians and the range).
    #[arg(long, default_value_t = 3)]
    migration_runs: usize,
    /// Rate of the dirtying load in the migration table, MiB/s.
    #[arg(long, default_value_t = 50)]
    migration_dirty: u64,
    /// Failovers in the HA failover table.
    #[arg(long, default_value_t = 5)]
    failover_runs: usize,
    /// QEMU machine type of the migration comparison.
    #[arg(long, default_value = "microvm")]
    qemu_machine: String,
    /// Keep the cluster's directory (logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Latency,
    Overhead,
    Density,
    Migration,
    Failover,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln-bench: error: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        let mut scratch = Scratch::new()?;
        let result = tokio::select! {
            r = run(&args, &mut scratch) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        if args.keep || result.is_err() {
            let dir = scratch.keep();
            eprintln!("kiln-bench: logs kept in {}", dir.display());
        }
        drop(scratch); // kills the cluster and every kiln-vmm / QEMU it started
        result
    });
    if let Err(e) = result {
        eprintln!("kiln-bench: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: &Args, scratch: &mut Scratch) -> anyhow::Result<()> {
    let bin = |name: &str| -> anyhow::Result<PathBuf> {
        let p = args.bin_dir.join(name);
        ensure!(
            p.exists(),
            "{} is missing: `cargo build --release -p kiln-server -p kiln-node -p kiln-vmm` (make bench does)",
            p.display()
        );
        Ok(std::fs::canonicalize(p)?)
    };
    ensure!(
        args.guest.exists(),
        "{} is missing: run `make guest`",
        args.guest.display()
    );
    // A copy inside the bench directory, so every VMM and QEMU names that directory.
    let guest = scratch.path().join("kiln-test-guest");
    std::fs::copy(&args.guest, &guest)?;
    let bins = Binaries {
        server: bin("kiln-server")?,
        node: bin("kiln-node")?,
        vmm: bin("kiln-vmm")?,
        guest,
    };
    let host = host_line();
    println!("kiln-bench: {host}");
    println!(
        "  binaries: {} (release), guest {} ({} bytes), {} MiB per VM",
        args.bin_dir.display(),
        args.guest.display(),
        std::fs::metadata(&args.guest)?.len(),
        args.memory_mib
    );

    let t = Instant::now();
    let (mut cluster, api) = Cluster::start(scratch, &bins, args.heartbeat_ms).await?;
    println!(
        "  cluster: kiln-server {} + node {NODE} at {} (heartbeat {} ms), up in {:.1} s; data in {}",
        cluster.base,
        cluster.node_url,
        args.heartbeat_ms,
        t.elapsed().as_secs_f64(),
        scratch.path().display()
    );
    let server_console = ServerConsole::new(cluster.port, api.ticket.clone(), &cluster.ca_pem)?;

    if args.only.contains(&Part::Latency) {
        latency(args, scratch, &bins, &cluster, &api, &server_console).await?;
    }
    if args.only.contains(&Part::Overhead) {
        overhead(scratch, &bins).await?;
    }
    if args.only.contains(&Part::Density) {
        density(args, &cluster, &api, &server_console).await?;
    }
    if args.only.contains(&Part::Migration) {
        if !cluster.has_node(migration::TARGET_NODE) {
            cluster
                .add_node(scratch, &bins, &api, migration::TARGET_NODE)
                .await?;
        }
        migration_table(args, scratch, &bins, &cluster, &api).await?;
    }
    if args.only.contains(&Part::Failover) {
        if !cluster.has_node(migration::TARGET_NODE) {
            cluster
                .add_node(scratch, &bins, &api, migration::TARGET_NODE)
                .await?;
        }
        failover_table(args, scratch, &bins, &mut cluster, &api).await?;
    }
    Ok(())
}

fn host_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let hw = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.contains(" vmx") || c.contains(" svm"))
        .unwrap_or(false);
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{} CPUs ({model}), {} MiB RAM, KVM: {}",
        procfs::cpus(),
        total / 1024,
        if hw {
            "hardware (vmx/svm)"
        } else {
            "no vmx/svm (PVM: guest ring 0 is emulated)"
        }
    )
}

fn heading(title: &str) {
    println!("\n== {title} ==");
}

/// 1. Start latency.
async fn latency(
    args: &Args,
    scratch: &Scratch,
    bins: &Binaries,
    cluster: &Cluster,
    api: &Api,
    server_console: &ServerConsole,
) -> anyhow::Result<()> {
    let runs = args.runs;
    let mib = args.memory_mib;
    heading(&format!(
        "1. Start latency: start → banner \"{}\" ({runs} runs each, {mib} MiB, 1 vCPU)",
        console::BANNER
    ));

    // Through the API.
    let vmid = 900;
    api.task(
        &format!("/api2/json/nodes/{NODE}/qemu"),
        json!({"vmid": vmid, "name": "bench-latency", "memory": mib, "cores": 1}),
    )
    .await?;
    let node_client = cluster.node_client()?;
    let every = Duration::from_millis(5);
    let (mut task, mut node_banner, mut running, mut server_banner) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut banner = String::new();
    for run in 0..runs {
        api.wait_vm(vmid, "stopped", every, Duration::from_secs(30))
            .await?;
        // The server learns of a VM's state from its heartbeat, and "stopped" was just seen
        // right after one: spread the start over the heartbeat period (stratified, run i at
        // i/runs of it), as a user's click would be, instead of always starting in phase.
        let phase = args.heartbeat_ms * run as u64 / runs.max(1) as u64;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let t0 = Instant::now();
        let body = api
            .post(
                &format!("/api2/json/nodes/{NODE}/qemu/{vmid}/status/start"),
                json!({}),
            )
            .await?;
        let upid = body["data"].as_str().context("no UPID")?.to_owned();
        let via_node = async {
            api.wait_task(&upid, every).await?;
            let done = Instant::now();
            let (seen, line) =
                console::node_banner(&node_client, vmid, Duration::from_secs(30)).await?;
            anyhow::Ok((done, seen, line))
        };
        let via_server = async {
            api.wait_vm(vmid, "running", every, Duration::from_secs(30))
                .await?;
            let up = Instant::now();
            let (seen, _) = server_console
                .banner(NODE, vmid, Duration::from_secs(30))
                .await?;
            anyhow::Ok((up, seen))
        };
        let ((done, nb, line), (up, sb)) = try_join(via_node, via_server).await?;
        task.push(ms(done - t0));
        node_banner.push(ms(nb - t0));
        running.push(ms(up - t0));
        server_banner.push(ms(sb - t0));
        banner = line;
        api.task(
            &format!("/api2/json/nodes/{NODE}/qemu/{vmid}/status/stop"),
            json!({}),
        )
        .await?;
    }
    api.wait_vm(vmid, "stopped", every, Duration::from_secs(30))
        .await?;
    api.delete(&format!("/api2/json/nodes/{NODE}/qemu/{vmid}"))
        .await?;

    let alone = vmm::vmm_alone_series(scratch, bins, mib, runs).await?;
    let qemu = vmm::qemu_series(&args.qemu, &bins.guest, mib, runs).await?;

    let api_server = Summary::of(&server_banner);
    let api_node = Summary::of(&node_banner);
    let alone_s = Summary::of(&alone.times);
    let qemu_s = Summary::of(&qemu.times);
    println!("banner: {banner:?}");
    println!(
        "{:<62} {:>9} {:>9} {:>9} {:>9}",
        "path (ms)", "median", "p95", "min", "max"
    );
    let row = |name: &str, s: &Summary| {
        println!(
            "{name:<62} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            s.median, s.p95, s.min, s.max
        );
    };
    row(
        "Kiln API start → banner on the server console WebSocket",
        &api_server,
    );
    row("  of which: start task OK", &Summary::of(&task));
    row(
        "  of which: server sees it running (next heartbeat)",
        &Summary::of(&running),
    );
    row(
        "Kiln API start → banner on the node console (NodeClient)",
        &api_node,
    );
    row("kiln-vmm alone: process start → banner", &alone_s);
    row("QEMU -M microvm: process start → banner", &qemu_s);
    println!(
        "ratio (median): API→server console / QEMU = {:.1}×, API→node console / QEMU = {:.1}×, kiln-vmm alone / QEMU = {:.2}×",
        api_server.median / qemu_s.median,
        api_node.median / qemu_s.median,
        alone_s.median / qemu_s.median
    );
    println!(
        "ratio (p95):    API→server console / QEMU = {:.1}×, API→node console / QEMU = {:.1}×, kiln-vmm alone / QEMU = {:.2}×",
        api_server.p95 / qemu_s.p95,
        api_node.p95 / qemu_s.p95,
        alone_s.p95 / qemu_s.p95
    );
    println!(
        "QEMU runs ended by the guest's poweroff through isa-debug-exit: {}/{runs} (others killed)",
        qemu.clean_exits
    );
    println!("how:");
    println!(
        "  Kiln: POST /api2/json/nodes/{NODE}/qemu/{vmid}/status/start; start at i/{runs} of a heartbeat after the server saw it stopped; poll the task and status/current every 5 ms; once the task is OK open /v1/vms/{vmid}/console with NodeClient (server's client cert), once the server reports it running open wss://…/api2/kiln/nodes/{NODE}/qemu/{vmid}/console with the session cookie; both replay scroll-back; stop between runs"
    );
    println!(
        "  kiln-vmm: {} --kernel <guest> --memory-mib {mib} --control-socket <dir>/alone-N.sock --console-stdout; stopped through its control socket",
        bins.vmm.display()
    );
    println!(
        "  QEMU:     {}",
        vmm::qemu_command_line(&args.qemu, "<guest>", mib)
    );
    println!(
        "  reproduce: make bench   (or: target/release/kiln-bench --only latency --runs {runs})"
    );
    Ok(())
}

/// 2. VMM overhead.
async fn overhead(scratch: &Scratch, bins: &Binaries) -> anyhow::Result<()> {
    heading("2. VMM overhead: kiln-vmm RSS minus resident guest memory (1 vCPU)");
    let cases: [(u32, Option<u32>); 3] = [(64, None), (64, Some(64)), (128, Some(64))];
    println!(
        "{:<34} {:>9} {:>12} {:>14} {:>14} {:>10}",
        "guest (MiB)", "RSS", "guest res.", "overhead:stats", "overhead:smaps", "≤ 5 MiB?"
    );
    for (i, (mib, fill)) in cases.into_iter().enumerate() {
        let r = vmm::overhead_case(scratch, bins, mib, fill, i).await?;
        let label = match &r.fill_command {
            None => format!("{mib} MiB, idle"),
            Some(c) => format!("{mib} MiB, after `{c}`"),
        };
        let mib_of = |b: u64| b as f64 / 1048576.0;
        println!(
            "{label:<34} {:>8.2}M {:>11.2}M {:>13.2}M {:>13.2}M {:>10}",
            mib_of(r.rss),
            mib_of(r.guest_resident),
            mib_of(r.stats_overhead),
            mib_of(r.smaps_overhead),
            if r.smaps_overhead <= 5 << 20 {
                "yes"
            } else {
                "no"
            }
        );
        if let Some(out) = r.fill_output {
            println!("{:<34} guest said: {out}", "");
        }
    }
    println!("how: kiln-vmm started alone (--console-stdout), 0.5 s after its banner;");
    println!("  overhead:stats = control-socket `stats`.vmm_overhead_bytes (RSS from statm minus mincore of guest RAM);");
    println!("  overhead:smaps = /proc/<pid>/smaps_rollup Rss minus the Rss of the guest-RAM mapping in /proc/<pid>/smaps");
    println!("  Firecracker's promise: ≤ 5 MiB overhead per microVM");
    println!("  reproduce: make bench   (or: target/release/kiln-bench --only overhead)");
    Ok(())
}

/// 3. Density.
async fn density(
    args: &Args,
    cluster: &Cluster,
    api: &Api,
    server_console: &ServerConsole,
) -> anyhow::Result<()> {
    let n = args.vms;
    let mib = args.memory_mib;
    heading(&format!(
        "3. Density: {n} test-guest VMs of {mib} MiB on one node, created+started through the API, {} requests in flight",
        args.batch
    ));
    let vmids: Vec<u32> = (1000..1000 + n).collect();
    let avail_before = procfs::mem_available()?;
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for chunk in vmids.chunks(args.batch.max(1)) {
        let results = join_all(chunk.iter().map(|&vmid| async move {
            let r = api
                .task(
                    &format!("/api2/json/nodes/{NODE}/qemu"),
                    json!({"vmid": vmid, "name": format!("dense{vmid}"), "memory": mib, "cores": 1, "start": 1}),
                )
                .await;
            (vmid, r)
        }))
        .await;
        for (vmid, r) in results {
            if let Err(e) = r {
                failures.push(format!("VM {vmid}: {e:#}"));
            }
        }
    }
    let tasks_done = t0.elapsed();
    for f in &failures {
        println!("  failed: {f}");
    }
    ensure!(failures.is_empty(), "{} VMs did not start", failures.len());
    // All running in the server's view.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.get(&format!("/api2/json/nodes/{NODE}/qemu")).await?;
        let running = list["data"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|v| v["status"] == "running").count());
        if running >= n as usize {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {running}/{n} VMs running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_running = t0.elapsed();
    let mut banners = Vec::new();
    for chunk in vmids.chunks(args.batch.max(1)) {
        let got = join_all(chunk.iter().map(|&vmid| async move {
            (
                vmid,
                server_console
                    .banner(NODE, vmid, Duration::from_secs(30))
                    .await,
            )
        }))
        .await;
        for (vmid, r) in got {
            banners.push((vmid, r.map(|(_, l)| l)?));
        }
    }
    let all_banners = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let avail_after = procfs::mem_available()?;

    // kiln-vmm processes of this cluster.
    let vmm_pids: Vec<u32> =
        cluster::pids_whose_cmdline_contains(&cluster.node_dir.to_string_lossy())
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "kiln-vmm")
            })
            .collect();
    let rss_sum: u64 = vmm_pids.iter().filter_map(|&p| procfs::rss(p).ok()).sum();
    let node_rss = procfs::rss(cluster.node_pid).unwrap_or(0);
    let server_rss = procfs::rss(cluster.server_pid).unwrap_or(0);

    // CPU while all idle.
    let window = Duration::from_secs(5);
    let ticks = |pids: &[u32]| pids.iter().map(|&p| procfs::cpu_ticks(p)).sum::<u64>();
    let (hb0, ht0) = procfs::host_cpu()?;
    let v0 = ticks(&vmm_pids);
    let k0 = ticks(&[cluster.node_pid, cluster.server_pid]);
    tokio::time::sleep(window).await;
    let (hb1, ht1) = procfs::host_cpu()?;
    let v1 = ticks(&vmm_pids);
    let k1 = ticks(&[cluster.node_pid, cluster.server_pid]);
    let host_busy = (hb1 - hb0) as f64 / (ht1 - ht0).max(1) as f64 * 100.0;
    let secs = window.as_secs_f64();
    let vmm_cpu = (v1 - v0) as f64 / procfs::CLK_TCK / secs * 100.0;
    let kiln_cpu = (k1 - k0) as f64 / procfs::CLK_TCK / secs * 100.0;

    println!("banners ({} of {n}):", banners.len());
    for pair in banners.chunks(2) {
        let cells: Vec<String> = pair
            .iter()
            .map(|(vmid, line)| format!("VM {vmid}: {line}"))
            .collect();
        println!("  {}", cells.join("   "));
    }
    let mib_of = |b: u64| b as f64 / 1048576.0;
    let used = avail_before as f64 - avail_after as f64;
    println!("{:<58} {:>14}", "figure", "value");
    let line = |k: &str, v: String| println!("{k:<58} {v:>14}");
    line(
        &format!("all {n} create+start tasks OK"),
        format!("{:.2} s", tasks_done.as_secs_f64()),
    );
    line(
        &format!("all {n} running in the server's view"),
        format!("{:.2} s", all_running.as_secs_f64()),
    );
    line(
        &format!("all {n} banners seen on the server console (total)"),
        format!("{:.2} s", all_banners.as_secs_f64()),
    );
    line(
        "host MemAvailable before → after",
        format!(
            "{:.0} → {:.0} MiB",
            mib_of(avail_before),
            mib_of(avail_after)
        ),
    );
    line(
        "host memory used (MemAvailable drop; other users add noise)",
        format!("{:.1} MiB", used / 1048576.0),
    );
    line(
        &format!("  per VM ({mib} MiB configured)"),
        format!("{:.2} MiB", used / 1048576.0 / f64::from(n)),
    );
    line(
        &format!("sum of kiln-vmm RSS ({} processes)", vmm_pids.len()),
        format!("{:.1} MiB", mib_of(rss_sum)),
    );
    line(
        "  per VM",
        format!("{:.2} MiB", mib_of(rss_sum) / vmm_pids.len().max(1) as f64),
    );
    line(
        "kiln-node RSS / kiln-server RSS",
        format!("{:.0} / {:.0} MiB", mib_of(node_rss), mib_of(server_rss)),
    );
    line(
        &format!(
            "host CPU busy (all users), VMs idle, {} s, {} CPUs",
            window.as_secs(),
            procfs::cpus()
        ),
        format!("{host_busy:.1} %"),
    );
    line(
        &format!("  of which the {n} kiln-vmm (% of one CPU)"),
        format!("{vmm_cpu:.1} %"),
    );
    line(
        "  of which kiln-node + kiln-server (% of one CPU)",
        format!("{kiln_cpu:.1} %"),
    );

    // Stop and delete all.
    let t = Instant::now();
    for chunk in vmids.chunks(args.batch.max(1)) {
        let stops = join_all(chunk.iter().map(|&vmid| async move {
            api.task(
                &format!("/api2/json/nodes/{NODE}/qemu/{vmid}/status/stop"),
                json!({}),
            )
            .await
        }))
        .await;
        for r in stops {
            r?;
        }
    }
    for &vmid in &vmids {
        api.wait_vm(
            vmid,
            "stopped",
            Duration::from_millis(50),
            Duration::from_secs(30),
        )
        .await?;
    }
    for chunk in vmids.chunks(args.batch.max(1)) {
        let deletes = join_all(chunk.iter().map(|&vmid| async move {
            let body = api
                .delete(&format!("/api2/json/nodes/{NODE}/qemu/{vmid}"))
                .await?;
            let upid = body["data"].as_str().context("no UPID")?.to_owned();
            api.wait_task(&upid, Duration::from_millis(20)).await
        }))
        .await;
        for r in deletes {
            r?;
        }
    }
    line(
        &format!("stop + delete all {n}"),
        format!("{:.2} s", t.elapsed().as_secs_f64()),
    );
    println!("how: POST /api2/json/nodes/{NODE}/qemu {{vmid, memory: {mib}, cores: 1, start: 1}} in batches of {}; GET …/qemu until all running; each console through the server WebSocket; RSS from smaps_rollup; CPU from /proc/stat and /proc/<pid>/stat; other users of this host count in host CPU and MemAvailable", args.batch);
    println!(
        "  reproduce: make bench   (or: target/release/kiln-bench --only density --vms {n} --batch {})",
        args.batch
    );
    Ok(())
}

/// 4. Live migration.
async fn migration_table(
    args: &Args,
    scratch: &Scratch,
    bins: &Binaries,
    cluster: &Cluster,
    api: &Api,
) -> anyhow::Result<()> {
    use migration::{load_label, size_label, ticks_ms, KilnPath, Outcome};
    heading(&format!(
        "4. Live migration: downtime budget {} ms, 1 vCPU; Kiln {NODE} → {} kiln-vmm to kiln-vmm (mutual TLS on loopback; started by n→n: the node API, API: the server's qmigrate task) vs QEMU -M {} over TCP on loopback",
        migration::DOWNTIME_MS,
        migration::TARGET_NODE,
        args.qemu_machine
    ));
    println!(
        "{:<8} {:<15} {:<9} {:>6} {:>10} {:>13} {:>10} {:>9} {:>7}  note",
        "guest", "load", "who", "fill", "downtime", "guest gap", "total", "sent/mem", "rounds"
    );
    println!(
        "{:<8} {:<15} {:<9} {:>6} {:>10} {:>13} {:>10} {:>9} {:>7}",
        "", "", "", "MiB", "ms", "ticks (1 s)", "ms", "", ""
    );
    let row = |size: &str, load: &str, who: &str, o: &Outcome| {
        println!(
            "{size:<8} {load:<15} {who:<9} {:>6} {:>10.2} {:>6.1} ({:>4.1}) {:>10.0} {:>9.3} {:>7}  {}; ticks read ±{:.1} ms",
            o.fill_mib,
            o.downtime_ms,
            o.lost_ticks,
            o.baseline_lost_ticks,
            o.total_ms,
            o.sent_ratio,
            o.rounds,
            o.note,
            o.reading_ms
        );
    };
    let runs = args.migration_runs.max(1);
    let mut vmid = 2000;
    let mut index = 0;
    for &mib in &args.migration_sizes {
        for load in migration::loads(args.migration_dirty) {
            let size = size_label(mib);
            let label = load_label(load);
            // Runs interleave the migrators, so a busy spell of the machine hits all of them.
            let mut kiln: Vec<(KilnPath, Vec<Outcome>)> =
                KilnPath::ALL.into_iter().map(|p| (p, Vec::new())).collect();
            let mut qemu = Vec::new();
            for _ in 0..runs {
                for (path, outcomes) in &mut kiln {
                    vmid += 1;
                    match migration::kiln_run(cluster, api, *path, vmid, mib, load).await {
                        Ok(o) => outcomes.push(o),
                        Err(e) => println!("{size:<8} {label:<15} {}  failed: {e:#}", path.label()),
                    }
                }
                index += 1;
                let q = migration::qemu_run(
                    scratch,
                    &args.qemu,
                    &args.qemu_machine,
                    &bins.guest,
                    mib,
                    load,
                    index,
                )
                .await;
                match q {
                    Ok(o) => qemu.push(o),
                    Err(e) => println!("{size:<8} {label:<15} QEMU      failed: {e:#}"),
                }
            }
            let mut first = true;
            let mut medians = Vec::new();
            for (path, outcomes) in &kiln {
                let Some(m) = migration::median(outcomes) else {
                    continue;
                };
                let (s, l) = if first {
                    (size.as_str(), label.as_str())
                } else {
                    ("", "")
                };
                first = false;
                row(s, l, path.label(), &m);
                medians.push((*path, m));
            }
            let qemu = migration::median(&qemu);
            if let Some(q) = &qemu {
                row("", "", "QEMU", q);
            }
            for (path, k) in &medians {
                if let Some(q) = &qemu {
                    // QEMU reports whole ms: below 1 ms the ratio is against "< 1 ms".
                    let downtime = if q.downtime_ms >= 1.0 {
                        format!("{:.2}×", k.downtime_ms / q.downtime_ms)
                    } else {
                        format!("{:.2} ms vs QEMU < 1 ms", k.downtime_ms)
                    };
                    println!(
                        "{:<8} {:<15} {}/QEMU: downtime {downtime}, total {:.2}×, bytes sent {:.2}×",
                        "",
                        "",
                        path.label(),
                        k.total_ms / q.total_ms,
                        k.sent_ratio / q.sent_ratio
                    );
                }
            }
        }
    }
    println!("how:");
    println!("  {}", migration::kiln_how(bins));
    let (src, dst) = migration::qemu_command_lines(&args.qemu, &args.qemu_machine);
    println!("  QEMU source: {src}");
    println!("  QEMU target: {dst}");
    println!(
        "  QEMU: QMP migrate-set-parameters {{downtime-limit: {}, max-bandwidth: 1 TiB/s (no cap, as Kiln; QEMU's default is 128 MiB/s)}}, migrate {{uri: tcp:127.0.0.1:<port>}}, query-migrate every 10 ms: downtime, total-time, ram.transferred ÷ guest memory, ram.dirty-sync-count",
        migration::DOWNTIME_MS
    );
    println!(
        "  both: the guest fills 7/8 of its memory (`mem fill`, one word per page; less if it says so), idle or `dirty {}` (started 1 s before the migration); downtime is what each migrator reports (Kiln: source vCPU pause → target resumed, incl. the server's commit; QEMU: its `downtime`, source stop → end on the source)",
        args.migration_dirty
    );
    println!(
        "  guest gap: the guest's own tick counter ({} Hz, timer interrupts) read on its console before (source) and after (target): wall time × {} − ticks counted = ticks it missed while paused (1 tick = {:.0} ms; its resolution). In parentheses: the same over 1 s without migration (the method's noise)",
        shell::TICK_HZ,
        shell::TICK_HZ,
        ticks_ms(1.0)
    );
    let sizes: Vec<String> = args.migration_sizes.iter().map(u32::to_string).collect();
    println!(
        "  each row: the median of {runs} runs (downtime, total, sent, rounds and guest gap each on its own), the note of the median-downtime run with the ranges"
    );
    println!(
        "  reproduce: make bench BENCH_ARGS=\"--only migration\"   (or: target/release/kiln-bench --only migration --migration-sizes {} --migration-dirty {} --migration-runs {runs})",
        sizes.join(","),
        args.migration_dirty
    );
    Ok(())
}

/// 5. HA failover.
async fn failover_table(
    args: &Args,
    scratch: &mut Scratch,
    bins: &Binaries,
    cluster: &mut Cluster,
    api: &Api,
) -> anyhow::Result<()> {
    let runs = args.failover_runs;
    let other = migration::TARGET_NODE;
    heading(&format!(
        "5. HA failover: the node of an HA VM ({} MiB) killed with its VM (SIGKILL) → the guest's banner on the other node's console ({runs} runs, {NODE} ↔ {other}; server defaults: heartbeat {} ms, node timeout 5 s, lease 8 s, margin 2 s)",
        args.memory_mib, args.heartbeat_ms
    ));
    let results = failover::table(
        scratch,
        bins,
        cluster,
        api,
        [NODE, other],
        runs,
        args.memory_mib,
    )
    .await?;
    let secs = |f: fn(&failover::Run) -> f64| -> Summary {
        Summary::of(&results.iter().map(f).collect::<Vec<_>>())
    };
    fn s(d: Duration) -> f64 {
        d.as_secs_f64()
    }
    println!(
        "{:<66} {:>8} {:>8} {:>8}",
        "phase (s)", "median", "max", "min"
    );
    let row = |name: &str, x: Summary| {
        println!("{name:<66} {:>8.2} {:>8.2} {:>8.2}", x.median, x.max, x.min);
    };
    row(
        "detection: kill → the server calls the node offline",
        secs(|r| s(r.offline)),
    );
    row(
        "detection: kill → the resource in fence (node lost)",
        secs(|r| s(r.fence)),
    );
    row(
        "fencing wait: fence → recovery (the lease has surely expired)",
        secs(|r| s(r.recovery) - s(r.fence)),
    );
    row(
        "restart: recovery → banner on the new node's console",
        secs(|r| s(r.banner) - s(r.recovery)),
    );
    row(
        "  of which: recovery → running in the server's view",
        secs(|r| s(r.running) - s(r.recovery)),
    );
    row(
        "total: kill → banner on the new node's console",
        secs(|r| s(r.banner)),
    );
    let total = secs(|r| s(r.banner));
    println!(
        "Proxmox VE documents ≈ 2 minutes for the same event (60 s fence delay + 120 s lock expiry): Kiln's median is {:.0}× shorter than 120 s",
        120.0 / total.median.max(0.001)
    );
    println!("how: VM {} (HA resource, state started, no rules) on one node; after 3 s, SIGKILL of that node's kiln-node and the VM's kiln-vmm at once; /nodes, /cluster/ha/status/current and /cluster/resources polled every {} ms; once the resource is in recovery, the target node's console (NodeClient, mutual TLS) is opened every {} ms until the banner shows (scroll-back replays it). Medians and maxima are per phase, so they need not add up. The killed agent is restarted between runs and the next run kills the other node.", failover::VMID, failover::POLL.as_millis(), failover::POLL.as_millis());
    println!(
        "  reproduce: make bench BENCH_ARGS=\"--only failover\"   (or: target/release/kiln-bench --only failover --failover-runs {runs})"
    );
    Ok(())
}
