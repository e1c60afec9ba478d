//! The test guest's shell over a console byte stream: a Kiln console WebSocket (node API) or
//! QEMU's serial port on a Unix socket. Commands are typed, answers read line by line.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use kiln_node_client::tokio_tungstenite::tungstenite::Message;
use kiln_node_client::ConsoleSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The guest shell's prompt.
pub const PROMPT: &str = "kiln> ";
/// The test guest's timer rate (guest/src/apic.rs `TICK_HZ`); `ticks` also prints it.
pub const TICK_HZ: u64 = 20;

/// A console transport: bytes in, bytes out.
pub trait Link: Send {
    /// Type `bytes`.
    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The next bytes the guest printed (empty: closed).
    fn recv(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<u8>>>;
}

impl Link for ConsoleSocket {
    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            SinkExt::send(self, Message::Binary(bytes.to_vec().into())).await?;
            Ok(())
        }
        .boxed()
    }

    fn recv(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<u8>>> {
        async move {
            loop {
                match self.next().await {
                    Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
                    Some(Ok(Message::Text(t))) => return Ok(t.as_bytes().to_vec()),
                    Some(Ok(Message::Close(_))) | None => return Ok(Vec::new()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        }
        .boxed()
    }
}

impl Link for UnixStream {
    fn send<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            self.write_all(bytes).await?;
            Ok(())
        }
        .boxed()
    }

    fn recv(&mut self) -> BoxFuture<'_, anyhow::Result<Vec<u8>>> {
        async move {
            let mut buf = vec![0u8; 4096];
            let n = self.read(&mut buf).await?;
            buf.truncate(n);
            Ok(buf)
        }
        .boxed()
    }
}

/// A reading of the guest's tick counter, with the host time it was taken at (the midpoint
/// between typing `ticks` and reading its answer).
#[derive(Debug, Clone, Copy)]
pub struct TickReading {
    /// Timer interrupts since the guest booted.
    pub ticks: u64,
    /// Host time of the reading.
    pub at: Instant,
    /// Half the command's round trip: the reading's uncertainty.
    pub half_rtt: Duration,
}

/// The guest shell on one console.
pub struct Shell {
    link: Box<dyn Link>,
    seen: Vec<u8>,
    nonce: u32,
}

impl Shell {
    /// On `link`.
    pub fn new(link: impl Link + 'static) -> Self {
        Shell {
            link: Box::new(link),
            seen: Vec::new(),
            nonce: 0,
        }
    }

    /// Type `line` (ended by CR, as a terminal does).
    pub async fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.link.send(format!("{line}\r").as_bytes()).await
    }

    /// Read until `pattern` shows; everything up to and including it (consumed).
    pub async fn expect(&mut self, pattern: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = find(&self.seen, pattern.as_bytes()) {
                let out: Vec<u8> = self.seen.drain(..pos + pattern.len()).collect();
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            let bytes = tokio::time::timeout_at(deadline, self.link.recv())
                .await
                .with_context(|| {
                    format!(
                        "no {pattern:?} on the console in {within:?}; it showed {:?}",
                        String::from_utf8_lossy(&self.seen)
                    )
                })??;
            if bytes.is_empty() {
                bail!(
                    "the console closed while waiting for {pattern:?}: {:?}",
                    String::from_utf8_lossy(&self.seen)
                );
            }
            self.seen.extend_from_slice(&bytes);
        }
    }

    /// Forget what was read so far, then make sure the shell is at a fresh prompt: the
    /// scroll-back a console replays on attach is skipped by echoing a unique marker.
    pub async fn sync(&mut self, within: Duration) -> anyhow::Result<()> {
        self.nonce += 1;
        let marker = format!("sync{}x{}", std::process::id(), self.nonce);
        self.send_line(&format!("echo {marker}")).await?;
        // The echo of the typed line shows "echo <marker>"; the answer is the marker alone.
        self.expect(&format!("\n{marker}"), within).await?;
        self.expect(PROMPT, within).await?;
        Ok(())
    }

    /// Run `command`; the first complete output line starting with one of `answers`.
    pub async fn answer(
        &mut self,
        command: &str,
        answers: &[&str],
        within: Duration,
    ) -> anyhow::Result<String> {
        self.send_line(command).await?;
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.expect("\n", left).await?;
            let line = line.trim_matches(['\r', '\n', ' ']);
            let line = line.strip_prefix(PROMPT).unwrap_or(line);
            if answers.iter().any(|a| line.starts_with(a)) {
                return Ok(line.to_owned());
            }
        }
    }

    /// Read the guest's tick counter (at a prompt).
    pub async fn ticks(&mut self) -> anyhow::Result<TickReading> {
        let t0 = Instant::now();
        let line = self
            .answer("ticks", &["ticks "], Duration::from_secs(20))
            .await?;
        let rtt = t0.elapsed();
        let ticks = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("bad ticks line {line:?}"))?;
        Ok(TickReading {
            ticks,
            at: t0 + rtt / 2,
            half_rtt: rtt / 2,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Ticks the guest missed between two readings: what the wall time between them is worth at
/// [`TICK_HZ`] minus what the guest counted (its timer interrupts stop while it is paused
/// and only one is pending on resume). Negative: the guest counted more (reading jitter).
pub fn lost_ticks(before: &TickReading, after: &TickReading) -> f64 {
    let wall = after.at.saturating_duration_since(before.at).as_secs_f64();
    wall * TICK_HZ as f64 - after.ticks.saturating_sub(before.ticks) as f64
}
