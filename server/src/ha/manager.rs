//! The HA manager: after every heartbeat round it walks every HA resource through its state
//! machine ([`super::state`]) and starts the actions the new state needs, each as a task
//! (`hastart`, `hastop`, `harecover`, `harelocate`, `hamigrate`). Its state is stored after
//! every transition, so a restarted server resumes a recovery where it was.
//!
//! Safety rule: a resource whose node stopped answering is recovered only once that node's
//! lease has surely expired on the server's own clock ([`crate::cluster::NodeRegistry`]); by
//! then the node's VMMs have stopped their guests themselves.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_api_types::NodeState;

use super::moves::MoveHow;
use super::placement::{self, Candidate, Need};
use super::rules::Rules;
use super::state::{crash_event, transition, Event, HaState, Requested};
use super::{actions, moves};
use crate::db::{HaResourceRecord, HaServiceRecord, NodeRecord, VmRecord};
use crate::state::AppState;
use crate::vms::{observe, Observed};

/// A VM must be seen stopped this many rounds in a row before it counts as stopped (a
/// heartbeat answer in flight while a start finished must not count).
const CONFIRMATIONS: u32 = 2;
/// After a failed start, wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A node must have at least this much lease left to be given an HA VM.
const MIN_LEASE_LEFT_MS: u64 = 250;
const MIB: u64 = 1024 * 1024;

/// The manager's memory between rounds (what is not worth storing: it is rebuilt in a few
/// rounds after a restart).
#[derive(Debug, Default)]
pub struct HaManager {
    /// Resources with an action under way.
    busy: Arc<Mutex<HashSet<String>>>,
    /// Rounds in a row each resource was seen not running.
    inactive: Mutex<HashMap<String, u32>>,
    /// No start before this time (after a failure).
    backoff: Mutex<HashMap<String, Instant>>,
}

/// Holds a resource busy until dropped.
pub struct Busy {
    set: Arc<Mutex<HashSet<String>>>,
    sid: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.sid);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HaManager {
    pub(super) fn try_busy(&self, sid: &str) -> Option<Busy> {
        let mut set = lock(&self.busy);
        if !set.insert(sid.to_owned()) {
            return None;
        }
        Some(Busy {
            set: self.busy.clone(),
            sid: sid.to_owned(),
        })
    }

    pub(super) fn is_busy(&self, sid: &str) -> bool {
        lock(&self.busy).contains(sid)
    }

    fn count_inactive(&self, sid: &str, active: bool) -> u32 {
        let mut map = lock(&self.inactive);
        let n = map.entry(sid.to_owned()).or_default();
        *n = if active { 0 } else { *n + 1 };
        *n
    }

    fn backing_off(&self, sid: &str) -> bool {
        lock(&self.backoff)
            .get(sid)
            .is_some_and(|t| Instant::now() < *t)
    }

    pub(super) fn back_off(&self, sid: &str) {
        lock(&self.backoff).insert(sid.to_owned(), Instant::now() + RETRY_AFTER);
    }
}

/// What one round knows of the cluster.
pub(super) struct Round {
    pub(super) nodes: Vec<NodeRecord>,
    /// Nodes in maintenance: nothing is placed there, their resources move away.
    maintenance: BTreeSet<String>,
    rules: Rules,
    pub(super) candidates: Vec<Candidate>,
    /// Where each resource is (or is being put).
    located: HashMap<String, String>,
    /// Nodes holding a copy of a VM at a migration handover (paused, waiting for the
    /// cluster's word): no second copy is started there.
    handover_copies: HashMap<u32, BTreeSet<String>>,
}

impl Round {
    fn online(&self, app: &AppState, node: &str) -> bool {
        self.nodes.iter().any(|n| n.name == node)
            && app.nodes.get(node).state(app.nodes.timeout()) == NodeState::Online
    }

    pub(super) fn need<'a>(&'a self, sid: &str, vm: &VmRecord) -> Need<'a> {
        let nodes_of = |peers: BTreeSet<String>| -> BTreeSet<String> {
            peers
                .iter()
                .filter_map(|p| self.located.get(p).cloned())
                .collect()
        };
        Need {
            memory_mib: u64::from(vm.memory_mib),
            affinity: self.rules.node_affinity(sid),
            apart: nodes_of(self.rules.peers(sid, false)),
            together: nodes_of(self.rules.peers(sid, true)),
            exclude: self
                .handover_copies
                .get(&vm.vmid)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Reserve `vm`'s memory on `node` for the rest of the round.
    pub(super) fn reserve(&mut self, sid: &str, node: &str, vm: &VmRecord) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.node == node) {
            c.free_mib = c.free_mib.saturating_sub(u64::from(vm.memory_mib));
        }
        self.located.insert(sid.to_owned(), node.to_owned());
    }
}

