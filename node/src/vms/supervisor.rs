//! The VM supervisor: the table of VMs this node knows, their kiln-vmm processes, and every
//! lifecycle action.
//!
//! Each VM has a monitor task: for our own children it awaits the exit status, for VMs adopted
//! after an agent restart (not our children) it polls the process. Either way the end of a
//! kiln-vmm becomes a stop reason at once ([`process::outcome`]), or a restart when the guest
//! asked for a reset. Lifecycle actions on one VM are serialised by a per-VM lock; the table
//! itself is only locked for short, non-blocking updates.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kiln_node_client::wire::{Handover, ImageInfo, VmPowerState, VmRuntime, VmSpec};
use kiln_node_client::NodeName;
use kiln_vmm::control::client::ClientError;
use kiln_vmm::protocol::{VmState, VmStats, VmStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::control;
use super::images::{BootImage, ImageStore};
use super::process::{self, Exit, Outcome, ProcessId, Requested, VmDir};
use super::reattach::{scan, Found, FoundState};
use super::spec::{check_spec, check_vmid, HostLimits};
use super::VmError;
use crate::lease::NodeLease;

mod handover;
mod migration;

/// How long kiln-vmm may take from spawn until its control socket answers.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `stop` may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Control requests that should be instant (status, pause, resume, stats).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often adopted VMs (not our children) are checked for liveness.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// How often per-VM stats are sampled.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lease renewal on a control socket may take.
const LEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// What kiln-vmm logs when an incoming migration failed before the commit.
const INCOMING_FAILED: &str = "the incoming migration failed";

/// What the supervisor needs to know.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The node's name, for messages.
    pub node: NodeName,
    /// `<data-dir>/vms`.
    pub vms_dir: PathBuf,
    /// The kiln-vmm binary.
    pub vmm_bin: PathBuf,
    /// The image store.
    pub images: ImageStore,
    /// What specs are checked against.
    pub host: HostLimits,
    /// Per-VM cgroups, where the host lets the agent create them.
    pub cgroups: Option<super::cgroup::Cgroups>,
    /// Where incoming migrations listen, with which certificate.
    pub migration: super::process::MigrationNet,
}

/// The VMs of this node. Cheap to clone (shared).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    /// The node's HA lease: HA-managed VMs start only while it is valid, and their kiln-vmm
    /// processes get its deadline.
    lease: Arc<NodeLease>,
    table: Mutex<BTreeMap<u32, Slot>>,
    /// Per-VM action locks; kept after a delete (a few bytes per id ever used).
    locks: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    /// Outcome of each outgoing migration that waited for its commit (see
    /// `migrate_commit`): set once the source's kiln-vmm has settled and exited.
    outgoing: Mutex<HashMap<u32, migration::OutcomeRx>>,
}

/// One VM.
struct Slot {
    spec: VmSpec,
    dir: VmDir,
    run: Run,
    usage: Usage,
    /// Bumped on every change of `run`, so actions can wait for a state.
    changed: watch::Sender<u64>,
}

/// Where a VM is in its life (the agent's view; the VMM's own machine is `kiln_vmm::state`).
#[derive(Debug, Clone)]
enum Run {
    /// kiln-vmm was spawned; its control socket has not answered yet.
    Starting,
    /// kiln-vmm runs.
    Running(Live),
    /// The guest asked for a reset; a new kiln-vmm is being started.
    Restarting,
    /// No kiln-vmm runs.
    Stopped {
        /// Why, for a human.
        reason: String,
        /// Whether nobody asked for it.
        crashed: bool,
    },
}

/// A running kiln-vmm.
#[derive(Debug, Clone)]
struct Live {
    process: ProcessId,
    power: VmPowerState,
    /// What the agent asked of it, so its end can be told apart from a crash.
    requested: Option<Requested>,
    /// A live migration of this VM under way, if any.
    migration: Option<Migrating>,
    /// The handover point this copy waits at, as kiln-vmm last reported it.
    handover: Option<Handover>,
}

/// Which way a VM is being live-migrated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Migrating {
    /// A `kiln-vmm --migrate-receive` waiting for (or taking) the VM; it has not run here yet.
    Incoming,
    /// Being sent to this node.
    Outgoing(NodeName),
}

/// The latest stats of a running VM.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_usage: f64,
    rss_bytes: u64,
    uptime_ms: u64,
    /// When `uptime_ms` and `cpu_ns` were read.
    sampled_at: Option<Instant>,
    cpu_ns: u64,
}

