//! The HA manager's actions, each a task with a log: start (`hastart`), stop (`hastop`),
//! recovery (`harecover`) and moves (`harelocate`, `hamigrate`). Each stores the resource's
//! new state when it ends, before it releases the resource for the next round.

use super::actions;
use super::manager::{apply, save, Round};
use super::placement;
use super::rules::parse_sid;
use super::state::{transition, Event, HaState};
use crate::db::{HaServiceRecord, VmRecord};
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::migrate::{self, MigrationPlan, DEFAULT_DOWNTIME_MS};

/// How a resource moves to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveHow {
    /// Stop it where it is, start it there.
    Restart,
    /// Live-migrate it if it runs; if that is not possible (or fails) and `fallback` is set,
    /// stop it and start it there instead.
    Live {
        /// Restart when live migration is not possible.
        fallback: bool,
    },
}

/// Start `vm` on `node` in a task; the resource stays `started`.
pub(super) async fn spawn_start(
    app: &AppState,
    round: &mut Round,
    vm: &VmRecord,
    svc: HaServiceRecord,
    node: String,
    kind: &'static str,
) -> Result<(), crate::db::DbError> {
    let Some(busy) = app.ha.try_busy(&svc.sid) else {
        return Ok(());
    };
    let Ok(vm_lock) = app.vm_locks.lock(vm.vmid, kind) else {
        return Ok(()); // another operation holds the VM; next round
    };
    round.reserve(&svc.sid, &node, vm);
    let (app2, vm2) = (app.clone(), vm.clone());
    let task_node = node.clone();
    app.tasks
        .spawn(
            &task_node,
            kind,
            &vm.vmid.to_string(),
            crate::auth::privilege::ROOT,
            (busy, vm_lock),
            move |log| async move {
                if let Some(reason) = &svc.reason {
                    log.log(format!("HA: {reason}")).await;
                }
                let result = actions::start_on(&app2, &vm2, &node, &log).await;
                let mut svc = svc;
                svc.node = node.clone();
                if result.is_err() {
                    app2.ha.back_off(&svc.sid);
                }
                if let Err(e) = save(&app2, &svc).await {
                    log.log(format!("warning: cannot save the HA state: {e}"))
                        .await;
                }
                result
            },
        )
        .await
        .map(|_| ())
}

/// Stop a resource whose requested state is no longer `started`.
pub(super) async fn stop(
    app: &AppState,
    vm: &VmRecord,
    svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    let Some(busy) = app.ha.try_busy(&svc.sid) else {
        return Ok(());
    };
    let Ok(vm_lock) = app.vm_locks.lock(vm.vmid, "hastop") else {
        return Ok(());
    };
    let (app2, vm2) = (app.clone(), vm.clone());
    app.tasks
        .spawn(
            &vm.node,
            "hastop",
            &vm.vmid.to_string(),
            crate::auth::privilege::ROOT,
            (busy, vm_lock),
            move |log| async move {
                let result = actions::stop_on(&app2, &vm2, &vm2.node, &log).await;
                let mut svc = svc;
                if result.is_ok() && apply(&mut svc, Event::StopConfirmed) {
                    if let Err(e) = save(&app2, &svc).await {
                        log.log(format!("warning: cannot save the HA state: {e}"))
                            .await;
                    }
                }
                result
            },
        )
        .await
        .map(|_| ())
}

/// Recover a fenced resource on the best node.
pub(super) async fn recover(
    app: &AppState,
    round: &mut Round,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    // A recovery interrupted by a server restart may already have started it: adopt that
    // copy instead of starting a second one.
    let running = match actions::active_on(app, vm.vmid).await {
        Ok(running) => running,
        Err(why) => {
            if svc.reason.as_deref() != Some(why.as_str()) {
                svc.reason = Some(why);
                save(app, &svc).await?;
            }
            return Ok(());
        }
    };
    if let Some(node) = running {
        if node != vm.node {
            app.db.set_vm_node(vm.vmid, &node).await?;
        }
        tracing::info!(sid = %svc.sid, "recovery found it running on node {node}");
        apply(&mut svc, Event::Placed);
        svc.node = node;
        svc.target = None;
        svc.reason = None;
        return save(app, &svc).await;
    }
    let need = round.need(&svc.sid, vm);
    let target = match placement::choose(&round.candidates, &need) {
        Ok(t) => t,
        Err(why) => {
            let reason = format!("waiting for a node: {why}");
            if svc.reason.as_deref() != Some(reason.as_str()) {
                tracing::warn!(sid = %svc.sid, "{reason}");
                svc.reason = Some(reason);
                save(app, &svc).await?;
            }
            return Ok(());
        }
    };
    let Some(busy) = app.ha.try_busy(&svc.sid) else {
        return Ok(());
    };
    let Ok(vm_lock) = app.vm_locks.lock(vm.vmid, "harecover") else {
        return Ok(());
    };
    round.reserve(&svc.sid, &target, vm);
    svc.target = Some(target.clone());
    save(app, &svc).await?;
    let (app2, vm2) = (app.clone(), vm.clone());
    let lost = app.nodes.get(&vm.node).last_seen;
    let task_node = target.clone();
    app.tasks
        .spawn(
            &task_node,
            "harecover",
            &vm.vmid.to_string(),
            crate::auth::privilege::ROOT,
            (busy, vm_lock),
            move |log| async move {
                log.log(format!(
                    "HA: recovering VM {} from node {} (last answer {}); its lease has surely expired, so its kiln-vmm has stopped the guest",
                    vm2.vmid,
                    vm2.node,
                    lost.map_or_else(|| "before this server started".into(), |t| format!("{:.1} s ago", t.elapsed().as_secs_f64()))
                ))
                .await;
                log.log(format!("HA: placed on node {target}")).await;
                let result = actions::start_on(&app2, &vm2, &target, &log).await;
                let mut svc = svc;
                match &result {
                    Ok(()) => {
                        apply(&mut svc, Event::Placed);
                        svc.node = target;
                        svc.target = None;
                        svc.reason = None;
                    }
                    Err(e) => {
                        svc.target = None;
                        svc.reason = Some(format!("recovery on {target} failed: {e}; trying again"));
                    }
                }
                if let Err(e) = save(&app2, &svc).await {
                    log.log(format!("warning: cannot save the HA state: {e}"))
                        .await;
                }
                result
            },
        )
        .await
        .map(|_| ())
}

