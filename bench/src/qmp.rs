//! A minimal QMP client (QEMU Machine Protocol: JSON lines over a Unix socket): greeting,
//! `qmp_capabilities`, then `execute` commands; asynchronous events are skipped.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// One QMP connection in command mode.
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connect to QEMU's `-qmp unix:<path>,server=on,wait=off` (retrying while QEMU starts) and
    /// leave capabilities negotiation.
    pub async fn connect(path: &Path, within: Duration) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + within;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("QMP socket {}", path.display()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            bail!("not a QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
            .await
            .context("QMP: no answer in 30 s")??;
        if n == 0 {
            bail!("QMP: QEMU closed the connection");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Run `command` with `arguments`; its `return` value, or its `error` as an error.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> anyhow::Result<Value> {
        let mut msg = json!({ "execute": command });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            msg["arguments"] = arguments;
        }
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        loop {
            let answer = self.read_message().await?;
            if answer.get("event").is_some() {
                continue;
            }
            if let Some(r) = answer.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = answer.get("error") {
                bail!("QMP {command}: {} ({})", e["desc"], e["class"]);
            }
            bail!("QMP {command}: unexpected answer {answer}");
        }
    }
}