/// `stopped.json`: why a VM stopped, so an agent restart keeps the reason.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoppedRecord {
    /// Why, for a human.
    pub reason: String,
    /// Whether nobody asked for it.
    pub crashed: bool,
}

impl Supervisor {
    /// Opens the supervisor: re-attaches to every kiln-vmm still running under `vms_dir`
    /// (they outlive agent restarts), reports the others stopped, and starts the stats sampler.
    pub async fn open(config: SupervisorConfig) -> Result<Supervisor, VmError> {
        let vms_dir = config.vms_dir.clone();
        let found = tokio::task::spawn_blocking(move || scan(&vms_dir))
            .await
            .map_err(|e| VmError::io("scan", &config.vms_dir, std::io::Error::other(e)))??;
        let supervisor = Supervisor {
            inner: Arc::new(Inner {
                config,
                lease: Arc::new(NodeLease::default()),
                table: Mutex::new(BTreeMap::new()),
                locks: Mutex::new(HashMap::new()),
                outgoing: Mutex::new(HashMap::new()),
            }),
        };
        for vm in found {
            supervisor.restore(vm);
        }
        tokio::spawn(sample_stats(Arc::downgrade(&supervisor.inner)));
        Ok(supervisor)
    }

    /// Puts a VM found on disk into the table, watching it if it still runs.
    fn restore(&self, found: Found) {
        let vmid = found.spec.vmid;
        let (run, usage) = match found.state {
            FoundState::Running { process, status } => {
                tracing::info!(
                    "re-attached to VM {vmid} ({}): kiln-vmm pid {} is {:?}",
                    found.spec.name,
                    process.pid,
                    status.state
                );
                let usage = Usage {
                    uptime_ms: status.uptime_ms,
                    sampled_at: Some(Instant::now()),
                    ..Usage::default()
                };
                let live = Live {
                    process,
                    power: power_of(status.state),
                    requested: None,
                    migration: None,
                    handover: None,
                };
                tokio::spawn(watch_adopted(self.clone(), vmid, process));
                (Run::Running(live), usage)
            }
            FoundState::Stopped { reason, crashed } => {
                (Run::Stopped { reason, crashed }, Usage::default())
            }
        };
        self.table().insert(
            vmid,
            Slot {
                spec: found.spec,
                dir: found.dir,
                run,
                usage,
                changed: watch::channel(0).0,
            },
        );
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<u32, Slot>> {
        // Updates are plain assignments: a panic elsewhere cannot leave the table torn.
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node(&self) -> &NodeName {
        &self.inner.config.node
    }

    fn not_found(&self, vmid: u32) -> VmError {
        VmError::NotFound {
            vmid,
            node: self.node().clone(),
        }
    }

    /// Takes the action lock of `vmid`.
    async fn lock_vm(&self, vmid: u32) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(vmid)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Every VM, by id.
    pub fn list(&self) -> Vec<VmRuntime> {
        self.table()
            .iter()
            .map(|(vmid, slot)| runtime(*vmid, slot))
            .collect()
    }

    /// One VM.
    pub fn get(&self, vmid: u32) -> Result<VmRuntime, VmError> {
        self.table()
            .get(&vmid)
            .map(|slot| runtime(vmid, slot))
            .ok_or_else(|| self.not_found(vmid))
    }

    /// The image store's contents.
    pub async fn images(&self) -> Result<Vec<ImageInfo>, VmError> {
        let images = self.inner.config.images.clone();
        tokio::task::spawn_blocking(move || images.list())
            .await
            .map_err(|e| VmError::io("list", Path::new("images"), std::io::Error::other(e)))?
            .map_err(VmError::Image)
    }

    /// The control socket of a running VM, for its console.
    pub fn console_socket(&self, vmid: u32) -> Result<PathBuf, VmError> {
        let table = self.table();
        let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
        match &slot.run {
            Run::Running(_) => Ok(slot.dir.socket()),
            _ => Err(VmError::WrongState(format!(
                "VM {vmid} is not running; start it to use its console"
            ))),
        }
    }

    /// The node's HA lease.
    pub fn lease(&self) -> &Arc<NodeLease> {
        &self.inner.lease
    }

    /// Hands the lease deadline to every running HA-managed kiln-vmm (after a renewal). A
    /// VMM that cannot be reached keeps its old deadline and fences itself at it.
    pub async fn renew_leases(&self) {
        let Some(deadline) = self.inner.lease.deadline_monotonic_ns() else {
            return;
        };
        let sockets: Vec<(u32, PathBuf)> = self
            .table()
            .iter()
            .filter(|(_, slot)| slot.spec.ha && matches!(slot.run, Run::Running(_)))
            .map(|(vmid, slot)| (*vmid, slot.dir.socket()))
            .collect();
        for (vmid, socket) in sockets {
            if let Err(e) =
                control::request(&socket, LEASE_TIMEOUT, move |c| c.lease(Some(deadline))).await
            {
                tracing::warn!("VM {vmid}: cannot renew its HA lease: {e}");
            }
        }
    }

    /// How many running VMs are HA-managed (guarded by the lease).
    pub fn guarded_vms(&self) -> u32 {
        self.table()
            .values()
            .filter(|slot| slot.spec.ha && matches!(slot.run, Run::Running(_)))
            .count() as u32
    }

    /// The lease deadline for an HA-managed VM about to (keep) running, or why it may not.
    fn lease_for_ha(&self, vmid: u32) -> Result<u64, VmError> {
        match (
            self.inner.lease.is_valid(),
            self.inner.lease.deadline_monotonic_ns(),
        ) {
            (true, Some(deadline)) => Ok(deadline),
            _ => Err(VmError::Unavailable(format!(
                "node {} holds no valid HA lease (the cluster server has not renewed it), so it runs no HA-managed VM {vmid}; the cluster recovers HA VMs on nodes it reaches",
                self.node()
            ))),
        }
    }

    /// Marks VM `vmid` HA-managed (its kiln-vmm guards the node's lease from now on) or not.
    pub async fn set_ha(&self, vmid: u32, ha: bool) -> Result<VmRuntime, VmError> {
        let _guard = self.lock_vm(vmid).await;
        let (socket, running, dir, mut spec) = {
            let table = self.table();
            let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
            (
                slot.dir.socket(),
                matches!(slot.run, Run::Running(_)),
                slot.dir.clone(),
                slot.spec.clone(),
            )
        };
        if running {
            let deadline = if ha {
                Some(self.lease_for_ha(vmid)?)
            } else {
                None
            };
            control::request(&socket, LEASE_TIMEOUT, move |c| c.lease(deadline))
                .await
                .map_err(|e| control_error(vmid, &e))?;
        }
        spec.ha = ha;
        let written = {
            let (path, spec) = (dir.spec(), spec.clone());
            tokio::task::spawn_blocking(move || write_json(&path, &spec))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        written.map_err(|e| VmError::io("write", &dir.spec(), e))?;
        self.update(vmid, |slot| slot.spec.ha = ha);
        self.get(vmid)
    }

    /// Starts VM `vmid` with `spec`; answers once its control socket answers.
    pub async fn start(&self, vmid: u32, spec: VmSpec) -> Result<VmRuntime, VmError> {
        check_spec(&spec, vmid, self.inner.config.host).map_err(VmError::BadSpec)?;
        let _guard = self.lock_vm(vmid).await;
        self.start_locked(spec, false).await
    }

    /// Starts `spec` with the VM's action lock held. Boxed with an explicit `Send`: start →
    /// watch → restart → start is a cycle of futures whose `Send`-ness the compiler cannot
    /// infer by itself.
    fn start_locked(
        &self,
        spec: VmSpec,
        restarting: bool,
    ) -> BoxFuture<'_, Result<VmRuntime, VmError>> {
        Box::pin(self.start_locked_inner(spec, restarting))
    }

    async fn start_locked_inner(
        &self,
        spec: VmSpec,
        restarting: bool,
    ) -> Result<VmRuntime, VmError> {
        let vmid = spec.vmid;
        if let Some(slot) = self.table().get(&vmid) {
            match (&slot.run, restarting) {
                (Run::Stopped { .. }, false) | (Run::Restarting, true) => {}
                (Run::Running(live), _) if live.power == VmPowerState::Paused => {
                    return Err(VmError::WrongState(format!(
                        "VM {vmid} is already running (paused); resume it instead"
                    )))
                }
                (Run::Stopped { .. }, true) => {
                    // Stopped on request while the restart waited for the lock.
                    return Ok(runtime(vmid, slot));
                }
                _ => return Err(VmError::WrongState(format!("VM {vmid} is already running"))),
            }
        }
        let config = &self.inner.config;
        let dir = VmDir {
            path: config.vms_dir.join(vmid.to_string()),
        };
        let prepared = {
            let (images, dir2, spec) = (config.images.clone(), dir.clone(), spec.clone());
            tokio::task::spawn_blocking(move || prepare_start(&images, &dir2, &spec))
                .await
                .map_err(|e| VmError::io("prepare", &dir.path, std::io::Error::other(e)))?
        };
        let image = prepared?;
        // Checked after the slow preparation, so the deadline handed down is fresh.
        let lease_deadline = if spec.ha {
            Some(self.lease_for_ha(vmid)?)
        } else {
            None
        };

        {
            let mut table = self.table();
            let changed = table
                .remove(&vmid)
                .map_or_else(|| watch::channel(0).0, |slot| slot.changed);
            changed.send_modify(|g| *g += 1);
            table.insert(
                vmid,
                Slot {
                    spec: spec.clone(),
                    dir: dir.clone(),
                    run: Run::Starting,
                    usage: Usage::default(),
                    changed,
                },
            );
        }

        let spawned = {
            let (bin, dir, spec) = (config.vmm_bin.clone(), dir.clone(), spec.clone());
            let cgroups = config.cgroups.clone();
            tokio::task::spawn_blocking(move || {
                let cgroup = vm_cgroup(cgroups.as_ref(), spec.vmid);
                process::spawn(&bin, &dir, &spec, &image, lease_deadline, cgroup)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let detail = format!(
                    "cannot run kiln-vmm ({}): {e}; install it or pass --vmm-bin / KILN_VMM_BIN",
                    config.vmm_bin.display()
                );
                self.mark_stopped(vmid, format!("start failed: {detail}"), false)
                    .await;
                return Err(VmError::StartFailed { vmid, detail });
            }
        };
        match wait_ready(&mut child, &dir).await {
            Ok(status) => {
                let process = child.id().and_then(ProcessId::of).unwrap_or(ProcessId {
                    pid: status.pid,
                    start_ticks: 0,
                });
                tracing::info!(
                    "VM {vmid} ({}) started: kiln-vmm pid {}",
                    spec.name,
                    process.pid
                );
                let live = Live {
                    process,
                    power: power_of(status.state),
                    requested: None,
                    migration: None,
                    handover: None,
                };
                self.update(vmid, |slot| {
                    slot.run = Run::Running(live);
                    slot.usage = Usage {
                        uptime_ms: status.uptime_ms,
                        sampled_at: Some(Instant::now()),
                        ..Usage::default()
                    };
                });
                tokio::spawn(watch_child(self.clone(), vmid, child, process));
                self.get(vmid)
            }
            Err(detail) => {
                self.mark_stopped(vmid, format!("start failed: {detail}"), false)
                    .await;
                Err(VmError::StartFailed { vmid, detail })
            }
        }
    }

    /// Stops VM `vmid` at once.
    pub async fn stop(&self, vmid: u32) -> Result<VmRuntime, VmError> {
        let _guard = self.lock_vm(vmid).await;
        self.stop_locked(vmid, Requested::Stop, Duration::ZERO)
            .await
    }

    /// Asks the guest to power off; stops it after `timeout`. Answers once it has stopped.
    pub async fn shutdown(&self, vmid: u32, timeout: Duration) -> Result<VmRuntime, VmError> {
        let _guard = self.lock_vm(vmid).await;
        self.stop_locked(vmid, Requested::Shutdown, timeout).await
    }

    /// Shuts the guest down (stopping it after `timeout`) and starts it again.
    pub async fn reboot(&self, vmid: u32, timeout: Duration) -> Result<VmRuntime, VmError> {
        let _guard = self.lock_vm(vmid).await;
        self.stop_locked(vmid, Requested::Shutdown, timeout).await?;
        let spec = self
            .table()
            .get(&vmid)
            .map(|slot| slot.spec.clone())
            .ok_or_else(|| self.not_found(vmid))?;
        self.start_locked(spec, false).await
    }

    async fn stop_locked(
        &self,
        vmid: u32,
        how: Requested,
        timeout: Duration,
    ) -> Result<VmRuntime, VmError> {
        let (socket, live, mut changed) = {
            let mut table = self.table();
            let slot = table.get_mut(&vmid).ok_or_else(|| self.not_found(vmid))?;
            let live = match &mut slot.run {
                Run::Running(live) => live,
                Run::Restarting => {
                    // The restart task finds the VM stopped and leaves it so.
                    slot.run = Run::Stopped {
                        reason: "stopped by request".to_owned(),
                        crashed: false,
                    };
                    slot.changed.send_modify(|g| *g += 1);
                    return Ok(runtime(vmid, slot));
                }
                _ => return Err(VmError::WrongState(format!("VM {vmid} is not running"))),
            };
            if how == Requested::Shutdown && live.power == VmPowerState::Paused {
                return Err(VmError::WrongState(format!(
                    "VM {vmid} is paused, so its guest cannot react to the power button; resume it first, or stop it"
                )));
            }
            live.requested = Some(how);
            (slot.dir.socket(), live.clone(), slot.changed.subscribe())
        };
        let reply = match how {
            Requested::Stop => control::request(&socket, STOP_TIMEOUT, |c| c.stop()).await,
            Requested::Shutdown => {
                control::request(&socket, timeout + STOP_TIMEOUT, move |c| {
                    c.shutdown(timeout)
                })
                .await
            }
        };
        if let Err(e) = &reply {
            if let Some(message) = control::refused_for_state(e) {
                self.update(vmid, |slot| {
                    if let Run::Running(live) = &mut slot.run {
                        live.requested = None;
                    }
                });
                return Err(VmError::WrongState(format!("VM {vmid}: {message}")));
            }
            tracing::warn!(
                "VM {vmid}: {} request failed ({e}); waiting for it to end",
                {
                    match how {
                        Requested::Stop => "stop",
                        Requested::Shutdown => "shutdown",
                    }
                }
            );
        }
        if !self.wait_stopped(vmid, &mut changed, STOP_TIMEOUT).await {
            tracing::warn!(
                "VM {vmid}: kiln-vmm pid {} did not end; killing it",
                live.process.pid
            );
            self.update(vmid, |slot| {
                if let Run::Running(live) = &mut slot.run {
                    live.requested = Some(Requested::Stop);
                }
            });
            let process = live.process;
            let _ = tokio::task::spawn_blocking(move || process.kill()).await;
            if !self.wait_stopped(vmid, &mut changed, STOP_TIMEOUT).await {
                return Err(VmError::Control {
                    vmid,
                    detail: format!(
                        "kiln-vmm pid {} did not end even after SIGKILL",
                        live.process.pid
                    ),
                });
            }
        }
        self.get(vmid)
    }

    /// Waits until `vmid` is stopped (or gone); false on timeout.
    async fn wait_stopped(
        &self,
        vmid: u32,
        changed: &mut watch::Receiver<u64>,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stopped = self
                .table()
                .get(&vmid)
                .is_none_or(|slot| matches!(slot.run, Run::Stopped { .. }));
            if stopped {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return true, // the slot was replaced or removed
                Err(_) => return false,
            }
        }
    }

    /// Pauses (`pause = true`) or resumes VM `vmid`.
    pub async fn set_paused(&self, vmid: u32, pause: bool) -> Result<VmRuntime, VmError> {
        let _guard = self.lock_vm(vmid).await;
        let socket = {
            let table = self.table();
            let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
            let Run::Running(live) = &slot.run else {
                return Err(VmError::WrongState(format!("VM {vmid} is not running")));
            };
            if live.migration.is_some() {
                return Err(VmError::WrongState(format!(
                    "VM {vmid} is being live-migrated; wait for the migration to end or cancel it"
                )));
            }
            match (pause, live.power) {
                (true, VmPowerState::Paused) => {
                    return Err(VmError::WrongState(format!("VM {vmid} is already paused")))
                }
                (false, VmPowerState::Running) => {
                    return Err(VmError::WrongState(format!("VM {vmid} is not paused")))
                }
                _ => {}
            }
            slot.dir.socket()
        };
        let status = control::request(&socket, CONTROL_TIMEOUT, move |c| {
            if pause {
                c.pause()
            } else {
                c.resume()
            }
        })
        .await
        .map_err(|e| control_error(vmid, &e))?;
        self.update(vmid, |slot| {
            if let Run::Running(live) = &mut slot.run {
                live.power = power_of(status.state);
            }
        });
        self.get(vmid)
    }

    /// Forgets stopped VM `vmid`: its directory, spec and logs.
    pub async fn delete(&self, vmid: u32) -> Result<(), VmError> {
        check_vmid(vmid).map_err(VmError::BadSpec)?;
        let _guard = self.lock_vm(vmid).await;
        let dir = {
            let table = self.table();
            let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
            if !matches!(slot.run, Run::Stopped { .. }) {
                let state = runtime(vmid, slot).state;
                return Err(VmError::WrongState(format!(
                    "VM {vmid} is {state}; stop it before deleting it"
                )));
            }
            slot.dir.path.clone()
        };
        let removed = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        removed.map_err(|e| VmError::io("remove", &dir, e))?;
        self.table().remove(&vmid);
        tracing::info!("VM {vmid} deleted");
        Ok(())
    }

    /// Applies `change` to the slot of `vmid` (if any) and tells waiters.
    fn update(&self, vmid: u32, change: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.table().get_mut(&vmid) {
            change(slot);
            slot.changed.send_modify(|g| *g += 1);
        }
    }

    /// Marks `vmid` stopped and records why in `stopped.json`.
    async fn mark_stopped(&self, vmid: u32, reason: String, crashed: bool) {
        let mut dir = None;
        self.update(vmid, |slot| {
            slot.run = Run::Stopped {
                reason: reason.clone(),
                crashed,
            };
            slot.usage = Usage::default();
            dir = Some(slot.dir.clone());
        });
        if crashed {
            tracing::warn!("VM {vmid} stopped: {reason}");
        } else {
            tracing::info!("VM {vmid} stopped: {reason}");
        }
        let Some(dir) = dir else { return };
        let record = StoppedRecord { reason, crashed };
        let written = tokio::task::spawn_blocking(move || write_json(&dir.stopped(), &record))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::warn!("VM {vmid}: cannot record why it stopped: {e}");
        }
    }

    /// The kiln-vmm `process` of `vmid` has ended.
    async fn on_exit(&self, vmid: u32, process: ProcessId, exit: Exit) {
        let (requested, migration, log) = {
            let table = self.table();
            match table.get(&vmid) {
                Some(Slot {
                    run: Run::Running(live),
                    dir,
                    ..
                }) if live.process == process => {
                    (live.requested, live.migration.clone(), dir.log())
                }
                _ => return, // a later incarnation or a forgotten VM
            }
        };
        let cgroups = self.inner.config.cgroups.clone();
        let logged = tokio::task::spawn_blocking(move || {
            // Its cgroup goes with it (a restart after a guest reset makes a new one).
            if let Some(cgroups) = cgroups {
                cgroups.remove(vmid);
            }
            process::logged_stop_reason(&log)
        })
        .await
        .ok()
        .flatten();
        let failed_incoming = logged
            .as_deref()
            .is_some_and(|l| l.starts_with(INCOMING_FAILED));
        // (An incoming VM adopted after an agent restart has no migration mark, but its log
        // says what it was.)
        if failed_incoming || (migration == Some(Migrating::Incoming) && logged.is_none()) {
            // The VM never ran here: it still belongs to the source. Forget it.
            tracing::info!(
                "VM {vmid}: incoming migration ended without a commit ({}); forgetting it",
                logged.as_deref().unwrap_or("kiln-vmm ended")
            );
            self.forget(vmid).await;
            return;
        }
        match process::outcome(exit, requested, logged.as_deref()) {
            Outcome::Stopped { reason, crashed } => {
                let reason = match migration {
                    Some(Migrating::Outgoing(to)) if reason.starts_with("migrated to ") => {
                        format!("migrated to {to}")
                    }
                    _ => reason,
                };
                self.mark_stopped(vmid, reason, crashed).await
            }
            Outcome::Restart => {
                tracing::info!("VM {vmid}: the guest asked for a reset; starting it again");
                self.update(vmid, |slot| slot.run = Run::Restarting);
                let supervisor = self.clone();
                tokio::spawn(async move { supervisor.restart(vmid).await });
            }
        }
    }

    /// Starts `vmid` again after a guest reset.
    async fn restart(&self, vmid: u32) {
        let _guard = self.lock_vm(vmid).await;
        let Some(spec) = self.table().get(&vmid).map(|slot| slot.spec.clone()) else {
            return;
        };
        if let Err(e) = self.start_locked(spec, true).await {
            self.mark_stopped(
                vmid,
                format!("the guest asked for a reset, but starting it again failed: {e}"),
                true,
            )
            .await;
        }
    }

    /// Samples stats of every running VM once.
    async fn sample_once(&self) {
        let targets: Vec<(u32, PathBuf, ProcessId)> = self
            .table()
            .iter()
            .filter_map(|(vmid, slot)| match &slot.run {
                Run::Running(live) => Some((*vmid, slot.dir.socket(), live.process)),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let sampled = tokio::task::spawn_blocking(move || {
            targets
                .into_iter()
                .map(|(vmid, socket, process)| {
                    let stats = kiln_vmm::control::client::ControlClient::connect(&socket)
                        .and_then(|mut c| {
                            c.set_timeout(Some(Duration::from_millis(500)))?;
                            c.stats()
                        });
                    (vmid, process, stats, Instant::now())
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(sampled) = sampled else { return };
        for (vmid, process, stats, at) in sampled {
            let Ok(stats) = stats else { continue };
            self.apply_stats(vmid, process, &stats, at);
        }
    }

    fn apply_stats(&self, vmid: u32, process: ProcessId, stats: &VmStats, at: Instant) {
        let mut table = self.table();
        let Some(slot) = table.get_mut(&vmid) else {
            return;
        };
        let Run::Running(live) = &mut slot.run else {
            return;
        };
        if live.process != process {
            return;
        }
        if stats.state != VmState::Stopped {
            live.power = power_of(stats.state);
        }
        if live.power == VmPowerState::Running && live.migration == Some(Migrating::Incoming) {
            live.migration = None;
        }
        live.handover = stats.migration.as_deref().and_then(handover_of);
        let cpu_ns: u64 = stats.vcpus.iter().map(|v| v.cpu_time_ns).sum();
        let usage = &mut slot.usage;
        if let (Some(previous), true) = (usage.sampled_at, usage.cpu_ns > 0) {
            let wall_ns = at.duration_since(previous).as_nanos() as f64;
            let vcpus = stats.vcpus.len().max(1) as f64;
            if wall_ns > 0.0 {
                let busy = cpu_ns.saturating_sub(usage.cpu_ns) as f64;
                usage.cpu_usage = (busy / (wall_ns * vcpus)).clamp(0.0, 1.0);
            }
        }
        usage.cpu_ns = cpu_ns;
        usage.rss_bytes = stats.rss_bytes;
        usage.uptime_ms = stats.uptime_ms;
        usage.sampled_at = Some(at);
    }
}

/// VM `vmid`'s cgroup, created if need be (none if cgroups are off or it cannot be made:
/// the VM then runs without one). Blocking.
pub(super) fn vm_cgroup(
    cgroups: Option<&super::cgroup::Cgroups>,
    vmid: u32,
) -> Option<super::cgroup::VmCgroup> {
    match cgroups?.prepare(vmid) {
        Ok(cgroup) => Some(cgroup),
        Err(e) => {
            tracing::warn!("VM {vmid}: runs without its own cgroup: {e}");
            None
        }
    }
}

/// What a VM looks like on the wire.
fn runtime(vmid: u32, slot: &Slot) -> VmRuntime {
    let spec = &slot.spec;
    let (state, pid, stop_reason, crashed) = match &slot.run {
        Run::Starting | Run::Restarting => (VmPowerState::Running, None, None, false),
        Run::Running(live) => (live.power, Some(live.process.pid), None, false),
        Run::Stopped { reason, crashed } => {
            (VmPowerState::Stopped, None, Some(reason.clone()), *crashed)
        }
    };
    let running = matches!(slot.run, Run::Running(_));
    let uptime_ms = match (running, slot.usage.sampled_at) {
        (true, Some(at)) => slot.usage.uptime_ms + at.elapsed().as_millis() as u64,
        _ => 0,
    };
    VmRuntime {
        vmid,
        name: spec.name.clone(),
        state,
        pid,
        uptime_secs: uptime_ms / 1000,
        vcpus: spec.vcpus,
        cpu_usage: if running { slot.usage.cpu_usage } else { 0.0 },
        memory_bytes: u64::from(spec.memory_mib) * 1024 * 1024,
        rss_bytes: if running { slot.usage.rss_bytes } else { 0 },
        fenced: stop_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(process::FENCED_PREFIX)),
        stop_reason,
        crashed,
        ha: spec.ha,
        handover: match &slot.run {
            Run::Running(live) => live.handover,
            _ => None,
        },
    }
}

/// The handover point a copy waits at, from kiln-vmm's migration status.
fn handover_of(m: &kiln_vmm::protocol::MigrationStatus) -> Option<Handover> {
    use kiln_vmm::protocol::{MigrationPhase as P, MigrationRole as R};
    match (m.role, m.phase) {
        (R::Outgoing, P::AwaitingCommit) => Some(Handover::AwaitingHandover),
        (R::Outgoing, P::HandedOver) => Some(Handover::HandedOver),
        (R::Incoming, P::AwaitingCommit) => Some(Handover::AwaitingCommit),
        _ => None,
    }
}

fn power_of(state: VmState) -> VmPowerState {
    match state {
        VmState::Running => VmPowerState::Running,
        VmState::Paused => VmPowerState::Paused,
        VmState::Stopped => VmPowerState::Stopped,
    }
}

fn control_error(vmid: u32, err: &ClientError) -> VmError {
    match control::refused_for_state(err) {
        Some(message) => VmError::WrongState(format!("VM {vmid}: {message}")),
        None => VmError::Control {
            vmid,
            detail: error_chain(err),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Waits until the new kiln-vmm's control socket answers; on failure the child is gone and
/// the message says why (its log).
async fn wait_ready(child: &mut tokio::process::Child, dir: &VmDir) -> Result<VmStatus, String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let socket = dir.socket();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = dir.log();
                let lines = tokio::task::spawn_blocking(move || process::last_log_lines(&log, 3))
                    .await
                    .unwrap_or_default();
                return Err(format!(
                    "kiln-vmm exited ({status}) before the VM ran: {}",
                    if lines.is_empty() {
                        "no output"
                    } else {
                        &lines
                    }
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch kiln-vmm: {e}")),
        }
        if let Ok(status) = control::request(&socket, Duration::from_secs(2), |c| c.status()).await
        {
            if status.state != VmState::Stopped {
                return Ok(status);
            }
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "kiln-vmm did not answer on {} within {START_TIMEOUT:?}; it was killed",
                socket.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits the exit of our own child.
async fn watch_child(
    supervisor: Supervisor,
    vmid: u32,
    mut child: tokio::process::Child,
    process: ProcessId,
) {
    let exit = match child.wait().await {
        Ok(status) => Exit::Status(status),
        Err(e) => {
            tracing::warn!("VM {vmid}: cannot wait for kiln-vmm: {e}");
            Exit::Vanished
        }
    };
    supervisor.on_exit(vmid, process, exit).await;
}

/// Polls an adopted kiln-vmm (not our child, so no exit status) until it is gone.
async fn watch_adopted(supervisor: Supervisor, vmid: u32, process: ProcessId) {
    loop {
        tokio::time::sleep(ADOPTED_POLL).await;
        let alive = tokio::task::spawn_blocking(move || process.is_alive())
            .await
            .unwrap_or(true);
        if !alive {
            break;
        }
    }
    supervisor.on_exit(vmid, process, Exit::Vanished).await;
}

/// Samples stats every [`STATS_INTERVAL`] while the supervisor exists.
async fn sample_stats(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        Supervisor { inner }.sample_once().await;
    }
}

/// Resolves the image, checks the spec against it and lays out the VM's directory for a
/// start. Blocking.
fn prepare_start(images: &ImageStore, dir: &VmDir, spec: &VmSpec) -> Result<BootImage, VmError> {
    let image = images.resolve(&spec.image).map_err(VmError::Image)?;
    if let BootImage::Linux {
        min_memory_mib: Some(min),
        ..
    } = image
    {
        if spec.memory_mib < min {
            return Err(VmError::BadSpec(format!(
                "image {} needs at least {min} MiB of memory; VM {} has {} MiB",
                spec.image, spec.vmid, spec.memory_mib
            )));
        }
    }
    std::fs::create_dir_all(&dir.path).map_err(|e| VmError::io("create", &dir.path, e))?;
    write_json(&dir.spec(), spec).map_err(|e| VmError::io("write", &dir.spec(), e))?;
    for stale in [dir.stopped(), dir.socket()] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(VmError::io("remove", &stale, e))
            }
            _ => {}
        }
    }
    Ok(image)
}

/// Writes `value` as JSON to `path`, atomically (temporary file, then rename). Blocking.
pub(super) fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, json)?;
    std::fs::rename(&temp, path)
}
