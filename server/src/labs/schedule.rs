//! The labs' schedule: every `--lab-check-secs` the server stops the VMs of every lab that
//! reached its end (task `labend`) and tears down the labs whose `delete-after` days have
//! passed (task `labdestroy`), both as root@kiln. A lab busy with another operation is
//! handled at a later check; an end moved later (an extension) is not handled early. An end
//! counts as handled only once every VM stopped (a VM whose node was offline is tried again
//! a minute later), so neither a failure nor a server restart leaves a VM running past it.
//! (Students cannot start their VMs after the end either way: that follows the clock.)

use std::collections::HashMap;
use std::time::Duration;

use super::{power, teardown, when};
use crate::auth::privilege::ROOT;
use crate::db::{unix_now, LabRecord};
use crate::state::AppState;

/// A teardown that failed is tried again after this many seconds (not at every check).
const TEARDOWN_RETRY_SECS: i64 = 3600;
/// An end that could not stop every VM is tried again after this many seconds.
const END_RETRY_SECS: i64 = 60;

/// When (Unix seconds) the schedule last started something, per lab, kind and end (an end
/// moved elsewhere is a new end, handled at once when it comes).
type Attempts = HashMap<(String, &'static str, i64), i64>;

/// Run forever: one check per `period`.
pub async fn run(app: AppState, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempts = Attempts::new();
    loop {
        ticker.tick().await;
        check_once(&app, &mut attempts).await;
    }
}

/// One check of every lab; `attempts` remembers what was started for each lab, and when.
async fn check_once(app: &AppState, attempts: &mut Attempts) {
    let labs = match app.db.labs().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("lab schedule: cannot list labs: {e}");
            return;
        }
    };
    let now = unix_now();
    for lab in labs {
        let key = |kind: &'static str| (lab.labid.clone(), kind, lab.ends_at);
        let recent = |kind: &'static str, within: i64| {
            attempts.get(&key(kind)).is_some_and(|t| now - t < within)
        };
        match due(&lab, now) {
            Due::TearDown => {
                if !recent("destroy", TEARDOWN_RETRY_SECS) && tear_down(app, &lab).await {
                    attempts.insert(key("destroy"), now);
                }
            }
            Due::End => {
                if !recent("end", END_RETRY_SECS) && end(app, &lab).await {
                    attempts.insert(key("end"), now);
                }
            }
            Due::Nothing => {}
        }
    }
}

/// What the schedule owes a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Nothing now.
    Nothing,
    /// Its end came and its VMs are to be stopped.
    End,
    /// Its `delete-after` days after the end have passed.
    TearDown,
}

/// What the schedule owes `lab` at `now` (Unix seconds).
fn due(lab: &LabRecord, now: i64) -> Due {
    let delete_at = lab
        .delete_after_days
        .map(|days| lab.ends_at + i64::from(days) * 86_400);
    if delete_at.is_some_and(|t| now >= t) {
        Due::TearDown
    } else if !lab.ended && now >= lab.ends_at {
        Due::End
    } else {
        Due::Nothing
    }
}

/// Start stopping a lab's VMs at its end; `false` if it is busy or the task could not start.
async fn end(app: &AppState, lab: &LabRecord) -> bool {
    let Ok(guard) = app.lab_locks.lock(&lab.labid, "labend") else {
        return false; // busy: the next check
    };
    let node = super::task_node(app, lab).await;
    let (task_app, labid, ends) = (app.clone(), lab.labid.clone(), lab.ends_at);
    let spawned = app
        .tasks
        .spawn(
            &node,
            "labend",
            &lab.labid,
            ROOT,
            guard,
            move |log| async move {
                log.log(format!(
                    "lab {labid} ended at {}: stopping its VMs",
                    when(ends)
                ))
                .await;
                power::run(task_app.clone(), labid.clone(), false, log).await?;
                // Handled, unless the end moved meanwhile (then it is handled when it comes).
                task_app
                    .db
                    .mark_lab_ended(&labid, ends)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await;
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(
                "lab schedule: cannot start the end of lab {}: {e}",
                lab.labid
            );
            false
        }
    }
}

/// Start a lab's teardown; `false` if it is busy or the task could not start.
async fn tear_down(app: &AppState, lab: &LabRecord) -> bool {
    let Ok(guard) = app.lab_locks.lock(&lab.labid, "labdestroy") else {
        return false;
    };
    let node = super::task_node(app, lab).await;
    let (task_app, labid, days) = (
        app.clone(),
        lab.labid.clone(),
        lab.delete_after_days.unwrap_or_default(),
    );
    let spawned = app
        .tasks
        .spawn(
            &node,
            "labdestroy",
            &lab.labid,
            ROOT,
            guard,
            move |log| async move {
                log.log(format!(
                    "lab {labid} ended {days} day(s) ago and is to be removed then"
                ))
                .await;
                teardown::run(task_app, labid, log).await
            },
        )
        .await;
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(
                "lab schedule: cannot start the removal of lab {}: {e}",
                lab.labid
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_ends_once_and_is_torn_down_its_days_after_the_end() {
        let mut lab = LabRecord {
            starts_at: 0,
            ends_at: 1000,
            delete_after_days: Some(2),
            ..Default::default()
        };
        assert_eq!(due(&lab, 999), Due::Nothing);
        assert_eq!(due(&lab, 1000), Due::End);
        lab.ended = true;
        assert_eq!(due(&lab, 1000 + 2 * 86_400 - 1), Due::Nothing);
        assert_eq!(due(&lab, 1000 + 2 * 86_400), Due::TearDown);
        lab.delete_after_days = None;
        assert_eq!(due(&lab, 1000 + 365 * 86_400), Due::Nothing);
    }
}
