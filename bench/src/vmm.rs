//! The guest under `kiln-vmm` alone and under QEMU's `microvm` machine: process start →
//! banner, and the VMM's memory overhead.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kiln_vmm::control::client::ControlClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

use crate::cluster::{Binaries, Scratch};
use crate::console::Transcript;
use crate::procfs;
use crate::stats::ms;

/// Start → banner times of one series, in ms.
pub struct Series {
    /// Per run.
    pub times: Vec<f64>,
    /// Runs whose process ended by itself after `poweroff` (QEMU only).
    pub clean_exits: usize,
}

/// Read `out` until the banner line is complete.
async fn wait_banner(out: &mut ChildStdout, within: Duration) -> anyhow::Result<String> {
    let mut seen = Transcript::default();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = out.read(&mut buf).await?;
            if n == 0 {
                bail!(
                    "the process closed its output before the banner: {:?}",
                    seen.text()
                );
            }
            if let Some(line) = seen.push(&buf[..n]) {
                return Ok(line);
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .context("no banner in time")?
}

fn spawn_vmm(bins: &Binaries, mib: u32, socket: &Path) -> anyhow::Result<Child> {
    Command::new(&bins.vmm)
        .arg("--kernel")
        .arg(&bins.guest)
        .args(["--memory-mib", &mib.to_string(), "--vcpus", "1"])
        .arg("--control-socket")
        .arg(socket)
        .arg("--console-stdout")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", bins.vmm.display()))
}

/// Stop a kiln-vmm through its control socket and reap it (kill it if that fails).
async fn stop_vmm(mut child: Child, socket: PathBuf) -> anyhow::Result<()> {
    let stopped = tokio::task::spawn_blocking(move || {
        let mut c = ControlClient::connect(&socket)?;
        c.set_timeout(Some(Duration::from_secs(10)))?;
        c.stop()?;
        anyhow::Ok(())
    })
    .await?;
    if stopped.is_err() {
        let _ = child.kill().await;
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => child.kill().await?,
    }
    stopped
}

/// `runs` × kiln-vmm alone: process start → banner on its stdout.
pub async fn vmm_alone_series(
    scratch: &Scratch,
    bins: &Binaries,
    mib: u32,
    runs: usize,
) -> anyhow::Result<Series> {
    let mut times = Vec::new();
    for i in 0..runs {
        let socket = scratch.path().join(format!("alone-{i}.sock"));
        let t0 = Instant::now();
        let mut child = spawn_vmm(bins, mib, &socket)?;
        let mut out = child.stdout.take().context("no stdout")?;
        wait_banner(&mut out, Duration::from_secs(30)).await?;
        times.push(ms(t0.elapsed()));
        stop_vmm(child, socket).await?;
    }
    Ok(Series {
        times,
        clean_exits: runs,
    })
}

/// QEMU's arguments for the guest.
fn qemu_args(guest: &str, mib: u32) -> Vec<String> {
    [
        "-M",
        "microvm",
        "-enable-kvm",
        "-cpu",
        "host,-arch-capabilities",
        "-m",
        &mib.to_string(),
        "-smp",
        "1",
        "-kernel",
        guest,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-no-reboot",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The QEMU command line, for the report.
pub fn qemu_command_line(qemu: &Path, guest: &str, mib: u32) -> String {
    format!("{} {}", qemu.display(), qemu_args(guest, mib).join(" "))
}

/// `runs` × QEMU microvm: process start → banner on its serial (stdio); then `poweroff`, which
/// the guest does through port 0xf4 (isa-debug-exit ends QEMU with status 1).
pub async fn qemu_series(
    qemu: &Path,
    guest: &Path,
    mib: u32,
    runs: usize,
) -> anyhow::Result<Series> {
    let mut times = Vec::new();
    let mut clean_exits = 0;
    let guest = guest.to_string_lossy();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut child = Command::new(qemu)
            .args(qemu_args(&guest, mib))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (apt-get install qemu-system-x86)",
                    qemu.display()
                )
            })?;
        let mut out = child.stdout.take().context("no stdout")?;
        let banner = wait_banner(&mut out, Duration::from_secs(30)).await;
        if let Err(e) = banner {
            let _ = child.kill().await;
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err).await;
            }
            return Err(e.context(format!("QEMU: {}", err.trim())));
        }
        times.push(ms(t0.elapsed()));
        if let Some(mut input) = child.stdin.take() {
            input.write_all(b"poweroff\n").await?;
            input.flush().await?;
        }
        // Drain its output so it never blocks on a full pipe.
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink).await;
        });
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) if status.code() == Some(1) => clean_exits += 1,
            _ => {
                let _ = child.kill().await;
            }
        }
        drain.abort();
    }
    Ok(Series { times, clean_exits })
}

