//! Table 4, live migration: Kiln node → node, straight through the node API and through the
//! server API (`qmigrate`: the source kiln-vmm streams to the target kiln-vmm over mutual TLS, the
//! server records the new owner, then the source commits), next to QEMU (`migrate` over TCP on
//! loopback through QMP), for a few guest sizes, idle and dirtying memory.
//!
//! Per run: boot the test guest, `mem fill` most of its memory (non-zero pages), read its tick
//! counter twice 1 s apart (the no-migration baseline), optionally start `dirty <rate>`,
//! migrate, then on the target stop `dirty` and read the ticks again. The guest counts timer
//! interrupts at [`TICK_HZ`]; while it is paused they are not delivered (one stays pending), so
//! `wall time × TICK_HZ − ticks counted` between the last reading on the source and the
//! first on the target is the gap the guest itself saw, in ticks of 50 ms.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use kiln_node_client::wire::{MigrateSendRequest, DEFAULT_COMMIT_TIMEOUT_MS};

use crate::cluster::{free_port, Api, Binaries, Cluster, Scratch, NODE};
use crate::qmp::Qmp;
use crate::shell::{lost_ticks, Shell, TickReading, PROMPT, TICK_HZ};

/// The second node of the bench cluster: the migration target.
pub const TARGET_NODE: &str = "n2";
/// Downtime budget for both (Kiln's default).
pub const DOWNTIME_MS: u64 = 50;
/// How long `mem fill` and a migration may take.
const LONG: Duration = Duration::from_secs(600);

/// What a run does to the guest while it migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Memory filled, then nothing.
    Idle,
    /// Memory filled, then `dirty <MiB/s>` rewrites pattern pages at that rate.
    Dirty(u64),
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Idle => "idle".to_owned(),
            Load::Dirty(r) => format!("dirty {r} MiB/s"),
        }
    }
}

/// One migration's figures.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// MiB the guest filled (`mem fill`).
    pub fill_mib: u64,
    /// Downtime the migrator reports, ms.
    pub downtime_ms: f64,
    /// Ticks the guest missed across the migration (see the module doc).
    pub lost_ticks: f64,
    /// Ticks it "missed" over 1 s without migration: the method's own noise.
    pub baseline_lost_ticks: f64,
    /// Uncertainty of the tick readings (half the round trips of both), ms.
    pub reading_ms: f64,
    /// Total migration time the migrator reports, ms.
    pub total_ms: f64,
    /// Bytes sent ÷ guest memory.
    pub sent_ratio: f64,
    /// Pre-copy rounds (Kiln: rounds incl. the stop-and-copy; QEMU: dirty-sync-count).
    pub rounds: u64,
    /// Anything worth saying (QEMU setup time, a warning).
    pub note: String,
}

/// The tick readings around one migration.
struct Measured {
    before: TickReading,
    after: TickReading,
    baseline: f64,
    fill_mib: u64,
}