/// Per VM, the online nodes reporting a copy of it waiting at a migration handover.
fn handover_copies(app: &AppState) -> HashMap<u32, BTreeSet<String>> {
    let mut copies: HashMap<u32, BTreeSet<String>> = HashMap::new();
    for (node, vmid) in app.nodes.handover_copies() {
        copies.entry(vmid).or_default().insert(node);
    }
    copies
}

/// Nodes that may take an HA VM now: online, holding a valid lease, with their free memory.
fn candidates(app: &AppState, nodes: &[NodeRecord]) -> Vec<Candidate> {
    nodes
        .iter()
        .filter_map(|n| {
            let rt = app.nodes.get(&n.name);
            if rt.state(app.nodes.timeout()) != NodeState::Online
                || app.nodes.lease_surely_expired(&n.name)
            {
                return None;
            }
            let lease_ok = rt
                .lease
                .and_then(|l| l.remaining_ms)
                .is_some_and(|ms| ms >= MIN_LEASE_LEFT_MS);
            let facts = rt.facts.as_ref().filter(|_| lease_ok)?;
            let total = (facts.mem_total as f64 * app.memory_overcommit) as u64;
            let assigned: u64 = facts
                .vms
                .iter()
                .filter(|v| v.state != kiln_node_client::wire::VmPowerState::Stopped)
                .map(|v| v.memory_bytes)
                .sum();
            Some(Candidate {
                node: n.name.clone(),
                free_mib: total.saturating_sub(assigned) / MIB,
                load: facts.cpu_usage,
            })
        })
        .collect()
}

/// One pass over every HA resource (called after each heartbeat round).
pub async fn run_round(app: &AppState) {
    if let Err(e) = round(app).await {
        tracing::error!("HA manager: {e}");
    }
}

async fn round(app: &AppState) -> Result<(), crate::db::DbError> {
    let resources = app.db.ha_resources().await?;
    if resources.is_empty() {
        return Ok(());
    }
    let nodes = app.db.nodes().await?;
    // Right after a (re)start the server knows nothing of the nodes yet: decide nothing
    // until every node has answered or failed once.
    if nodes.iter().any(|n| {
        let rt = app.nodes.get(&n.name);
        rt.last_seen.is_none() && rt.last_error.is_none()
    }) {
        return Ok(());
    }
    let rules = match Rules::parse(&app.db.ha_rules().await?) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("HA manager: the rules do not parse ({e}); placing without rules");
            Rules::default()
        }
    };
    let services = app.db.ha_services().await?;
    let maintenance: BTreeSet<String> = app.db.ha_maintenance_nodes().await?.into_iter().collect();
    let mut round = Round {
        candidates: candidates(app, &nodes)
            .into_iter()
            .filter(|c| !maintenance.contains(&c.node))
            .collect(),
        maintenance,
        nodes,
        rules,
        located: HashMap::new(),
        handover_copies: handover_copies(app),
    };
    for s in &services {
        if let Ok(HaState::Started | HaState::Relocate | HaState::Migrate | HaState::Fence) =
            s.state.parse::<HaState>()
        {
            round.located.insert(s.sid.clone(), s.node.clone());
        }
    }
    for res in resources {
        if app.ha.is_busy(&res.sid) {
            continue;
        }
        // Read after the busy check: an action that just ended has stored its outcome.
        let Some(vm) = app.db.vm(res.vmid).await? else {
            continue; // the API refuses resources without a VM; a removed VM is skipped
        };
        let svc = match app.db.ha_service(&res.sid).await? {
            Some(svc) => svc,
            None => {
                let svc = HaServiceRecord {
                    sid: res.sid.clone(),
                    state: HaState::Stopped.as_str().into(),
                    node: vm.node.clone(),
                    target: None,
                    restarts: 0,
                    relocates: 0,
                    reason: None,
                };
                save(app, &svc).await?;
                svc
            }
        };
        step(app, &mut round, &res, &vm, svc).await?;
    }
    Ok(())
}

