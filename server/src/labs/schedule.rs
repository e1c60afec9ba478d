//! The labs' schedule: every `--lab-check-secs` the server stops the VMs of every lab that
//! reached its end (task `labend`) and tears down the labs whose `delete-after` days have
//! passed (task `labdestroy`), both as root@kiln. A lab busy with another operation is
//! handled at a later check; an end moved later (an extension) is not handled early.

use std::collections::HashMap;
use std::time::Duration;

use super::{power, teardown, when};
use crate::auth::privilege::ROOT;
use crate::db::{unix_now, LabRecord};
use crate::state::AppState;

/// A teardown that failed is tried again after this many seconds (not at every check).
const TEARDOWN_RETRY_SECS: i64 = 3600;

/// Run forever: one check per `period`.
pub async fn run(app: AppState, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut teardowns = HashMap::new();
    loop {
        ticker.tick().await;
        check_once(&app, &mut teardowns).await;
    }
}

/// One check of every lab; `teardowns` remembers when each lab's teardown was last started.
pub async fn check_once(app: &AppState, teardowns: &mut HashMap<String, i64>) {
    let labs = match app.db.labs().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("lab schedule: cannot list labs: {e}");
            return;
        }
    };
    let now = unix_now();
    for lab in labs {
        let delete_at = lab
            .delete_after_days
            .map(|days| lab.ends_at + i64::from(days) * 86_400);
        if delete_at.is_some_and(|t| now >= t) {
            let recent = teardowns
                .get(&lab.labid)
                .is_some_and(|t| now - t < TEARDOWN_RETRY_SECS);
            if !recent && tear_down(app, &lab).await {
                teardowns.insert(lab.labid.clone(), now);
            }
        } else if !lab.ended && now >= lab.ends_at {
            end(app, &lab).await;
        }
    }
}

async fn end(app: &AppState, lab: &LabRecord) {
    let Ok(guard) = app.lab_locks.lock(&lab.labid, "labend") else {
        return; // busy: the next check
    };
    match app.db.mark_lab_ended(&lab.labid, lab.ends_at).await {
        Ok(true) => {}
        Ok(false) => return, // the end moved meanwhile
        Err(e) => {
            tracing::error!("lab schedule: {e}");
            return;
        }
    }
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
                power::run(task_app, labid, false, log).await
            },
        )
        .await;
    if let Err(e) = spawned {
        tracing::error!(
            "lab schedule: cannot start the end of lab {}: {e}",
            lab.labid
        );
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
