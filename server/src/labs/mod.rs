//! Teaching labs: an instructor gives every student of a roster a clone of a template VM, in
//! a pool of the student's own, for a scheduled time.
//!
//! - A lab lives in the pool of the same id (the *lab pool*). Whoever holds `Pool.Allocate`
//!   there (the built-in role `KilnLabInstructor`, or `Administrator`) runs the lab; the lab
//!   pool's quota (set above it, by an administrator) bounds the whole lab.
//! - Each student's pool is a child of the lab pool (`<lab>-<name>`), so the instructor's
//!   roles on the lab pool reach every student VM, and the student pool's quota is the lab's
//!   per-student quota. The student gets [`STUDENT_ROLE`] (`VM.Audit`, `VM.Console`,
//!   `VM.PowerMgmt`) on their own VM only.
//! - The roster is a group: an existing one, or one the lab creates from a CSV of names and
//!   e-mail addresses (accounts with one-time passwords, see [`roster`]).
//! - Deploying ([`deploy`]) clones one VM per student who has none, in parallel, as one task;
//!   [`power`] starts or stops every VM, [`reset`] re-clones one student's VM from the
//!   template, [`teardown`] removes the VMs and student pools, and [`schedule`] stops the VMs
//!   at the lab's end (and tears it down N days later when asked to).

pub mod deploy;
pub mod pools;
pub mod power;
pub mod reset;
pub mod roster;
pub mod schedule;
pub mod teardown;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::access::{AccessControl, Privilege};
use crate::api::error::ApiError;
use crate::auth::{authorize, AuthUser};
use crate::db::{unix_now, LabRecord};
use crate::state::AppState;

/// The built-in role a student gets on their lab VM: `VM.Audit`, `VM.Console`, `VM.PowerMgmt`.
pub const STUDENT_ROLE: &str = crate::access::roles::LAB_STUDENT;
/// Longest lab id (student pools are `<lab>-<name>` within 64 characters).
pub const MAX_LABID: usize = 32;

/// Where a lab is in its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before its start: students cannot start their VMs yet.
    Scheduled,
    /// Between start and end.
    Open,
    /// After its end: the VMs are stopped and students cannot start them.
    Ended,
}

impl Phase {
    /// The phase of `lab` at `now` (Unix seconds).
    pub fn of(lab: &LabRecord, now: i64) -> Phase {
        if now >= lab.ends_at {
            Phase::Ended
        } else if now < lab.starts_at {
            Phase::Scheduled
        } else {
            Phase::Open
        }
    }

    /// The phase now.
    pub fn now(lab: &LabRecord) -> Phase {
        Phase::of(lab, unix_now())
    }

    /// `scheduled`, `open` or `ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scheduled => "scheduled",
            Phase::Open => "open",
            Phase::Ended => "ended",
        }
    }
}

/// The group a lab creates for a CSV roster.
pub fn own_group_id(labid: &str) -> String {
    format!("lab-{labid}")
}

fn name_part(userid: &str) -> &str {
    userid.split('@').next().unwrap_or(userid)
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..2])
}

/// The pool of a student of `labid`: `<lab>-<name>`, shortened with a hash of the user id
/// when that would be longer than a pool id may be.
pub fn student_pool_id(labid: &str, userid: &str) -> String {
    let id = format!("{labid}-{}", name_part(userid));
    if id.len() <= 64 {
        return id;
    }
    let mut cut = format!("{labid}-{}", name_part(userid));
    cut.truncate(64 - 5);
    format!("{cut}-{}", short_hash(userid))
}

/// The name of a student's VM: `<lab>-<name>` as a DNS name (other characters become `-`).
pub fn student_vm_name(labid: &str, userid: &str) -> String {
    let raw = format!("{labid}-{}", name_part(userid));
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    name.truncate(64);
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        format!("lab-{}", short_hash(userid))
    } else {
        name
    }
}

/// The students of `lab`: the members of its roster group, by id.
pub fn roster(ac: &AccessControl, lab: &LabRecord) -> Vec<String> {
    ac.group(&lab.groupid)
        .map(|g| g.members.iter().cloned().collect())
        .unwrap_or_default()
}

/// Whether the caller runs lab `labid` (`Pool.Allocate` on its pool).
pub fn is_instructor(user: &AuthUser, labid: &str) -> bool {
    authorize(user, &format!("/pool/{labid}"), Privilege::PoolAllocate).is_ok()
}