/// Apply `event` to `svc`; false (and an error in the log) if the table refuses it.
pub(super) fn apply(svc: &mut HaServiceRecord, event: Event) -> bool {
    let from = svc.state.parse::<HaState>().unwrap_or(HaState::Error);
    match transition(from, event) {
        Ok(to) => {
            if to != from {
                tracing::info!(sid = %svc.sid, "HA state {from} → {to} ({event:?})");
            }
            svc.state = to.as_str().into();
            true
        }
        Err(e) => {
            tracing::error!(sid = %svc.sid, "{e}");
            false
        }
    }
}

/// Store `svc`, unless its resource was removed meanwhile (an action that ends after the
/// removal must not leave its state behind for a resource of the same id added later).
pub(super) async fn save(app: &AppState, svc: &HaServiceRecord) -> Result<(), crate::db::DbError> {
    if app.db.ha_resource(&svc.sid).await?.is_none() {
        return Ok(());
    }
    app.db.save_ha_service(svc).await?;
    app.changes.notify();
    Ok(())
}

async fn step(
    app: &AppState,
    round: &mut Round,
    res: &HaResourceRecord,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    if app.vm_locks.holder(vm.vmid).is_some() {
        return Ok(()); // an operation on the VM is under way; look again next round
    }
    let requested: Requested = res.state.parse().unwrap_or(Requested::Stopped);
    let before = svc.clone();
    let state = svc.state.parse::<HaState>().unwrap_or(HaState::Error);
    match state {
        HaState::Stopped | HaState::Disabled | HaState::Ignored => {
            if state.as_str() != rest_word(requested) && apply(&mut svc, Event::Request(requested))
            {
                svc.reason = None;
                if requested == Requested::Started {
                    svc.restarts = 0;
                    svc.relocates = 0;
                    svc.node = vm.node.clone();
                    save(app, &svc).await?;
                    return start_here_or_place(app, round, vm, svc, "hastart").await;
                }
            }
        }
        HaState::Started => {
            if requested != Requested::Started {
                apply(&mut svc, Event::Request(requested));
                save(app, &svc).await?;
                if svc.state == HaState::RequestStop.as_str() {
                    return moves::stop(app, vm, svc).await;
                }
                if requested == Requested::Ignored {
                    actions::unguard(app, vm.vmid, &vm.node).await;
                }
                return Ok(());
            }
            if !round.online(app, &vm.node) {
                apply(&mut svc, Event::NodeLost);
                svc.reason = Some(format!(
                    "node {} stopped answering; waiting until its HA lease has surely expired",
                    vm.node
                ));
                save(app, &svc).await?;
                return Box::pin(step(app, round, res, vm, svc)).await;
            }
            return started(app, round, res, vm, svc).await;
        }
        HaState::RequestStop => {
            if !round.online(app, &vm.node) {
                apply(&mut svc, Event::NodeLost);
            } else if requested == Requested::Started {
                apply(&mut svc, Event::Request(requested));
            } else if !observe(app, vm).is_active() {
                apply(&mut svc, Event::StopConfirmed);
            } else if !app.ha.is_busy(&svc.sid) {
                return moves::stop(app, vm, svc).await;
            }
        }
        HaState::Fence => {
            let seen = observe(app, vm);
            if round.online(app, &vm.node) && seen.is_active() {
                apply(&mut svc, Event::NodeReturned);
                svc.reason = None;
            } else if app.nodes.lease_surely_expired(&vm.node) {
                apply(&mut svc, Event::LeaseExpired);
                svc.reason = Some(format!(
                    "node {} lost; its HA lease has surely expired (its VMMs fenced their guests)",
                    vm.node
                ));
                tracing::warn!(sid = %svc.sid, "node {} lost and fenced: recovering", vm.node);
                save(app, &svc).await?;
                return Box::pin(step(app, round, res, vm, svc)).await;
            }
        }
        HaState::Recovery => {
            if requested != Requested::Started {
                apply(&mut svc, Event::Request(requested));
            } else {
                return moves::recover(app, round, vm, svc).await;
            }
        }
        HaState::Relocate | HaState::Migrate => {
            // A move whose task did not finish (the server restarted): finish it.
            if !round.online(app, &vm.node) && svc.target.as_deref() != Some(vm.node.as_str()) {
                apply(&mut svc, Event::NodeLost);
            } else {
                let target = svc.target.clone().unwrap_or_else(|| vm.node.clone());
                return moves::relocate(
                    app,
                    vm,
                    svc,
                    target,
                    "harelocate",
                    "resuming a move",
                    MoveHow::Restart,
                )
                .await;
            }
        }
        HaState::Error => {
            if matches!(requested, Requested::Disabled | Requested::Ignored) {
                apply(&mut svc, Event::Request(requested));
            }
        }
    }
    if svc != before {
        save(app, &svc).await?;
    }
    Ok(())
}

