//! The HA state machine of one resource: every legal transition is in [`transition`].
//!
//! The manager observes the cluster and turns what it sees into [`Event`]s; this module only
//! says where an event leads. Anything not in the table is refused, so a bug in the manager
//! shows up as an error in its log instead of, say, a VM started twice.

use std::fmt;
use std::str::FromStr;

/// What the administrator asks for (the resource's `state` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Keep it running (recover it when its node fails).
    Started,
    /// Keep it stopped (still managed: it is not started elsewhere).
    Stopped,
    /// Stopped and not managed; the way out of `error`.
    Disabled,
    /// HA leaves it alone entirely.
    Ignored,
}

impl Requested {
    /// The API word.
    pub fn as_str(self) -> &'static str {
        match self {
            Requested::Started => "started",
            Requested::Stopped => "stopped",
            Requested::Disabled => "disabled",
            Requested::Ignored => "ignored",
        }
    }
}

impl FromStr for Requested {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "started" | "enabled" => Ok(Requested::Started),
            "stopped" => Ok(Requested::Stopped),
            "disabled" => Ok(Requested::Disabled),
            "ignored" => Ok(Requested::Ignored),
            other => Err(format!(
                "'{other}' is not an HA state; use started, stopped, disabled or ignored"
            )),
        }
    }
}

/// Where the manager has a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaState {
    /// It should run, and runs (or is being started) on its node.
    Started,
    /// A stop was asked for and is under way.
    RequestStop,
    /// It is stopped, as asked.
    Stopped,
    /// Its node stopped answering: wait until the node's lease has surely expired (its VMM has
    /// then fenced the guest itself).
    Fence,
    /// The lease expired: start it on another node (waits here while no node fits).
    Recovery,
    /// Being live-migrated to `target`.
    Migrate,
    /// Being moved to `target` by stop and start (also failback and crash relocation).
    Relocate,
    /// Given up (restarts and relocations used up, or a failed move); set it `disabled` to
    /// leave.
    Error,
    /// Disabled by the administrator.
    Disabled,
    /// Ignored by HA.
    Ignored,
}

impl HaState {
    /// Every state (for tests and listings).
    pub const ALL: [HaState; 10] = [
        HaState::Started,
        HaState::RequestStop,
        HaState::Stopped,
        HaState::Fence,
        HaState::Recovery,
        HaState::Migrate,
        HaState::Relocate,
        HaState::Error,
        HaState::Disabled,
        HaState::Ignored,
    ];

    /// The word used in the API and the database (as Proxmox).
    pub fn as_str(self) -> &'static str {
        match self {
            HaState::Started => "started",
            HaState::RequestStop => "request_stop",
            HaState::Stopped => "stopped",
            HaState::Fence => "fence",
            HaState::Recovery => "recovery",
            HaState::Migrate => "migrate",
            HaState::Relocate => "relocate",
            HaState::Error => "error",
            HaState::Disabled => "disabled",
            HaState::Ignored => "ignored",
        }
    }
}

impl fmt::Display for HaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HaState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HaState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown HA state '{s}'"))
    }
}

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The administrator changed the requested state.
    Request(Requested),
    /// The administrator asked to live-migrate it.
    MigrateRequested,
    /// The administrator asked to relocate it (or failback / crash relocation decided so).
    RelocateRequested,
    /// Its node reports it stopped (after a stop request).
    StopConfirmed,
    /// Its node stopped answering.
    NodeLost,
    /// Its node answers again and still runs it (it came back before its lease ran out).
    NodeReturned,
    /// The node's lease has surely expired: its VMM has fenced the guest.
    LeaseExpired,
    /// It stopped on its own; restart it on the same node.
    CrashRestart,
    /// It stopped on its own and the restarts are used up; move it.
    CrashRelocate,
    /// It stopped on its own and the relocations are used up too.
    CrashGiveUp,
    /// Recovery or a move started it on its new node.
    Placed,
    /// A move failed; it still runs (or can run) on its old node.
    MoveFailed,
    /// A move failed and left it nowhere.
    MoveGaveUp,
}