/// Live-migrate `vm` to `target` if it runs and can go there; `Ok(false)` if it was not
/// attempted (not running, or the target cannot take it live: logged).
async fn live_move(
    app: &AppState,
    vm: &VmRecord,
    target: &str,
    log: &TaskLogger,
) -> Result<bool, String> {
    if vm.node == target || !crate::vms::observe(app, vm).is_active() {
        return Ok(false);
    }
    if let Some(problem) = migrate::target_problem(app, vm, true, target) {
        log.log(format!("HA: cannot live-migrate: {problem}")).await;
        return Ok(false);
    }
    let plan = MigrationPlan {
        target: target.to_owned(),
        online: true,
        bwlimit_mib_s: None,
        downtime_ms: DEFAULT_DOWNTIME_MS,
    };
    migrate::run(app.clone(), vm.clone(), plan, log.clone())
        .await
        .map(|()| true)
}

/// Move `vm` to `target`, live or by stopping it where it runs and starting it there.
pub(super) async fn relocate(
    app: &AppState,
    vm: &VmRecord,
    svc: HaServiceRecord,
    target: String,
    kind: &'static str,
    why: &'static str,
    how: MoveHow,
) -> Result<(), crate::db::DbError> {
    let Some(busy) = app.ha.try_busy(&svc.sid) else {
        return Ok(());
    };
    let Ok(vm_lock) = app.vm_locks.lock(vm.vmid, kind) else {
        return Ok(());
    };
    let (app2, vm2) = (app.clone(), vm.clone());
    let task_node = target.clone();
    app.tasks
        .spawn(
            &task_node,
            kind,
            &vm.vmid.to_string(),
            crate::auth::privilege::ROOT,
            (busy, vm_lock),
            move |log| async move {
                log.log(format!(
                    "HA: moving VM {} from node {} to node {target} ({why}; {})",
                    vm2.vmid,
                    vm2.node,
                    match how {
                        MoveHow::Restart => "by stop and start",
                        MoveHow::Live { .. } => "live if it runs",
                    }
                ))
                .await;
                if let Some(reason) = &svc.reason {
                    log.log(format!("HA: {reason}")).await;
                }
                let mut result = Ok(());
                let mut moved = false;
                if let MoveHow::Live { fallback } = how {
                    match live_move(&app2, &vm2, &target, &log).await {
                        Ok(done) => moved = done,
                        Err(e) if fallback => {
                            log.log(format!(
                                "HA: live migration failed ({e}); stopping and starting it instead"
                            ))
                            .await;
                        }
                        Err(e) => result = Err(e),
                    }
                }
                if !moved && result.is_ok() {
                    if vm2.node != target {
                        result = actions::stop_on(&app2, &vm2, &vm2.node, &log).await;
                    }
                    if result.is_ok() {
                        result = actions::start_on(&app2, &vm2, &target, &log).await;
                    }
                }
                let mut svc = svc;
                match &result {
                    Ok(()) => {
                        apply(&mut svc, Event::Placed);
                        svc.node = target;
                    }
                    Err(e) => {
                        apply(&mut svc, Event::MoveFailed);
                        svc.reason = Some(format!("moving to {target} failed: {e}"));
                        app2.ha.back_off(&svc.sid);
                    }
                }
                svc.target = None;
                if let Err(e) = save(&app2, &svc).await {
                    log.log(format!("warning: cannot save the HA state: {e}"))
                        .await;
                }
                result
            },
        )
        .await
        .map(|_| ())
}

/// Mark a resource for a move requested through the API (`migrate` / `relocate`).
pub async fn request_move(
    app: &AppState,
    sid: &str,
    target: &str,
    live: bool,
) -> Result<(), String> {
    let vmid = parse_sid(sid)?;
    let vm = app
        .db
        .vm(vmid)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("VM {vmid} does not exist"))?;
    let mut svc = app
        .db
        .ha_services()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| s.sid == sid)
        .ok_or_else(|| format!("{sid} has not been started by HA yet; wait a moment"))?;
    if app.ha.is_busy(sid) {
        return Err(format!(
            "{sid} has an HA action under way; wait for it to finish"
        ));
    }
    let event = if live {
        Event::MigrateRequested
    } else {
        Event::RelocateRequested
    };
    let from = svc.state.parse::<HaState>().unwrap_or(HaState::Error);
    if transition(from, event).is_err() {
        return Err(format!(
            "{sid} is in HA state {from}; only a started resource can be moved"
        ));
    }
    if vm.node == target {
        return Err(format!("{sid} is already on node {target}"));
    }
    apply(&mut svc, event);
    svc.target = Some(target.to_owned());
    svc.reason = Some(if live {
        format!("live migration to {target} requested")
    } else {
        format!("relocation to {target} requested")
    });
    save(app, &svc).await.map_err(|e| e.to_string())?;
    relocate(
        app,
        &vm,
        svc,
        target.to_owned(),
        if live { "hamigrate" } else { "harelocate" },
        "requested",
        if live {
            MoveHow::Live { fallback: false }
        } else {
            MoveHow::Restart
        },
    )
    .await
    .map_err(|e| e.to_string())
}