/// One overhead measurement.
pub struct Overhead {
    /// Rss from smaps_rollup.
    pub rss: u64,
    /// Rss of the guest-RAM mapping (smaps).
    pub guest_resident: u64,
    /// `stats`.vmm_overhead_bytes.
    pub stats_overhead: u64,
    /// rss - guest_resident.
    pub smaps_overhead: u64,
    /// The `mem fill` command typed, if any.
    pub fill_command: Option<String>,
    /// The guest's answer to it.
    pub fill_output: Option<String>,
}

/// Type `line` on the console of the VM at `socket`; the first answer line starting with one
/// of `answers`.
fn console_command(socket: &Path, line: &str, answers: &[&str]) -> anyhow::Result<String> {
    let mut console = ControlClient::connect(socket)?.attach_console(false)?;
    console.set_read_timeout(Some(Duration::from_secs(60)))?;
    console.write_all(format!("{line}\n").as_bytes())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = console.read(&mut buf)?;
        if n == 0 {
            bail!("console closed: {}", String::from_utf8_lossy(&seen));
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        // Complete lines only: everything before the last newline.
        let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
        for l in complete.split('\n').map(|l| l.trim_matches(['\r', ' '])) {
            if answers.iter().any(|a| l.starts_with(a)) {
                return Ok(l.to_owned());
            }
        }
    }
}

/// kiln-vmm alone with `mib` of guest memory; optionally after `mem fill <fill> 1` (or the
/// most the guest allows, if it says `fill` is too much).
pub async fn overhead_case(
    scratch: &Scratch,
    bins: &Binaries,
    mib: u32,
    fill: Option<u32>,
    index: usize,
) -> anyhow::Result<Overhead> {
    let socket = scratch.path().join(format!("overhead-{index}.sock"));
    let mut child = spawn_vmm(bins, mib, &socket)?;
    let pid = child.id().context("kiln-vmm exited")?;
    let mut out = child.stdout.take().context("no stdout")?;
    wait_banner(&mut out, Duration::from_secs(30)).await?;
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink).await;
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut fill_command, mut fill_output) = (None, None);
    if let Some(fill) = fill {
        let sock = socket.clone();
        let (cmd, answer) = tokio::task::spawn_blocking(move || {
            let mut cmd = format!("mem fill {fill} 1");
            let mut answer = console_command(&sock, &cmd, &["filled", "error"])?;
            if answer.starts_with("error") {
                // "error: mem fill wants 1..=N MiB (...)": fill what there is.
                let most = answer
                    .split("..=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
                    .with_context(|| format!("guest: {answer}"))?;
                cmd = format!("mem fill {most} 1");
                answer = console_command(&sock, &cmd, &["filled", "error"])?;
            }
            anyhow::Ok((cmd, answer))
        })
        .await??;
        fill_command = Some(cmd);
        fill_output = Some(answer);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sock = socket.clone();
    let stats = tokio::task::spawn_blocking(move || {
        let mut c = ControlClient::connect(&sock)?;
        c.set_timeout(Some(Duration::from_secs(10)))?;
        anyhow::Ok(c.stats()?)
    })
    .await??;
    let rss = procfs::rss(pid)?;
    let (guest_resident, regions) = procfs::guest_mapping_rss(pid, u64::from(mib) << 20)?;
    if regions != 1 {
        eprintln!("note: found {regions} mappings of {mib} MiB in /proc/{pid}/smaps (expected 1)");
    }
    stop_vmm(child, socket).await?;
    drain.abort();
    Ok(Overhead {
        rss,
        guest_resident,
        stats_overhead: stats.vmm_overhead_bytes,
        smaps_overhead: rss.saturating_sub(guest_resident),
        fill_command,
        fill_output,
    })
}