/// A transition the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HA state {from} does not accept {event:?}")]
pub struct IllegalTransition {
    /// Where the resource was.
    pub from: HaState,
    /// What happened.
    pub event: Event,
}

/// The state a requested state leads to from a resting state.
fn rest(requested: Requested) -> HaState {
    match requested {
        Requested::Started => HaState::Started,
        Requested::Stopped => HaState::Stopped,
        Requested::Disabled => HaState::Disabled,
        Requested::Ignored => HaState::Ignored,
    }
}

/// The legal transitions.
pub fn transition(from: HaState, event: Event) -> Result<HaState, IllegalTransition> {
    use Event as E;
    use HaState as S;
    let to = match (from, event) {
        // Resting states follow the request at once.
        (S::Stopped | S::Disabled | S::Ignored, E::Request(r)) => Some(rest(r)),
        // A running resource is stopped through request_stop; ignoring it leaves it running.
        (S::Started, E::Request(Requested::Started)) => Some(S::Started),
        (S::Started, E::Request(Requested::Stopped | Requested::Disabled)) => Some(S::RequestStop),
        (S::Started, E::Request(Requested::Ignored)) => Some(S::Ignored),
        (S::Started, E::MigrateRequested) => Some(S::Migrate),
        (S::Started, E::RelocateRequested | E::CrashRelocate) => Some(S::Relocate),
        (S::Started, E::CrashRestart) => Some(S::Started),
        (S::Started, E::CrashGiveUp) => Some(S::Error),
        (S::Started | S::RequestStop | S::Migrate | S::Relocate, E::NodeLost) => Some(S::Fence),
        (S::RequestStop, E::StopConfirmed) => Some(S::Stopped),
        (S::RequestStop, E::Request(Requested::Started)) => Some(S::Started),
        (S::RequestStop, E::Request(Requested::Stopped | Requested::Disabled)) => {
            Some(S::RequestStop)
        }
        // Until the lease has surely expired, nothing may start it elsewhere; requests wait.
        (S::Fence, E::LeaseExpired) => Some(S::Recovery),
        (S::Fence, E::NodeReturned) => Some(S::Started),
        // Once fenced it is stopped everywhere: a stop request needs no node.
        (S::Recovery, E::Placed) => Some(S::Started),
        (S::Recovery, E::Request(r @ (Requested::Stopped | Requested::Disabled))) => Some(rest(r)),
        (S::Recovery, E::Request(Requested::Started)) => Some(S::Recovery),
        (S::Migrate | S::Relocate, E::Placed | E::MoveFailed) => Some(S::Started),
        (S::Migrate | S::Relocate, E::MoveGaveUp) => Some(S::Error),
        // Proxmox semantics: only `disabled` (or `ignored`) leaves error.
        (S::Error, E::Request(r @ (Requested::Disabled | Requested::Ignored))) => Some(rest(r)),
        _ => None,
    };
    to.ok_or(IllegalTransition { from, event })
}