/// Students may start their lab VM only while the lab is open (its instructors at any time):
/// the refusal says when it opens, or that it ended.
pub async fn check_window(app: &AppState, user: &AuthUser, vmid: u32) -> Result<(), ApiError> {
    let Some((labid, _)) = app.db.lab_of_vm(vmid).await? else {
        return Ok(());
    };
    if is_instructor(user, &labid) {
        return Ok(());
    }
    let Some(lab) = app.db.lab(&labid).await? else {
        return Ok(());
    };
    match Phase::now(&lab) {
        Phase::Open => Ok(()),
        Phase::Scheduled => Err(ApiError::Conflict(format!(
            "lab {labid} opens at {}; your VM can start then",
            when(lab.starts_at)
        ))),
        Phase::Ended => Err(ApiError::Conflict(format!(
            "lab {labid} ended at {}; ask your instructor to extend it",
            when(lab.ends_at)
        ))),
    }
}

/// The node a lab's tasks are filed under: the lab's node, or its template's.
pub async fn task_node(app: &AppState, lab: &LabRecord) -> String {
    if !lab.node.is_empty() {
        return lab.node.clone();
    }
    if let Ok(Some(vm)) = app.db.vm(lab.template).await {
        return vm.node;
    }
    match app.db.nodes().await {
        Ok(nodes) => nodes.into_iter().next().map(|n| n.name).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A point in time for messages: `2026-11-30 14:05 UTC`.
pub fn when(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Operations in progress on each lab (deploy, power, reset, teardown, end): one at a time.
#[derive(Debug, Default, Clone)]
pub struct LabLocks(Arc<Mutex<HashMap<String, &'static str>>>);

/// Holds a lab's lock until dropped.
#[derive(Debug)]
pub struct LabLockGuard {
    locks: LabLocks,
    labid: String,
}

/// A lab is busy with another operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lab {labid} is busy ({holder} in progress); wait for that task to finish")]
pub struct LabBusy {
    /// The lab.
    pub labid: String,
    /// The operation holding it.
    pub holder: &'static str,
}

impl LabLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, &'static str>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take lab `labid`'s lock for operation `op`, or say who holds it.
    pub fn lock(&self, labid: &str, op: &'static str) -> Result<LabLockGuard, LabBusy> {
        let mut map = self.map();
        if let Some(holder) = map.get(labid) {
            return Err(LabBusy {
                labid: labid.to_owned(),
                holder,
            });
        }
        map.insert(labid.to_owned(), op);
        Ok(LabLockGuard {
            locks: self.clone(),
            labid: labid.to_owned(),
        })
    }

    /// The operation holding `labid`, if any.
    pub fn holder(&self, labid: &str) -> Option<&'static str> {
        self.map().get(labid).copied()
    }
}

impl Drop for LabLockGuard {
    fn drop(&mut self) {
        self.locks.map().remove(&self.labid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_pools_and_vm_names_fit_their_rules() {
        assert_eq!(student_pool_id("lab1", "ada@kiln"), "lab1-ada");
        let long = student_pool_id(&"l".repeat(32), &format!("{}@kiln", "a".repeat(64)));
        assert_eq!(long.len(), 64);
        assert_ne!(
            long,
            student_pool_id(&"l".repeat(32), &format!("{}b@kiln", "a".repeat(63)))
        );
        assert_eq!(student_vm_name("lab1", "grace.h_x@kiln"), "lab1-grace-h-x");
        assert!(crate::vms::check_name(&student_vm_name("l", "_.-@kiln")).is_ok());
        let name = student_vm_name(&"l".repeat(32), &format!("{}@kiln", "a".repeat(64)));
        assert!(crate::vms::check_name(&name).is_ok(), "{name}");
    }

    #[test]
    fn phases_follow_the_schedule() {
        let lab = LabRecord {
            starts_at: 100,
            ends_at: 200,
            ..Default::default()
        };
        assert_eq!(Phase::of(&lab, 99), Phase::Scheduled);
        assert_eq!(Phase::of(&lab, 100), Phase::Open);
        assert_eq!(Phase::of(&lab, 200), Phase::Ended);
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_796_047_500), "2026-11-30 14:05 UTC");
    }

    #[test]
    fn a_lab_runs_one_operation_at_a_time() {
        let locks = LabLocks::default();
        let g = locks.lock("l1", "labdeploy").unwrap();
        assert_eq!(
            locks.lock("l1", "labstop").unwrap_err().to_string(),
            "lab l1 is busy (labdeploy in progress); wait for that task to finish"
        );
        drop(g);
        assert!(locks.lock("l1", "labstop").is_ok());
    }
}
