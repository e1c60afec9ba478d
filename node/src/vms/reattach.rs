//! Re-attaching after an agent restart: every `<data-dir>/vms/<vmid>/` is read, and its control
//! socket asked whether the VM still runs. A kiln-vmm that answers (and serves that very
//! socket) is adopted; one that is gone is reported stopped, with the reason recorded by the
//! agent that saw it stop, or else as having ended while no agent watched it.

use std::path::Path;
use std::time::Duration;

use kiln_node_client::wire::VmSpec;
use kiln_vmm::protocol::{VmState, VmStatus};

use super::process::{self, Exit, Outcome, ProcessId, VmDir};
use super::supervisor::{write_json, StoppedRecord};
use super::VmError;

/// Reason of a VM whose kiln-vmm ended while no agent watched it.
pub const EXITED_WHILE_DOWN: &str = "kiln-vmm exited while the node agent was down";

/// A VM found on disk at agent start.
pub struct Found {
    /// Its spec (`spec.json`).
    pub spec: VmSpec,
    /// Its directory.
    pub dir: VmDir,
    /// Whether it still runs.
    pub state: FoundState,
}

/// What became of a VM found on disk.
pub enum FoundState {
    Running {
        process: ProcessId,
        status: VmStatus,
    },
    Stopped {
        reason: String,
        crashed: bool,
    },
}

/// Reads every `<vms_dir>/<vmid>/` and asks each control socket whether its VM still runs.
/// Blocking.
pub fn scan(vms_dir: &Path) -> Result<Vec<Found>, VmError> {
    let entries = match std::fs::read_dir(vms_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(VmError::io("read", vms_dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(vmid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = VmDir { path: entry.path() };
        let spec: VmSpec = match std::fs::read(dir.spec())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!("ignoring {}: no usable spec.json ({e})", dir.path.display());
                continue;
            }
        };
        if spec.vmid != vmid {
            tracing::warn!(
                "ignoring {}: its spec.json is for VM {}",
                dir.path.display(),
                spec.vmid
            );
            continue;
        }
        let state = probe(&dir);
        found.push(Found { spec, dir, state });
    }
    Ok(found)
}

/// Whether the VM of `dir` still runs (its control socket answers, from a kiln-vmm serving
/// that socket), else why it stopped. Blocking.
fn probe(dir: &VmDir) -> FoundState {
    let socket = dir.socket();
    let status = kiln_vmm::control::client::ControlClient::connect(&socket).and_then(|mut c| {
        c.set_timeout(Some(Duration::from_secs(2)))?;
        c.status()
    });
    if let Ok(status) = status {
        let process = ProcessId::of(status.pid);
        if let (Some(process), true) = (process, status.state != VmState::Stopped) {
            if process::serves_socket(status.pid, &socket) {
                return FoundState::Running { process, status };
            }
        }
    }
    if let Ok(record) = std::fs::read(dir.stopped())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<StoppedRecord>(&b).map_err(|e| e.to_string()))
    {
        return FoundState::Stopped {
            reason: record.reason,
            crashed: record.crashed,
        };
    }
    // It ran when the previous agent went away, and ended since.
    let logged = process::logged_stop_reason(&dir.log());
    let (reason, crashed) = match logged {
        Some(text) => match process::outcome(Exit::Vanished, None, Some(&text)) {
            Outcome::Stopped { reason, crashed } => {
                (format!("{EXITED_WHILE_DOWN}: {reason}"), crashed)
            }
            Outcome::Restart => (
                format!("{EXITED_WHILE_DOWN}: the guest asked for a reset"),
                false,
            ),
        },
        None => (EXITED_WHILE_DOWN.to_owned(), true),
    };
    let record = StoppedRecord {
        reason: reason.clone(),
        crashed,
    };
    if let Err(e) = write_json(&dir.stopped(), &record) {
        tracing::warn!("cannot record why {} stopped: {e}", dir.path.display());
    }
    FoundState::Stopped { reason, crashed }
}
