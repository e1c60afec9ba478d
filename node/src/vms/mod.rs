//! VMs on this node: the supervisor of the kiln-vmm processes ([`supervisor`]), how one is
//! spawned and how its end is told ([`process`]), re-attaching after an agent restart
//! ([`reattach`]), its control socket ([`control`]), the image store ([`images`]) and spec
//! checks ([`spec`]).
//!
//! ```text
//! <data-dir>/images/<name>          a single-file PVH ELF image (the test guest as kiln-test-guest)
//! <data-dir>/images/<name>/image.json  a Linux image: manifest, kernel and initrd (--image-dir)
//! <data-dir>/vms/<vmid>/spec.json   the spec it was last started with
//! <data-dir>/vms/<vmid>/control.sock  kiln-vmm's control socket (while it runs)
//! <data-dir>/vms/<vmid>/vmm.log     kiln-vmm's output, one block per start
//! <data-dir>/vms/<vmid>/stopped.json  why it stopped, once the agent saw it stop
//! <data-dir>/vms/<vmid>/migrate.token  an incoming migration's one-time token (until kiln-vmm read it)
//! ```

pub mod cgroup;
pub mod control;
pub mod images;
pub mod process;
pub mod reattach;
pub mod spec;
pub mod supervisor;

use std::path::{Path, PathBuf};

use kiln_node_client::NodeName;

pub use images::{ImageError, ImageStore};
pub use spec::HostLimits;
pub use supervisor::{Supervisor, SupervisorConfig};

/// Why a VM action failed; each variant maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No such VM on this node (404).
    #[error("no VM {vmid} on node {node}")]
    NotFound {
        /// The VM id.
        vmid: u32,
        /// This node.
        node: NodeName,
    },
    /// The request or spec is invalid (400); the message says what to change.
    #[error("{0}")]
    BadSpec(String),
    /// The VM is in the wrong state for the action (409), e.g. "VM 101 is already running".
    #[error("{0}")]
    WrongState(String),
    /// The image is missing (503) or its name invalid (400).
    #[error(transparent)]
    Image(ImageError),
    /// The node lacks the resources for the request (503), e.g. memory for an incoming VM.
    #[error("{0}")]
    Unavailable(String),
    /// A live migration failed or was refused; `status` is the HTTP status to answer.
    #[error("{message}")]
    Migration {
        /// HTTP status (409 refused/cancelled, 503 no room on the target, 502 failed).
        status: u16,
        /// What happened and where the VM runs.
        message: String,
    },
    /// kiln-vmm could not be started (500).
    #[error("VM {vmid} could not be started: {detail}")]
    StartFailed {
        /// The VM id.
        vmid: u32,
        /// What went wrong (with kiln-vmm's last log lines).
        detail: String,
    },
    /// kiln-vmm's control socket failed (500).
    #[error("VM {vmid}: kiln-vmm did not carry out the request: {detail}")]
    Control {
        /// The VM id.
        vmid: u32,
        /// What went wrong.
        detail: String,
    },
    /// A file of the VM could not be read or written (500).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl VmError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        VmError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