fn rest_word(requested: Requested) -> &'static str {
    match requested {
        Requested::Started => HaState::Started.as_str(),
        Requested::Stopped => HaState::Stopped.as_str(),
        Requested::Disabled => HaState::Disabled.as_str(),
        Requested::Ignored => HaState::Ignored.as_str(),
    }
}

/// A started resource whose node answers: check it runs, handle crashes, fail back.
async fn started(
    app: &AppState,
    round: &mut Round,
    res: &HaResourceRecord,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    let seen = observe(app, vm);
    let inactive = app.ha.count_inactive(&svc.sid, seen.is_active());
    if seen.is_active() {
        if svc.node != vm.node || svc.reason.is_some() {
            svc.node = vm.node.clone();
            svc.reason = None;
            save(app, &svc).await?;
        }
        if seen.runtime().is_some_and(|rt| !rt.ha) {
            if let Some(busy) = app.ha.try_busy(&svc.sid) {
                let (app2, vmid, node) = (app.clone(), vm.vmid, vm.node.clone());
                tokio::spawn(async move {
                    let _busy = busy;
                    if let Err(e) = actions::guard(&app2, vmid, &node).await {
                        tracing::warn!("VM {vmid}: cannot guard it with the lease: {e}");
                    }
                });
            }
            return Ok(());
        }
        return failback(app, round, res, vm, svc).await;
    }
    if inactive < CONFIRMATIONS || app.ha.backing_off(&svc.sid) {
        return Ok(());
    }
    let crashed = matches!(&seen, Observed::Reported(rt) if rt.crashed);
    if !crashed {
        // Never started, a start that failed, or powered off from inside: start it again
        // (HA keeps a started resource running; `ha-manager set --state stopped` stops it).
        return start_here_or_place(app, round, vm, svc, "hastart").await;
    }
    let reason = seen
        .runtime()
        .and_then(|rt| rt.stop_reason.clone())
        .unwrap_or_else(|| "stopped unexpectedly".into());
    let event = crash_event(
        svc.restarts,
        svc.relocates,
        res.max_restart,
        res.max_relocate,
    );
    apply(&mut svc, event);
    match event {
        Event::CrashRestart => {
            svc.restarts += 1;
            svc.reason = Some(format!(
                "crashed on node {} ({reason}); restart {} of {}",
                vm.node, svc.restarts, res.max_restart
            ));
            save(app, &svc).await?;
            let node = vm.node.clone();
            moves::spawn_start(app, round, vm, svc, node, "hastart").await
        }
        Event::CrashRelocate => {
            svc.relocates += 1;
            let mut need = round.need(&svc.sid, vm);
            need.exclude.insert(vm.node.clone());
            match placement::choose(&round.candidates, &need) {
                Ok(target) => {
                    svc.reason = Some(format!(
                        "crashed on node {} {} time(s) ({reason}); relocating to {target} (relocation {} of {})",
                        vm.node,
                        svc.restarts + 1,
                        svc.relocates,
                        res.max_relocate
                    ));
                    svc.target = Some(target.clone());
                    round.reserve(&svc.sid, &target, vm);
                    save(app, &svc).await?;
                    moves::relocate(
                        app,
                        vm,
                        svc,
                        target,
                        "harelocate",
                        "after crashes",
                        MoveHow::Restart,
                    )
                    .await
                }
                Err(why) => {
                    apply(&mut svc, Event::MoveGaveUp);
                    svc.reason = Some(format!(
                        "crashed on node {} ({reason}) and cannot be relocated: {why}",
                        vm.node
                    ));
                    save(app, &svc).await
                }
            }
        }
        _ => {
            svc.reason = Some(format!(
                "crashed on node {} ({reason}) after {} restart(s) and {} relocation(s); set the resource to disabled, fix the cause, then start it",
                vm.node, svc.restarts, svc.relocates
            ));
            save(app, &svc).await?;
            tracing::error!(sid = %svc.sid, "{}", svc.reason.as_deref().unwrap_or(""));
            Ok(())
        }
    }
}

