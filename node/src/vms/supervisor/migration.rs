//! Live migration between node agents (spec section 2 "Transport", 3 "Ownership").
//!
//! Target: [`Supervisor::receive_incoming`] starts `kiln-vmm --migrate-receive <host>:0`
//! with this node's certificate and a one-time token, and answers the port it listens on and
//! the token. The source's kiln-vmm connects there itself over mutual TLS (the cluster CA);
//! no agent relays the stream. The VM shows as paused until kiln-vmm runs it after the
//! commit; if the migration ends without a commit the VM is forgotten here (it never stopped
//! belonging to the source).
//!
//! Source: [`Supervisor::migrate_send`] asks the target agent through [`NodeClient`] (this
//! node's own certificate) to receive, tells kiln-vmm `migrate_send` to the target's port with
//! the token and this node's certificate files, and waits for the end — or, with
//! `await_commit`, until the target has the whole VM, when the handover
//! ([`super::handover`]) takes over. After a completed migration the VM is stopped here with
//! the reason `migrated to <target>`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use kiln_node_client::wire::{
    MigrateReceiveAnswer, MigrateSendRequest, MigrationPhase, MigrationStatus, VmPowerState, VmSpec,
};
use kiln_node_client::{ClusterIdentity, NodeClient, NodeClientError, NodeName};
use kiln_vmm::protocol::MigrateTls;
use tokio::sync::watch;

use super::{
    control, control_error, power_of, process, wait_ready, watch_child, write_json, Live,
    Migrating, Run, Slot, Supervisor, Usage, CONTROL_TIMEOUT, STOP_TIMEOUT,
};
use crate::vms::process::{ProcessId, VmDir};
use crate::vms::spec::check_spec;
use crate::vms::VmError;

/// How long one `migrate_status {wait: true}` may block (kiln-vmm answers within an hour).
const MIGRATION_WAIT: Duration = Duration::from_secs(3700);