/// Fill, tick readings and load, common to both: returns the filled MiB, the guest's fill time
/// (s), the baseline (lost ticks over 1 s without migration) and the reading taken last.
async fn prepare(
    shell: &mut Shell,
    mib: u32,
    load: Load,
) -> anyhow::Result<(u64, f64, f64, TickReading)> {
    let (fill, fill_s) = fill(shell, u64::from(mib) * 7 / 8).await?;
    let r0 = shell.ticks().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r1 = shell.ticks().await?;
    let baseline = lost_ticks(&r0, &r1);
    if let Load::Dirty(rate) = load {
        shell
            .answer(&format!("dirty {rate}"), &["dirtying", "error"], LONG)
            .await
            .and_then(|l| {
                if l.starts_with("error") {
                    bail!("guest: {l}")
                }
                Ok(l)
            })?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((fill, fill_s, baseline, r1))
}

/// `mem fill <want> 1`, or the most the guest allows if that is too much; MiB filled and the
/// time the guest says it took, in s.
async fn fill(shell: &mut Shell, want: u64) -> anyhow::Result<(u64, f64)> {
    let mut mib = want;
    for _ in 0..2 {
        let line = shell
            .answer(&format!("mem fill {mib} 1"), &["filled", "error"], LONG)
            .await?;
        if line.starts_with("filled") {
            // "filled N pages (M MiB) seed S in U us (ring 3), checksum …".
            let us: f64 = line
                .split(" in ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(f64::NAN);
            return Ok((mib, us / 1e6));
        }
        // "error: mem fill wants 1..=N MiB (...)".
        mib = line
            .split("..=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("guest: {line}"))?;
    }
    bail!("the guest would not fill {want} MiB")
}

/// On the target: stop `dirty` (any key) if it runs, get a prompt, read the ticks.
async fn after_on_target(shell: &mut Shell) -> anyhow::Result<TickReading> {
    shell.send_line("").await?;
    shell.sync(Duration::from_secs(30)).await?;
    shell.ticks().await
}

fn outcome(
    m: Measured,
    downtime_ms: f64,
    total_ms: f64,
    sent_ratio: f64,
    rounds: u64,
    note: String,
) -> Outcome {
    Outcome {
        fill_mib: m.fill_mib,
        downtime_ms,
        lost_ticks: lost_ticks(&m.before, &m.after),
        baseline_lost_ticks: m.baseline,
        reading_ms: (m.before.half_rtt + m.after.half_rtt).as_secs_f64() * 1e3,
        total_ms,
        sent_ratio,
        rounds,
        note,
    }
}

/// The median of each figure over `runs` (each sorted on its own), with the note of the run
/// whose downtime is the median plus the ranges; `None` without runs.
pub fn median(runs: &[Outcome]) -> Option<Outcome> {
    fn mid(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
        v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
    }
    if runs.is_empty() {
        return None;
    }
    let pick = |f: fn(&Outcome) -> f64| mid(runs.iter().map(f).collect());
    let downtime = pick(|o| o.downtime_ms);
    let typical = runs.iter().min_by(|a, b| {
        (a.downtime_ms - downtime)
            .abs()
            .total_cmp(&(b.downtime_ms - downtime).abs())
    })?;
    let mut rounds: Vec<u64> = runs.iter().map(|o| o.rounds).collect();
    rounds.sort_unstable();
    let note = if runs.len() > 1 {
        let (dlo, dhi) = range(runs.iter().map(|o| o.downtime_ms));
        let (tlo, thi) = range(runs.iter().map(|o| o.total_ms));
        format!(
            "median of {}: downtime {dlo:.2}–{dhi:.2} ms, total {tlo:.0}–{thi:.0} ms; {}",
            runs.len(),
            typical.note
        )
    } else {
        typical.note.clone()
    };
    Some(Outcome {
        fill_mib: typical.fill_mib,
        downtime_ms: downtime,
        lost_ticks: pick(|o| o.lost_ticks),
        baseline_lost_ticks: pick(|o| o.baseline_lost_ticks),
        reading_ms: pick(|o| o.reading_ms),
        total_ms: pick(|o| o.total_ms),
        sent_ratio: pick(|o| o.sent_ratio),
        rounds: rounds[rounds.len() / 2],
        note,
    })
}

/// Which way a Kiln VM migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilnPath {
    /// `POST /api2/json/nodes/n1/qemu/{vmid}/migrate` (task `qmigrate`): the server holds the
    /// paused VM until it has recorded the new owner, then lets the source commit.
    Api,
    /// `POST /v1/vms/{vmid}/migrate/send` straight to the source agent (the server's client
    /// certificate), `await_commit: false`: the source commits by itself; the server adopts
    /// the VM on the target afterwards (reconcile).
    NodeToNode,
}

impl KilnPath {
    /// Both, in table order.
    pub const ALL: [KilnPath; 2] = [KilnPath::NodeToNode, KilnPath::Api];

    /// Short label for the table.
    pub fn label(self) -> &'static str {
        match self {
            KilnPath::Api => "Kiln API",
            KilnPath::NodeToNode => "Kiln n→n",
        }
    }
}

/// Kiln: a VM of `mib` created and started on node n1 through the API, migrated to n2 by
/// `path`.
pub async fn kiln_run(
    cluster: &Cluster,
    api: &Api,
    path: KilnPath,
    vmid: u32,
    mib: u32,
    load: Load,
) -> anyhow::Result<Outcome> {
    api.task(
        &format!("/api2/json/nodes/{NODE}/qemu"),
        json!({"vmid": vmid, "name": format!("bench-mig-{vmid}"), "memory": mib, "cores": 1, "start": 1}),
    )
    .await?;
    let result = kiln_measure(cluster, api, path, vmid, mib, load).await;
    cleanup(cluster, api, vmid).await;
    result
}

/// Stop and delete VM `vmid` (its memory is large) where the server records it running: a
/// node-to-node move is adopted at the target's next heartbeat. Straight on the agents if the
/// server never shows it running.
async fn cleanup(cluster: &Cluster, api: &Api, vmid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for node in [TARGET_NODE, NODE] {
            let running = api
                .get(&format!(
                    "/api2/json/nodes/{node}/qemu/{vmid}/status/current"
                ))
                .await
                .is_ok_and(|s| s["data"]["qmpstatus"] == "running");
            if !running {
                continue;
            }
            let stopped = api
                .task_on(
                    node,
                    &format!("/api2/json/nodes/{node}/qemu/{vmid}/status/stop"),
                )
                .await;
            let deleted = api
                .delete(&format!("/api2/json/nodes/{node}/qemu/{vmid}"))
                .await;
            if let Ok(upid) = deleted
                .as_ref()
                .map(|b| b["data"].as_str().unwrap_or_default().to_owned())
            {
                let _ = api
                    .wait_task_on(node, &upid, Duration::from_millis(50))
                    .await;
            }
            if stopped.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in [TARGET_NODE, NODE] {
        if let Ok(client) = cluster.client_of(node) {
            let _ = client.stop_vm(vmid).await;
            let _ = client.delete_vm(vmid).await;
        }
    }
}

async fn kiln_measure(
    cluster: &Cluster,
    api: &Api,
    path: KilnPath,
    vmid: u32,
    mib: u32,
    load: Load,
) -> anyhow::Result<Outcome> {
    let source = cluster.client_of(NODE)?;
    let mut shell = Shell::new(source.console(vmid).await?);
    shell.expect(PROMPT, Duration::from_secs(30)).await?;
    shell.sync(Duration::from_secs(30)).await?;
    let (fill_mib, fill_s, baseline, before) = prepare(&mut shell, mib, load).await?;

    let (f, note) = match path {
        KilnPath::Api => via_api(api, vmid).await?,
        KilnPath::NodeToNode => node_to_node(cluster, &source, vmid).await?,
    };
    drop(shell);

    let target = cluster.client_of(TARGET_NODE)?;
    let mut shell = Shell::new(target.console(vmid).await?);
    let after = after_on_target(&mut shell).await?;
    let m = Measured {
        before,
        after,
        baseline,
        fill_mib,
    };
    Ok(outcome(
        m,
        f.downtime_ms,
        f.total_ms,
        f.sent_ratio,
        f.rounds,
        format!(
            "{note}; target restore {:.1} ms; fill took {fill_s:.1} s",
            f.restore_ms
        ),
    ))
}

/// Migrate through the server API; the figures of the task log and a note.
async fn via_api(api: &Api, vmid: u32) -> anyhow::Result<(Finished, String)> {
    let body = api
        .post(
            &format!("/api2/json/nodes/{NODE}/qemu/{vmid}/migrate"),
            json!({"target": TARGET_NODE, "online": 1, "migration_downtime": DOWNTIME_MS}),
        )
        .await?;
    let upid = body["data"].as_str().context("no UPID")?.to_owned();
    let t0 = Instant::now();
    let waited = api.wait_task(&upid, Duration::from_millis(20)).await;
    let task_ms = t0.elapsed().as_secs_f64() * 1e3;
    let log = api
        .get(&format!(
            "/api2/json/nodes/{NODE}/tasks/{upid}/log?limit=10000"
        ))
        .await?;
    let lines: Vec<String> = log["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["t"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = waited {
        bail!("{e:#}; task log:\n{}", lines.join("\n"));
    }
    let finished = lines
        .iter()
        .find(|l| l.starts_with("migration finished:"))
        .with_context(|| format!("no 'migration finished' line in:\n{}", lines.join("\n")))?;
    Ok((
        parse_finished(finished)?,
        format!("task {task_ms:.0} ms (POST → task OK)"),
    ))
}

/// Migrate with `migrate/send` on the source agent; kiln-vmm's final status and a note.
async fn node_to_node(
    cluster: &Cluster,
    source: &kiln_node_client::NodeClient,
    vmid: u32,
) -> anyhow::Result<(Finished, String)> {
    let (_, url) = cluster
        .more_nodes
        .iter()
        .find(|(n, _)| n == TARGET_NODE)
        .context("no target node")?;
    let request = MigrateSendRequest {
        target_node: TARGET_NODE.to_owned(),
        target_api_url: url.clone(),
        downtime_ms: DOWNTIME_MS,
        bwlimit_mib_s: None,
        await_commit: false,
        commit_timeout_ms: DEFAULT_COMMIT_TIMEOUT_MS,
    };
    let t0 = Instant::now();
    let s = source.migrate_send(vmid, &request).await?;
    let call_ms = t0.elapsed().as_secs_f64() * 1e3;
    if let Some(e) = &s.error {
        if s.downtime_us.is_none() {
            bail!("migration {:?}: {e}", s.phase);
        }
    }
    let ms = |us: Option<u64>| us.unwrap_or(0) as f64 / 1e3;
    Ok((
        Finished {
            downtime_ms: ms(s.downtime_us),
            restore_ms: ms(s.restore_us),
            total_ms: s.total_ms.unwrap_or(s.elapsed_ms) as f64,
            sent_ratio: s.bytes_transferred as f64 / s.guest_memory_bytes.max(1) as f64,
            rounds: s.rounds.len() as u64,
        },
        format!("migrate/send {call_ms:.0} ms, phase {:?}", s.phase),
    ))
}

/// The numbers of the task log's `migration finished: downtime X ms (target restore Y ms),
/// total T ms, M MiB sent = R x guest memory, N rounds` line.
struct Finished {
    downtime_ms: f64,
    restore_ms: f64,
    total_ms: f64,
    sent_ratio: f64,
    rounds: u64,
}

fn parse_finished(line: &str) -> anyhow::Result<Finished> {
    let after = |key: &str| -> anyhow::Result<f64> {
        line.split(key)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.trim_end_matches([',', ')']).parse().ok())
            .with_context(|| format!("no '{key}' number in {line:?}"))
    };
    let before = |key: &str| -> anyhow::Result<f64> {
        line.split(key)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no number before '{key}' in {line:?}"))
    };
    Ok(Finished {
        downtime_ms: after("downtime ")?,
        restore_ms: after("target restore ")?,
        total_ms: after("total ")?,
        sent_ratio: after("sent = ")?,
        rounds: before(" rounds")? as u64,
    })
}

/// QEMU's arguments for one side of a migration: the test guest on `machine`, its serial port
/// and QMP on Unix sockets in `dir`.
fn qemu_args(machine: &str, guest: &Path, mib: u32, dir: &Path, name: &str) -> Vec<String> {
    let sock = |what: &str| {
        dir.join(format!("{name}.{what}"))
            .to_string_lossy()
            .into_owned()
    };
    vec![
        "-M".into(),
        machine.into(),
        "-enable-kvm".into(),
        "-cpu".into(),
        "host,-arch-capabilities".into(),
        "-m".into(),
        mib.to_string(),
        "-smp".into(),
        "1".into(),
        "-kernel".into(),
        guest.to_string_lossy().into_owned(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("unix:{},server=on,wait=off", sock("serial")),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock("qmp")),
        "-no-reboot".into(),
    ]
}

/// The QEMU command lines, for the report.
pub fn qemu_command_lines(qemu: &Path, machine: &str) -> (String, String) {
    let dir = PathBuf::from("<dir>");
    let src = qemu_args(machine, Path::new("<guest>"), 0, &dir, "src").join(" ");
    let dst = qemu_args(machine, Path::new("<guest>"), 0, &dir, "dst").join(" ");
    (
        format!("{} {}", qemu.display(), src.replace("-m 0", "-m <MiB>")),
        format!(
            "{} {} -incoming tcp:127.0.0.1:<port>",
            qemu.display(),
            dst.replace("-m 0", "-m <MiB>")
        ),
    )
}

fn spawn_qemu(qemu: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).map(Stdio::from)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (apt-get install qemu-system-x86)",
                qemu.display()
            )
        })
}