/// Move a running resource off a node in maintenance, to a node of higher priority
/// (failback), or off a node a strict rule no longer allows.
async fn failback(
    app: &AppState,
    round: &mut Round,
    res: &HaResourceRecord,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    if round.maintenance.contains(&vm.node) {
        return drain(app, round, vm, svc).await;
    }
    let Some(rule) = round.rules.node_affinity(&svc.sid) else {
        return Ok(());
    };
    let here = placement::priority(Some(rule), &vm.node);
    if !res.failback && here.is_some() {
        return Ok(());
    }
    let mut need = round.need(&svc.sid, vm);
    need.exclude.insert(vm.node.clone());
    let Ok(best) = placement::choose(&round.candidates, &need) else {
        return Ok(());
    };
    if placement::priority(Some(rule), &best) <= here {
        return Ok(());
    }
    if !apply(&mut svc, Event::RelocateRequested) {
        return Ok(());
    }
    svc.target = Some(best.clone());
    svc.reason = Some(format!(
        "node {best} has a higher priority than {} in rule {}: moving back",
        vm.node, rule.rule
    ));
    round.reserve(&svc.sid, &best, vm);
    save(app, &svc).await?;
    moves::relocate(
        app,
        vm,
        svc,
        best,
        "harelocate",
        "failback",
        MoveHow::Live { fallback: true },
    )
    .await
}

/// Move a resource off its node in maintenance (live-migrated when it runs and can; else by stop and start;
/// migration yet).
async fn drain(
    app: &AppState,
    round: &mut Round,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
) -> Result<(), crate::db::DbError> {
    let need = round.need(&svc.sid, vm);
    match placement::choose(&round.candidates, &need) {
        Ok(target) => {
            if !apply(&mut svc, Event::RelocateRequested) {
                return Ok(());
            }
            svc.target = Some(target.clone());
            svc.reason = Some(format!(
                "node {} is in maintenance: moving to {target}",
                vm.node
            ));
            round.reserve(&svc.sid, &target, vm);
            save(app, &svc).await?;
            moves::relocate(
                app,
                vm,
                svc,
                target,
                "harelocate",
                "maintenance",
                MoveHow::Live { fallback: true },
            )
            .await
        }
        Err(why) => {
            let reason = format!(
                "node {} is in maintenance, but the VM cannot leave it: {why}",
                vm.node
            );
            if svc.reason.as_deref() != Some(reason.as_str()) {
                tracing::warn!(sid = %svc.sid, "{reason}");
                svc.reason = Some(reason);
                save(app, &svc).await?;
            }
            Ok(())
        }
    }
}

/// Start on the VM's own node if it may run there, else wherever placement says.
async fn start_here_or_place(
    app: &AppState,
    round: &mut Round,
    vm: &VmRecord,
    mut svc: HaServiceRecord,
    kind: &'static str,
) -> Result<(), crate::db::DbError> {
    if app.ha.backing_off(&svc.sid) {
        return Ok(());
    }
    let need = round.need(&svc.sid, vm);
    let here_ok = round.candidates.iter().any(|c| c.node == vm.node)
        && placement::choose(
            &round
                .candidates
                .iter()
                .filter(|c| c.node == vm.node)
                .cloned()
                .collect::<Vec<_>>(),
            &need,
        )
        .is_ok();
    let target = if here_ok {
        Ok(vm.node.clone())
    } else {
        placement::choose(&round.candidates, &need)
    };
    match target {
        Ok(node) => moves::spawn_start(app, round, vm, svc, node, kind).await,
        Err(why) => {
            let reason = format!("cannot start: {why}");
            if svc.reason.as_deref() != Some(reason.as_str()) {
                tracing::warn!(sid = %svc.sid, "{reason}");
                svc.reason = Some(reason);
                save(app, &svc).await?;
            }
            app.ha.back_off(&svc.sid);
            Ok(())
        }
    }
}
