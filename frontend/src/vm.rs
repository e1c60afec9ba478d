//! Virtual machine rules the UI applies before asking the server: states, which action is
//! allowed in which state, and the create wizard's field checks (the server checks again).

use kiln_api_types::{ClusterResource, TaskSummary};

/// Smallest VM memory the wizard offers, MiB.
pub const MIN_MEMORY_MIB: u32 = 16;
/// Memory the wizard proposes, MiB (what the test guest needs, with room).
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// Lowest and highest VM id, as in Proxmox.
pub const VMID_RANGE: std::ops::RangeInclusive<u32> = 100..=999_999_999;
/// The image a new VM boots when the user picks none.
pub const DEFAULT_IMAGE: &str = "kiln-test-guest";

/// A VM's run state as the tree and the summary show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// Its `kiln-vmm` runs the guest.
    Running,
    /// Its vCPUs are paused.
    Paused,
    /// No process.
    Stopped,
    /// A word the UI does not know.
    Unknown,
}

impl VmState {
    /// Reads a status word (`running`, `paused`, `stopped`).
    pub fn parse(status: &str) -> Self {
        match status {
            "running" => VmState::Running,
            "paused" => VmState::Paused,
            "stopped" => VmState::Stopped,
            _ => VmState::Unknown,
        }
    }

    /// The state of a cluster resource entry.
    pub fn of(resource: &ClusterResource) -> Self {
        VmState::parse(&resource.status)
    }

    /// The word for CSS classes and test hooks.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopped => "stopped",
            VmState::Unknown => "unknown",
        }
    }

    /// Whether a process exists (running or paused): the console can attach then.
    pub fn has_process(self) -> bool {
        matches!(self, VmState::Running | VmState::Paused)
    }
}

/// A lifecycle action of the VM view (`POST …/status/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// Boot the VM.
    Start,
    /// Ask the guest to power off (stop after a timeout).
    Shutdown,
    /// Hard stop.
    Stop,
    /// Restart the guest.
    Reboot,
    /// Pause the vCPUs.
    Suspend,
    /// Continue after a pause.
    Resume,
}

impl VmAction {
    /// The buttons in the order the toolbar shows them.
    pub const ALL: [VmAction; 6] = [
        VmAction::Start,
        VmAction::Shutdown,
        VmAction::Stop,
        VmAction::Reboot,
        VmAction::Suspend,
        VmAction::Resume,
    ];

    /// The path word of the API call.
    pub fn api_name(self) -> &'static str {
        match self {
            VmAction::Start => "start",
            VmAction::Shutdown => "shutdown",
            VmAction::Stop => "stop",
            VmAction::Reboot => "reboot",
            VmAction::Suspend => "suspend",
            VmAction::Resume => "resume",
        }
    }

    /// The button's label (Proxmox calls suspend "Pause").
    pub fn label(self) -> &'static str {
        match self {
            VmAction::Start => "Start",
            VmAction::Shutdown => "Shutdown",
            VmAction::Stop => "Stop",
            VmAction::Reboot => "Reboot",
            VmAction::Suspend => "Pause",
            VmAction::Resume => "Resume",
        }
    }

    /// Whether the action makes sense in `state`.
    pub fn allowed_in(self, state: VmState) -> bool {
        match self {
            VmAction::Start => state == VmState::Stopped,
            VmAction::Shutdown | VmAction::Reboot | VmAction::Suspend => state == VmState::Running,
            VmAction::Stop => state.has_process(),
            VmAction::Resume => state == VmState::Paused,
        }
    }
}

/// Checks a VM name as Proxmox does (a DNS name: labels of letters, digits and inner hyphens,
/// separated by dots); `Err` says what is wrong, for showing next to the field.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a name.".into());
    }
    if name.len() > 253 {
        return Err("At most 253 characters.".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("Dots must separate non-empty parts.".into());
        }
        if label.len() > 63 {
            return Err("Each part between dots has at most 63 characters.".into());
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{bad:?} is not allowed: use letters, digits, '-' and '.'."
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("A part must not start or end with '-'.".into());
        }
    }
    Ok(())
}