impl Supervisor {
    /// Target side: starts an incoming kiln-vmm for `spec`, listening for the source's
    /// kiln-vmm over mutual TLS; answers its port and the one-time token the source must
    /// present. Refuses, before starting anything, a bad spec (400), a VM id that exists here
    /// (409) and a VM bigger than `mem_available` bytes (503).
    pub async fn receive_incoming(
        &self,
        vmid: u32,
        spec: VmSpec,
        mem_available: u64,
    ) -> Result<MigrateReceiveAnswer, VmError> {
        check_spec(&spec, vmid, self.inner.config.host).map_err(VmError::BadSpec)?;
        let _guard = self.lock_vm(vmid).await;
        if self.table().contains_key(&vmid) {
            return Err(VmError::WrongState(format!(
                "VM {vmid} already exists on node {}; delete it there before migrating it there",
                self.node()
            )));
        }
        let needed = u64::from(spec.memory_mib) * 1024 * 1024;
        if needed > mem_available {
            return Err(VmError::Unavailable(format!(
                "node {} has {} MiB of memory available, VM {vmid} needs {} MiB",
                self.node(),
                mem_available / (1024 * 1024),
                spec.memory_mib
            )));
        }
        let config = &self.inner.config;
        let dir = VmDir {
            path: config.vms_dir.join(vmid.to_string()),
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        {
            let (dir, spec, token) = (dir.clone(), spec.clone(), token.clone());
            tokio::task::spawn_blocking(move || prepare_incoming(&dir, &spec, &token))
                .await
                .unwrap_or_else(|e| {
                    Err(VmError::io(
                        "prepare",
                        Path::new("vms"),
                        std::io::Error::other(e),
                    ))
                })?;
        }
        self.table().insert(
            vmid,
            Slot {
                spec: spec.clone(),
                dir: dir.clone(),
                run: Run::Starting,
                usage: Usage::default(),
                changed: watch::channel(0).0,
            },
        );
        let spawned = {
            let (bin, dir, spec, cgroups, net) = (
                config.vmm_bin.clone(),
                dir.clone(),
                spec.clone(),
                config.cgroups.clone(),
                config.migration.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let cgroup = super::vm_cgroup(cgroups.as_ref(), spec.vmid);
                process::spawn_receive(&bin, &dir, &spec, &net, cgroup)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                self.forget(vmid).await;
                return Err(VmError::StartFailed {
                    vmid,
                    detail: format!(
                        "cannot run kiln-vmm ({}): {e}; install it or pass --vmm-bin / KILN_VMM_BIN",
                        config.vmm_bin.display()
                    ),
                });
            }
        };
        let ready = wait_ready(&mut child, &dir).await;
        // kiln-vmm read the token at its start; it need not stay on disk.
        let _ = tokio::fs::remove_file(dir.migrate_token()).await;
        let (status, port) = match ready.and_then(|status| {
            let port = listen_port(status.migration_listen.as_deref())?;
            Ok((status, port))
        }) {
            Ok(ready) => ready,
            Err(detail) => {
                let _ = child.start_kill();
                self.forget(vmid).await;
                return Err(VmError::StartFailed { vmid, detail });
            }
        };
        let process = child.id().and_then(ProcessId::of).unwrap_or(ProcessId {
            pid: status.pid,
            start_ticks: 0,
        });
        tracing::info!(
            "VM {vmid} ({}): incoming migration, kiln-vmm pid {}",
            spec.name,
            process.pid
        );
        self.update(vmid, |slot| {
            slot.run = Run::Running(Live {
                process,
                power: VmPowerState::Paused,
                requested: None,
                migration: Some(Migrating::Incoming),
                handover: None,
            });
        });
        tokio::spawn(watch_child(self.clone(), vmid, child, process));
        let this = self.clone();
        let socket = dir.socket();
        tokio::spawn(async move {
            // Once the stream has ended (committed, or given up), show the VM's state at once.
            let _ = wait_settled(vmid, &socket, true).await;
            this.incoming_ended(vmid).await;
        });
        Ok(MigrateReceiveAnswer { port, token })
    }

    /// Target side, once the migration stream has ended: reads the VM's state at once (rather
    /// than at the next stats sample), so a committed VM shows as running.
    pub async fn incoming_ended(&self, vmid: u32) {
        let Some(socket) = self.table().get(&vmid).map(|slot| slot.dir.socket()) else {
            return;
        };
        let Ok(status) = control::request(&socket, CONTROL_TIMEOUT, |c| c.status()).await else {
            return;
        };
        self.update(vmid, |slot| {
            if let Run::Running(live) = &mut slot.run {
                if status.state != kiln_vmm::protocol::VmState::Stopped {
                    live.power = power_of(status.state);
                }
                if live.power == VmPowerState::Running {
                    live.migration = None;
                }
            }
        });
    }

    /// Source side: live-migrates running VM `vmid` to `request.target_node`, connecting
    /// with `identity` (this node's certificate); answers kiln-vmm's final status once the
    /// migration completed. A failed or cancelled migration is an error; the VM keeps running
    /// here then.
    pub async fn migrate_send(
        &self,
        vmid: u32,
        request: MigrateSendRequest,
        identity: &ClusterIdentity,
    ) -> Result<MigrationStatus, VmError> {
        let target: NodeName = request.target_node.parse().map_err(|e| {
            VmError::BadSpec(format!(
                "target node {:?} is not a node name: {e}",
                request.target_node
            ))
        })?;
        if &target == self.node() {
            return Err(VmError::BadSpec(format!(
                "VM {vmid} already runs on node {target}; name another node as the target"
            )));
        }
        let client = NodeClient::new(
            identity,
            target.clone(),
            &request.target_api_url,
            CONTROL_TIMEOUT,
        )
        .map_err(|e| VmError::BadSpec(e.to_string()))?;
        let guard = self.lock_vm(vmid).await;
        let (spec, dir) = {
            let table = self.table();
            let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
            match &slot.run {
                Run::Running(live) if live.migration.is_some() => {
                    return Err(VmError::WrongState(format!(
                        "VM {vmid} is already being live-migrated"
                    )))
                }
                Run::Running(live) if live.power == VmPowerState::Running => {}
                Run::Running(_) => {
                    return Err(VmError::WrongState(format!(
                        "VM {vmid} is paused; resume it before live-migrating it"
                    )))
                }
                _ => {
                    return Err(VmError::WrongState(format!(
                        "VM {vmid} is not running; only a running VM can be live-migrated"
                    )))
                }
            }
            (slot.spec.clone(), slot.dir.clone())
        };
        let answer = client
            .migrate_receive(&spec)
            .await
            .map_err(|e| target_refused(vmid, &target, e))?;
        let to = host_port(client.host(), answer.port);
        let tls = MigrateTls {
            server_name: target.to_string(),
            token: answer.token,
            identity: self.inner.config.migration.tls.clone(),
        };
        self.set_migration(vmid, Some(Migrating::Outgoing(target.clone())));
        let outgoing = Outgoing {
            vmid,
            target,
            target_url: request.target_api_url.clone(),
            socket: dir.socket(),
        };

        let result = self
            .run_migration(vmid, &outgoing.socket, to, tls, &request)
            .await;
        match result {
            Ok(mut status) if status.phase == MigrationPhase::AwaitingCommit => {
                // The VM is paused here and the target has it all: the caller records the
                // new owner and commits (or cancels). The rest ends in the background,
                // still holding the VM's lock.
                status.peer = outgoing.peer();
                let this = self.clone();
                let (done, outcome) = watch::channel(None);
                self.outgoing_map().insert(vmid, outcome);
                tokio::spawn(async move {
                    // This wait is already under way when the commit comes, so the final
                    // status arrives even though kiln-vmm exits right after it.
                    let socket = outgoing.socket.clone();
                    let mut settled = wait_settled(vmid, &socket, true).await;
                    if settled.is_err() {
                        // kiln-vmm may exit before its answer is out: its exit tells.
                        settled = this.settled_by_exit(vmid, outgoing.peer(), settled).await;
                    }
                    let concluded = this.conclude(outgoing, settled).await;
                    done.send_replace(Some(concluded.map_err(|e| e.to_string())));
                    drop(guard);
                });
                Ok(status)
            }
            settled => self.conclude(outgoing, settled).await,
        }
    }

    /// Ends an outgoing migration whose kiln-vmm has `settled`: either waits for the VM to
    /// stop here (completed) or clears the migration mark (the VM keeps running here).
    async fn conclude(
        &self,
        outgoing: Outgoing,
        settled: Result<MigrationStatus, VmError>,
    ) -> Result<MigrationStatus, VmError> {
        let Outgoing {
            vmid,
            target,
            target_url,
            ..
        } = outgoing;
        let mut status = match settled {
            Ok(status) => status,
            Err(e) => {
                self.set_migration(vmid, None);
                return Err(e);
            }
        };
        // kiln-vmm only knows the target's address; the caller wants the node.
        status.peer = format!("{target} ({target_url})");
        match status.phase {
            MigrationPhase::Completed => {
                self.wait_gone(vmid, target.as_str()).await;
                tracing::info!(
                    "VM {vmid} migrated to {target}: {} rounds, downtime {} us",
                    status.rounds.len(),
                    status.downtime_us.unwrap_or(0)
                );
                Ok(status)
            }
            phase => {
                self.set_migration(vmid, None);
                let why = status.error.clone().unwrap_or_else(|| format!("{phase:?}"));
                Err(VmError::Migration {
                    status: if phase == MigrationPhase::Cancelled { 409 } else { 502 },
                    message: format!(
                        "live migration of VM {vmid} to node {target} did not complete ({why}); it keeps running on node {}",
                        self.node()
                    ),
                })
            }
        }
    }

    /// Waits (bounded) until the kiln-vmm of a VM migrated to `target` has exited here.
    pub(super) async fn wait_gone(&self, vmid: u32, target: &str) {
        let mut changed = match self.table().get(&vmid) {
            Some(slot) => slot.changed.subscribe(),
            None => return,
        };
        if !self.wait_stopped(vmid, &mut changed, STOP_TIMEOUT).await {
            tracing::warn!(
                "VM {vmid}: migrated to {target}, but its kiln-vmm here has not ended yet"
            );
        }
    }

    async fn run_migration(
        &self,
        vmid: u32,
        socket: &Path,
        to: String,
        tls: MigrateTls,
        request: &MigrateSendRequest,
    ) -> Result<MigrationStatus, VmError> {
        let send = kiln_vmm::protocol::Request::MigrateSend {
            to,
            tls: Some(tls),
            downtime_ms: request.downtime_ms,
            bwlimit_mib_s: request.bwlimit_mib_s,
            await_commit: request.await_commit,
            commit_timeout_ms: request.commit_timeout_ms,
        };
        control::request(socket, CONTROL_TIMEOUT, move |c| c.migrate_send_with(&send))
            .await
            .map_err(|e| control_error(vmid, &e))?;
        wait_settled(vmid, socket, false).await
    }

    pub(super) fn outgoing_map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, OutcomeRx>> {
        self.inner
            .outgoing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// `GET migrate`: the current or last migration of `vmid` here.
    pub async fn migrate_status(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let socket = {
            let table = self.table();
            let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
            slot.dir.socket()
        };
        let status = control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_status(false))
            .await
            .map_err(|e| control_error(vmid, &e))?;
        to_wire(&status).map_err(|detail| VmError::Control { vmid, detail })
    }

    pub(super) fn set_migration(&self, vmid: u32, migration: Option<Migrating>) {
        self.update(vmid, |slot| {
            if let Run::Running(live) = &mut slot.run {
                live.migration = migration;
            }
        });
    }

    /// Drops `vmid` from the table and deletes its directory (a VM that never ran here).
    pub(super) async fn forget(&self, vmid: u32) {
        let Some(slot) = self.table().remove(&vmid) else {
            return;
        };
        slot.changed.send_modify(|g| *g += 1);
        let path = slot.dir.path;
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
        if let Ok(Err(e)) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("VM {vmid}: cannot remove its directory: {e}");
            }
        }
    }
}