async fn connect_retry(path: &Path) -> anyhow::Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("{}", path.display()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// QEMU: source and target processes of `machine`, `migrate tcp:127.0.0.1:<port>` over QMP
/// with `downtime-limit` = Kiln's default and no bandwidth cap (Kiln has none by default;
/// QEMU's own default cap is 128 MiB/s).
pub async fn qemu_run(
    scratch: &Scratch,
    qemu: &Path,
    machine: &str,
    guest: &Path,
    mib: u32,
    load: Load,
    index: usize,
) -> anyhow::Result<Outcome> {
    let dir = scratch.path();
    let (src_name, dst_name) = (
        format!("qemu-mig{index}-src"),
        format!("qemu-mig{index}-dst"),
    );
    let port = free_port()?;
    let mut src = spawn_qemu(
        qemu,
        &qemu_args(machine, guest, mib, dir, &src_name),
        &dir.join(format!("{src_name}.log")),
    )?;
    let mut dst_args = qemu_args(machine, guest, mib, dir, &dst_name);
    dst_args.extend(["-incoming".into(), format!("tcp:127.0.0.1:{port}")]);
    let mut dst = spawn_qemu(qemu, &dst_args, &dir.join(format!("{dst_name}.log")))?;
    let result = qemu_measure(dir, &src_name, &dst_name, port, mib, load).await;
    let _ = src.kill().await;
    let _ = dst.kill().await;
    result.map_err(|e| {
        let log = std::fs::read_to_string(dir.join(format!("{src_name}.log"))).unwrap_or_default()
            + &std::fs::read_to_string(dir.join(format!("{dst_name}.log"))).unwrap_or_default();
        e.context(format!("QEMU: {}", log.trim()))
    })
}

async fn qemu_measure(
    dir: &Path,
    src_name: &str,
    dst_name: &str,
    port: u16,
    mib: u32,
    load: Load,
) -> anyhow::Result<Outcome> {
    let sock = |name: &str, what: &str| dir.join(format!("{name}.{what}"));
    let mut shell = Shell::new(connect_retry(&sock(src_name, "serial")).await?);
    // The serial port has no scroll-back: type until the shell answers.
    let mut up = false;
    for _ in 0..15 {
        if shell.sync(Duration::from_secs(2)).await.is_ok() {
            up = true;
            break;
        }
    }
    if !up {
        bail!("the guest under QEMU never answered on its serial port");
    }
    let mut src_qmp = Qmp::connect(&sock(src_name, "qmp"), Duration::from_secs(20)).await?;
    let mut dst_qmp = Qmp::connect(&sock(dst_name, "qmp"), Duration::from_secs(20)).await?;
    // Connect to the target's serial now, so nothing it prints after the resume is lost.
    let dst_serial = connect_retry(&sock(dst_name, "serial")).await?;
    let (fill_mib, fill_s, baseline, before) = prepare(&mut shell, mib, load).await?;

    src_qmp
        .execute(
            "migrate-set-parameters",
            json!({"downtime-limit": DOWNTIME_MS, "max-bandwidth": 1u64 << 40}),
        )
        .await?;
    src_qmp
        .execute("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}))
        .await?;
    let deadline = Instant::now() + LONG;
    let info: Value = loop {
        let info = src_qmp.execute("query-migrate", json!({})).await?;
        match info["status"].as_str() {
            Some("completed") => break info,
            Some("failed") | Some("cancelled") => bail!("QEMU migration {info}"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("QEMU migration still running after {LONG:?}: {info}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The target resumes by itself (-incoming without -S): wait until it says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = dst_qmp.execute("query-status", json!({})).await?;
        if s["status"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            bail!("QEMU target not running: {s}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(shell);
    let mut shell = Shell::new(dst_serial);
    let after = after_on_target(&mut shell).await?;
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ram = &info["ram"];
    let m = Measured {
        before,
        after,
        baseline,
        fill_mib,
    };
    Ok(outcome(
        m,
        num(&info["downtime"]),
        num(&info["total-time"]),
        num(&ram["transferred"]) / (f64::from(mib) * 1048576.0),
        ram["dirty-sync-count"].as_u64().unwrap_or(0),
        format!(
            "setup {} ms, {:.0} Mbit/s, {} zero + {} normal pages; fill took {fill_s:.1} s",
            info["setup-time"],
            num(&ram["mbps"]),
            ram["duplicate"],
            ram["normal"]
        ),
    ))
}

/// Ticks → ms.
pub fn ticks_ms(ticks: f64) -> f64 {
    ticks * 1000.0 / TICK_HZ as f64
}

/// The loads of the table.
pub fn loads(dirty_mib_s: u64) -> [Load; 2] {
    [Load::Idle, Load::Dirty(dirty_mib_s)]
}

/// Label of a load.
pub fn load_label(load: Load) -> String {
    load.label()
}

/// Guest size label.
pub fn size_label(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// How the Kiln rows were measured, for the report.
pub fn kiln_how(bins: &Binaries) -> String {
    format!(
        "Kiln n→n: POST /v1/vms/<vmid>/migrate/send {{target_node: {TARGET_NODE}, downtime_ms: {DOWNTIME_MS}, await_commit: false}} to node {NODE}'s agent (NodeClient, the server's client certificate); {NODE}'s kiln-vmm streams to {TARGET_NODE}'s kiln-vmm over mutual TLS on loopback and the source commits by itself; figures: kiln-vmm's MigrationStatus in the answer.\n  Kiln API: POST /api2/json/nodes/{NODE}/qemu/<vmid>/migrate {{target: {TARGET_NODE}, online: 1, migration_downtime: {DOWNTIME_MS}}} (task qmigrate): the same stream, but the paused VM waits while the server takes the handover from the source, records the new owner and commits the target (all in the downtime); figures from the task log's 'migration finished' line.\n  Both on the bench cluster: kiln-server + two kiln-node agents ({}) on loopback",
        bins.node.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(downtime_ms: f64, total_ms: f64) -> Outcome {
        Outcome {
            fill_mib: 896,
            downtime_ms,
            lost_ticks: 0.0,
            baseline_lost_ticks: 0.0,
            reading_ms: 1.0,
            total_ms,
            sent_ratio: 1.0,
            rounds: 3,
            note: format!("run {downtime_ms}"),
        }
    }

    #[test]
    fn the_median_row_takes_each_figure_on_its_own_and_says_the_ranges() {
        assert!(median(&[]).is_none());
        let m = median(&[run(9.0, 100.0), run(1.0, 300.0), run(2.0, 200.0)]).expect("median");
        assert_eq!(m.downtime_ms, 2.0);
        assert_eq!(m.total_ms, 200.0);
        assert!(
            m.note
                .starts_with("median of 3: downtime 1.00–9.00 ms, total 100–300 ms; run 2"),
            "{}",
            m.note
        );
        let m = median(&[run(1.0, 10.0), run(3.0, 30.0)]).expect("median");
        assert_eq!(m.downtime_ms, 2.0);
        assert_eq!(m.total_ms, 20.0);
        assert_eq!(median(&[run(4.0, 5.0)]).expect("one").note, "run 4");
    }
}