/// Parses a VM id field; `Err` says what is wrong.
pub fn parse_vmid(text: &str) -> Result<u32, String> {
    let range = || {
        format!(
            "Enter a number from {} to {}.",
            VMID_RANGE.start(),
            VMID_RANGE.end()
        )
    };
    let vmid: u32 = text.trim().parse().map_err(|_| range())?;
    if VMID_RANGE.contains(&vmid) {
        Ok(vmid)
    } else {
        Err(range())
    }
}

/// Parses a whole number within `min..=max`; `Err` says what is allowed.
pub fn parse_in_range(text: &str, min: u32, max: u32, unit: &str) -> Result<u32, String> {
    let allowed = || {
        if min > max {
            format!("Not enough available (needs at least {min}{unit}).")
        } else {
            format!("Enter a number from {min} to {max}{unit}.")
        }
    };
    let value: u32 = text.trim().parse().map_err(|_| allowed())?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(allowed())
    }
}

/// Memory a node can still give a new VM, in whole MiB (total minus used).
pub fn free_memory_mib(node: &ClusterResource) -> Option<u32> {
    let free = node.maxmem?.saturating_sub(node.mem.unwrap_or(0));
    Some(u32::try_from(free / (1024 * 1024)).unwrap_or(u32::MAX))
}

/// What the task panel knows about a task from its UPID alone
/// (`UPID:node:pid:pstart:starttime:type:id:user:`, numbers in hex), until the server reports
/// it; `None` if `upid` is not one.
pub fn task_from_upid(upid: &str) -> Option<TaskSummary> {
    let parts: Vec<&str> = upid.split(':').collect();
    if parts.len() < 9 || parts[0] != "UPID" {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    Some(TaskSummary {
        upid: upid.to_owned(),
        node: parts[1].to_owned(),
        pid: u32::try_from(hex(parts[2])?).ok()?,
        pstart: hex(parts[3])?,
        starttime: i64::try_from(hex(parts[4])?).ok()?,
        kind: parts[5].to_owned(),
        id: parts[6].to_owned(),
        user: parts[7..parts.len() - 1].join(":"),
        status: "running".into(),
        exitstatus: None,
        endtime: None,
        progress: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_state() {
        let allowed = |state| {
            VmAction::ALL
                .iter()
                .filter(|a| a.allowed_in(state))
                .map(|a| a.label())
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(VmState::Stopped), ["Start"]);
        assert_eq!(
            allowed(VmState::Running),
            ["Shutdown", "Stop", "Reboot", "Pause"]
        );
        assert_eq!(allowed(VmState::Paused), ["Stop", "Resume"]);
        assert!(allowed(VmState::Unknown).is_empty());
    }

    #[test]
    fn names_must_be_dns_names() {
        assert_eq!(check_name("web-1.example"), Ok(()));
        assert_eq!(check_name("a"), Ok(()));
        assert!(check_name("").is_err());
        assert!(check_name("-web").is_err());
        assert!(check_name("web_1").is_err_and(|e| e.contains("'_'")));
        assert!(check_name("a..b").is_err());
        assert!(check_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn numbers_are_checked_against_their_range() {
        assert_eq!(parse_vmid(" 101 "), Ok(101));
        assert!(parse_vmid("99").is_err());
        assert!(parse_vmid("abc").is_err());
        assert_eq!(parse_in_range("64", 16, 512, " MiB"), Ok(64));
        assert_eq!(
            parse_in_range("8", 16, 512, " MiB"),
            Err("Enter a number from 16 to 512 MiB.".into())
        );
        assert_eq!(
            parse_in_range("8", 16, 4, " MiB"),
            Err("Not enough available (needs at least 16 MiB).".into())
        );
    }

    #[test]
    fn upids_give_a_running_task() {
        let task = task_from_upid("UPID:n1:0000002A:00000007:6553F100:qmcreate:101:root@kiln:")
            .expect("a valid UPID");
        assert_eq!((task.node.as_str(), task.pid, task.pstart), ("n1", 42, 7));
        assert_eq!(task.starttime, 0x6553_F100);
        assert_eq!((task.kind.as_str(), task.id.as_str()), ("qmcreate", "101"));
        assert_eq!(
            (task.user.as_str(), task.status.as_str()),
            ("root@kiln", "running")
        );
        assert_eq!(task_from_upid("101"), None);
    }
}