/// Lays out the directory of an incoming VM, with the migration token (mode 0600) for
/// kiln-vmm to read at its start. Blocking.
fn prepare_incoming(dir: &VmDir, spec: &VmSpec, token: &str) -> Result<(), VmError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(&dir.path).map_err(|e| VmError::io("create", &dir.path, e))?;
    write_json(&dir.spec(), spec).map_err(|e| VmError::io("write", &dir.spec(), e))?;
    let token_file = dir.migrate_token();
    let _ = std::fs::remove_file(&token_file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_file)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .map_err(|e| VmError::io("write", &token_file, e))?;
    for stale in [dir.stopped(), dir.socket()] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(VmError::io("remove", &stale, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// How an outgoing migration ended: its final status, or the error's message.
type Outcome = Option<Result<MigrationStatus, String>>;
/// Where `migrate_commit` waits for the [`Outcome`].
pub(super) type OutcomeRx = watch::Receiver<Outcome>;

/// An outgoing migration's parts that outlive the `migrate/send` call.
struct Outgoing {
    vmid: u32,
    target: NodeName,
    target_url: String,
    socket: std::path::PathBuf,
}

impl Outgoing {
    fn peer(&self) -> String {
        format!("{} ({})", self.target, self.target_url)
    }
}

/// Follows kiln-vmm's migration until it ended, or (unless `final_only`) waits for its
/// commit.
pub(super) async fn wait_settled(
    vmid: u32,
    socket: &Path,
    final_only: bool,
) -> Result<MigrationStatus, VmError> {
    loop {
        let status = control::request(socket, MIGRATION_WAIT, move |c| c.migrate_wait(final_only))
            .await
            .map_err(|e| control_error(vmid, &e))?;
        let status = to_wire(&status).map_err(|detail| VmError::Control { vmid, detail })?;
        if status.phase.is_final()
            || (!final_only && status.phase == MigrationPhase::AwaitingCommit)
        {
            return Ok(status);
        }
    }
}

/// kiln-vmm's migration status as the wire type (same JSON).
pub(super) fn to_wire(
    status: &kiln_vmm::protocol::MigrationStatus,
) -> Result<MigrationStatus, String> {
    serde_json::to_value(status)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("cannot translate kiln-vmm's migration status: {e}"))
}

/// The target agent refused (or could not be reached): keep its HTTP status where it means
/// something to the caller.
fn target_refused(vmid: u32, target: &NodeName, err: NodeClientError) -> VmError {
    let status = match &err {
        NodeClientError::Http { status, .. } if matches!(status.as_u16(), 400 | 409 | 503) => {
            status.as_u16()
        }
        _ => 502,
    };
    VmError::Migration {
        status,
        message: format!("node {target} cannot receive VM {vmid}: {err}"),
    }
}

/// The port of an incoming kiln-vmm's `host:port` listening address.
fn listen_port(listen: Option<&str>) -> Result<u16, String> {
    listen
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| {
            format!("kiln-vmm did not report a TCP port for the migration (it said {listen:?}); is it the same version as kiln-node?")
        })
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_vmm::protocol::{self as vmm, MigrationRound};

    #[test]
    fn addresses_of_the_target_kiln_vmm() {
        assert_eq!(listen_port(Some("0.0.0.0:40123")), Ok(40123));
        assert_eq!(listen_port(Some("[::]:7")), Ok(7));
        assert!(listen_port(None).is_err());
        assert!(listen_port(Some("/run/x.sock")).is_err());
        assert_eq!(host_port("10.0.0.2", 9), "10.0.0.2:9");
        assert_eq!(host_port("::1", 9), "[::1]:9");
        assert_eq!(host_port("[::1]", 9), "[::1]:9");
        assert_eq!(host_port("n2.example", 9), "n2.example:9");
    }

    #[test]
    fn the_wire_mirror_reads_kiln_vmm_migration_status() {
        let status = vmm::MigrationStatus {
            role: vmm::MigrationRole::Outgoing,
            phase: vmm::MigrationPhase::StopAndCopy,
            peer: "/run/x.sock".into(),
            downtime_budget_ms: 50,
            bwlimit_mib_s: Some(100),
            guest_memory_bytes: 1 << 27,
            rounds: vec![MigrationRound {
                round: 0,
                pages_sent: 7,
                ..MigrationRound::default()
            }],
            bytes_transferred: 9,
            throttle_percent: 20,
            elapsed_ms: 3,
            total_ms: None,
            downtime_us: Some(4),
            restore_us: None,
            error: None,
        };
        let wire = to_wire(&status).expect("same JSON");
        assert_eq!(
            wire.phase,
            kiln_node_client::wire::MigrationPhase::StopAndCopy
        );
        assert_eq!(wire.rounds[0].pages_sent, 7);
        assert_eq!(
            serde_json::to_value(&wire).expect("json"),
            serde_json::to_value(&status).expect("json")
        );
    }
}