/// What to do after a crash, given the counters and limits.
pub fn crash_event(restarts: u32, relocates: u32, max_restart: u32, max_relocate: u32) -> Event {
    if restarts < max_restart {
        Event::CrashRestart
    } else if relocates < max_relocate {
        Event::CrashRelocate
    } else {
        Event::CrashGiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use HaState as S;
    use Requested as R;

    #[test]
    fn transitions_follow_the_table() {
        let table: &[(HaState, Event, Option<HaState>)] = &[
            (S::Stopped, E::Request(R::Started), Some(S::Started)),
            (S::Stopped, E::Request(R::Disabled), Some(S::Disabled)),
            (S::Disabled, E::Request(R::Started), Some(S::Started)),
            (S::Ignored, E::Request(R::Stopped), Some(S::Stopped)),
            (S::Stopped, E::NodeLost, None),
            (S::Stopped, E::CrashRestart, None),
            (S::Started, E::Request(R::Stopped), Some(S::RequestStop)),
            (S::Started, E::Request(R::Disabled), Some(S::RequestStop)),
            (S::Started, E::Request(R::Ignored), Some(S::Ignored)),
            (S::Started, E::NodeLost, Some(S::Fence)),
            (S::Started, E::CrashRestart, Some(S::Started)),
            (S::Started, E::CrashRelocate, Some(S::Relocate)),
            (S::Started, E::CrashGiveUp, Some(S::Error)),
            (S::Started, E::MigrateRequested, Some(S::Migrate)),
            (S::Started, E::RelocateRequested, Some(S::Relocate)),
            (S::Started, E::LeaseExpired, None),
            (S::Started, E::Placed, None),
            (S::RequestStop, E::StopConfirmed, Some(S::Stopped)),
            (S::RequestStop, E::NodeLost, Some(S::Fence)),
            (S::RequestStop, E::Request(R::Started), Some(S::Started)),
            (S::Fence, E::LeaseExpired, Some(S::Recovery)),
            (S::Fence, E::NodeReturned, Some(S::Started)),
            (S::Fence, E::Placed, None),
            (S::Fence, E::Request(R::Stopped), None),
            (S::Fence, E::Request(R::Ignored), None),
            (S::Recovery, E::Placed, Some(S::Started)),
            (S::Recovery, E::Request(R::Stopped), Some(S::Stopped)),
            (S::Recovery, E::Request(R::Disabled), Some(S::Disabled)),
            (S::Recovery, E::Request(R::Started), Some(S::Recovery)),
            (S::Recovery, E::Request(R::Ignored), None),
            (S::Recovery, E::NodeReturned, None),
            (S::Relocate, E::Placed, Some(S::Started)),
            (S::Relocate, E::MoveFailed, Some(S::Started)),
            (S::Relocate, E::MoveGaveUp, Some(S::Error)),
            (S::Relocate, E::NodeLost, Some(S::Fence)),
            (S::Migrate, E::Placed, Some(S::Started)),
            (S::Migrate, E::NodeLost, Some(S::Fence)),
            (S::Error, E::Request(R::Started), None),
            (S::Error, E::Request(R::Stopped), None),
            (S::Error, E::Request(R::Disabled), Some(S::Disabled)),
            (S::Error, E::CrashRestart, None),
        ];
        for (from, event, to) in table {
            assert_eq!(transition(*from, *event).ok(), *to, "{from} --{event:?}-->");
        }
    }

    #[test]
    fn nothing_but_the_lease_expiry_or_the_node_leads_out_of_fence() {
        let events = [
            E::Request(R::Started),
            E::Request(R::Stopped),
            E::Request(R::Disabled),
            E::Request(R::Ignored),
            E::MigrateRequested,
            E::RelocateRequested,
            E::StopConfirmed,
            E::NodeLost,
            E::CrashRestart,
            E::CrashRelocate,
            E::CrashGiveUp,
            E::Placed,
            E::MoveFailed,
            E::MoveGaveUp,
        ];
        for event in events {
            assert!(transition(S::Fence, event).is_err(), "{event:?}");
        }
    }

    #[test]
    fn crashes_restart_then_relocate_then_give_up() {
        assert_eq!(crash_event(0, 0, 1, 1), E::CrashRestart);
        assert_eq!(crash_event(1, 0, 1, 1), E::CrashRelocate);
        assert_eq!(crash_event(1, 1, 1, 1), E::CrashGiveUp);
        assert_eq!(crash_event(0, 0, 0, 0), E::CrashGiveUp);
        assert_eq!(crash_event(2, 0, 3, 0), E::CrashRestart);
    }

    #[test]
    fn states_and_requests_round_trip_through_their_words() {
        for st in HaState::ALL {
            assert_eq!(st.as_str().parse::<HaState>(), Ok(st));
        }
        for r in [R::Started, R::Stopped, R::Disabled, R::Ignored] {
            assert_eq!(r.as_str().parse::<Requested>(), Ok(r));
        }
        assert!("running"
            .parse::<Requested>()
            .unwrap_err()
            .contains("started"));
    }
}
