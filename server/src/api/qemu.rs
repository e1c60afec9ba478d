//! `/nodes/{node}/qemu...` and `/cluster/nextid`: VM configuration and lifecycle, as Proxmox.

use axum::extract::{Path, State};
use kiln_api_types::access::NoParams;
use kiln_api_types::{
    ClusterResource, ImageEntry, VmConfig, VmConfigUpdate, VmCreateRequest, VmListEntry, VmStatus,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ok, ApiError, ApiResult};
use super::nodes::known_node;
use super::params::{Body, Query};
use crate::access::ids::check_name as check_id;
use crate::access::pools::{self, StartRefused};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::db::{NodeRecord, VmRecord};
use crate::labs;
use crate::state::AppState;
use crate::vms::{self, check_name, check_vmid, lifecycle, observe, placement, Observed};

const MIB: u64 = 1024 * 1024;
const DEFAULT_IMAGE: &str = "kiln-test-guest";

fn vm_path(vmid: u32) -> String {
    format!("/vms/{vmid}")
}

fn parse_vmid(s: &str) -> Result<u32, ApiError> {
    let vmid = s.parse::<u32>().map_err(|_| {
        ApiError::param("vmid", format!("'{s}' is not a VM id (a number from 100)"))
    })?;
    check_vmid(vmid)
}

/// The VM `vmid` on `node`, with the errors Proxmox users expect.
pub(super) async fn find_vm(app: &AppState, node: &str, vmid: &str) -> Result<VmRecord, ApiError> {
    let vmid = parse_vmid(vmid)?;
    known_node(app, node).await?;
    let vm = app
        .db
        .vm(vmid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("VM {vmid} does not exist")))?;
    if vm.node != node {
        return Err(ApiError::param(
            "node",
            format!(
                "VM {vmid} is on node {}; use /nodes/{}/qemu/{vmid}",
                vm.node, vm.node
            ),
        ));
    }
    Ok(vm)
}

fn digest(vm: &VmRecord) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{:?}\n{}\n{}",
        vm.name, vm.cores, vm.memory_mib, vm.image, vm.args, vm.description, vm.onboot
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..20])
}

pub(super) fn check_image_name(image: &str) -> Result<(), ApiError> {
    let ok = !image.is_empty()
        && image.len() <= 64
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !image.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "image",
            "an image name from the node's image store (letters, digits, '-', '_', '.')",
        ))
    }
}

/// The image must exist on the node (when the node can tell); `param` names the request
/// parameter that chose the node or the image.
pub(super) async fn check_image_on_node(
    app: &AppState,
    node: &NodeRecord,
    image: &str,
    param: &str,
) -> Result<(), ApiError> {
    let Ok(client) = app.clients.operation(node) else {
        return Ok(());
    };
    let Ok(list) = client.images().await else {
        return Ok(());
    };
    if list.iter().any(|i| i.name == image) {
        return Ok(());
    }
    let names: Vec<_> = list.iter().map(|i| i.name.as_str()).collect();
    Err(ApiError::param(
        param,
        format!(
            "node {} has no image '{image}' (it has: {})",
            node.name,
            names.join(", ")
        ),
    ))
}

/// Limits a node imposes on a VM's size, from its last heartbeat.
pub(super) fn check_size(
    app: &AppState,
    node: &str,
    cores: u32,
    memory_mib: u32,
) -> Result<(), ApiError> {
    let facts = app.nodes.get(node).facts;
    let max_cores = facts.as_ref().map_or(128, |f| f.cpus.max(1));
    if !(1..=max_cores).contains(&cores) {
        return Err(ApiError::param(
            "cores",
            format!("must be between 1 and {max_cores} (the CPUs of node {node})"),
        ));
    }
    let max_mem = facts
        .as_ref()
        .map_or(1 << 20, |f| (f.mem_total / MIB) as u32);
    if !(16..=max_mem).contains(&memory_mib) {
        return Err(ApiError::param(
            "memory",
            format!("must be between 16 and {max_mem} MiB (the memory of node {node})"),
        ));
    }
    Ok(())
}

/// The cluster resource of a VM.
pub fn vm_resource(app: &AppState, vm: &VmRecord) -> ClusterResource {
    let seen = observe(app, vm);
    let rt = seen.runtime().filter(|_| seen.is_active());
    ClusterResource {
        id: format!("qemu/{}", vm.vmid),
        kind: "qemu".into(),
        node: vm.node.clone(),
        status: seen.state_word().into(),
        cpu: rt.map(|r| r.cpu_usage),
        maxcpu: Some(vm.cores),
        mem: rt.map(|r| r.rss_bytes),
        maxmem: Some(u64::from(vm.memory_mib) * MIB),
        uptime: rt.map(|r| r.uptime_secs),
        vmid: Some(vm.vmid),
        name: Some(vm.name.clone()),
        lock: app.vm_locks.holder(vm.vmid).map(str::to_owned),
        hastate: None,
        template: vm.template.then_some(1),
    }
}

/// All VMs the caller may see, as cluster resources.
pub async fn vm_resources(
    app: &AppState,
    user: &AuthUser,
) -> Result<Vec<ClusterResource>, ApiError> {
    Ok(app
        .db
        .vms()
        .await?
        .iter()
        .filter(|vm| authorize(user, &vm_path(vm.vmid), Privilege::VmAudit).is_ok())
        .map(|vm| vm_resource(app, vm))
        .collect())
}

/// Query of `/cluster/nextid`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextIdQuery {
    /// Check this id instead of picking one.
    pub vmid: Option<u32>,
}

/// `GET /api2/json/cluster/nextid`: the next free VM id, as a string (as Proxmox).
pub async fn next_id(
    State(app): State<AppState>,
    _user: AuthUser,
    Query(q): Query<NextIdQuery>,
) -> ApiResult<String> {
    if let Some(vmid) = q.vmid {
        check_vmid(vmid)?;
        if app.db.vm(vmid).await?.is_some() {
            return Err(ApiError::param("vmid", format!("VM {vmid} already exists")));
        }
        return Ok(ok(vmid.to_string()));
    }
    Ok(ok(app.db.next_free_vmid(vms::MIN_VMID).await?.to_string()))
}

/// `GET /api2/json/nodes/{node}/qemu`.
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
) -> ApiResult<Vec<VmListEntry>> {
    known_node(&app, &node).await?;
    let mut out = Vec::new();
    for vm in app.db.vms().await?.into_iter().filter(|v| v.node == node) {
        if authorize(&user, &vm_path(vm.vmid), Privilege::VmAudit).is_err() {
            continue;
        }
        let seen = observe(&app, &vm);
        let rt = seen.runtime().filter(|_| seen.is_active());
        out.push(VmListEntry {
            vmid: vm.vmid,
            name: vm.name.clone(),
            status: if seen.is_active() {
                "running".into()
            } else {
                seen.state_word().into()
            },
            cpus: vm.cores,
            maxmem: u64::from(vm.memory_mib) * MIB,
            mem: rt.map_or(0, |r| r.rss_bytes),
            cpu: rt.map_or(0.0, |r| r.cpu_usage),
            uptime: rt.map_or(0, |r| r.uptime_secs),
            pid: rt.and_then(|r| r.pid),
            template: vm.template.then_some(1),
        });
    }
    Ok(ok(out))
}

/// `GET /api2/json/nodes/{node}/images` (Kiln extension): the node's image store.
pub async fn images(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
) -> ApiResult<Vec<ImageEntry>> {
    authorize(&user, &format!("/nodes/{node}"), Privilege::SysAudit)?;
    let rec = known_node(&app, &node).await?;
    let client = app.clients.operation(&rec).map_err(ApiError::Unavailable)?;
    let list = client
        .images()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(ok(list
        .into_iter()
        .map(|i| ImageEntry {
            name: i.name,
            size_bytes: i.size_bytes,
            kind: i.kind,
            description: i.description,
        })
        .collect()))
}

/// `POST /api2/json/nodes/{node}/qemu`: create a VM (task `qmcreate`; with `start=1` it
/// starts it too).
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
    Body(req): Body<VmCreateRequest>,
) -> ApiResult<String> {
    let vmid = check_vmid(req.vmid)?;
    // The route checked VM.Allocate on /vms/{vmid} or on /pool/{pool}.
    let pool = req.pool.as_deref().map(known_pool).transpose()?;
    let rec = known_node(&app, &node).await?;
    let name = req.name.clone().unwrap_or_else(|| format!("vm{vmid}"));
    check_name(&name)?;
    let cores = req.cores.unwrap_or(1);
    let memory = req.memory.unwrap_or(128);
    check_size(&app, &node, cores, memory)?;
    let image = req.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into());
    check_image_name(&image)?;
    if req.args.as_ref().is_some_and(|a| a.len() > 1024) {
        return Err(ApiError::param("args", "at most 1024 characters"));
    }
    if req.description.as_ref().is_some_and(|d| d.len() > 8192) {
        return Err(ApiError::param("description", "at most 8192 characters"));
    }
    let flag = |v: Option<u8>, field: &str| match v {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(ApiError::param(field, "must be 0 or 1")),
    };
    let onboot = flag(req.onboot, "onboot")?;
    let start = flag(req.start, "start")?;
    check_image_on_node(&app, &rec, &image, "image").await?;
    let vm = VmRecord {
        vmid,
        name,
        node: node.clone(),
        cores,
        memory_mib: memory,
        image,
        args: req.args.clone().filter(|a| !a.is_empty()),
        description: req.description.clone().unwrap_or_default(),
        onboot,
        desired: "stopped".into(),
        template: false,
    };
    if start {
        placement::check_capacity(&app, &node, vmid, memory)?;
    }
    let guard = app.vm_locks.lock(vmid, "qmcreate")?;
    if !pools::insert_vm(&app, &vm, pool.as_deref()).await? {
        return Err(ApiError::Conflict(format!(
            "VM {vmid} already exists; GET /api2/json/cluster/nextid gives a free id"
        )));
    }
    app.changes.notify();
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "qmcreate",
            &vmid.to_string(),
            &user.auth_id(),
            guard,
            move |log| async move {
                log.log(format!(
                    "created VM {} ({}) on node {}: {} vCPU(s), {} MiB, image {}",
                    vm.vmid, vm.name, vm.node, vm.cores, vm.memory_mib, vm.image
                ))
                .await;
                if !start {
                    return Ok(());
                }
                let _placing = task_app.placement.lock().await;
                placement::check_capacity(&task_app, &vm.node, vm.vmid, vm.memory_mib)
                    .map_err(|e| e.to_string())?;
                pools::check_vm_start(&task_app, &vm)
                    .await
                    .map_err(|e| format!("VM {} was created, but {e}", vm.vmid))?;
                let vmid = vm.vmid;
                lifecycle::start(task_app.clone(), vm, log)
                    .await
                    .map_err(|e| format!("VM {vmid} was created, but starting it failed: {e}"))
            },
        )
        .await?;
    Ok(ok(upid))
}

/// A pool named in a request: a valid id (whether it exists is checked when the VM is
/// stored, under the access lock).
pub(super) fn known_pool(pool: &str) -> Result<String, ApiError> {
    check_id("pool", pool)?;
    Ok(pool.to_owned())
}

fn start_refused(e: StartRefused) -> ApiError {
    match e {
        StartRefused::Quota(q) => q.into(),
        StartRefused::Db(d) => d.into(),
    }
}

/// `VM.Config.*` privileges per changed field, as Proxmox: CPU for cores, Memory for memory,
/// Disk for the boot image, Options for the rest.
fn check_config_privileges(
    user: &AuthUser,
    vm: &VmRecord,
    req: &VmConfigUpdate,
) -> Result<(), ApiError> {
    let path = vm_path(vm.vmid);
    let mut needed = Vec::new();
    if req.cores.is_some() {
        needed.push(Privilege::VmConfigCpu);
    }
    if req.memory.is_some() {
        needed.push(Privilege::VmConfigMemory);
    }
    if req.image.is_some() {
        needed.push(Privilege::VmConfigDisk);
    }
    if req.name.is_some() || req.args.is_some() || req.description.is_some() || req.onboot.is_some()
    {
        needed.push(Privilege::VmConfigOptions);
    }
    for p in needed {
        authorize(user, &path, p)?;
    }
    Ok(())
}

fn config_of(vm: &VmRecord) -> VmConfig {
    VmConfig {
        name: vm.name.clone(),
        cores: vm.cores,
        memory: vm.memory_mib,
        image: vm.image.clone(),
        args: vm.args.clone(),
        description: vm.description.clone(),
        onboot: u8::from(vm.onboot),
        template: vm.template.then_some(1),
        digest: digest(vm),
    }
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/config`.
pub async fn get_config(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
) -> ApiResult<VmConfig> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &vm_path(vm.vmid), Privilege::VmAudit)?;
    Ok(ok(config_of(&vm)))
}

/// `PUT` (and `POST`) `/api2/json/nodes/{node}/qemu/{vmid}/config`: change fields.
pub async fn set_config(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
    Body(req): Body<VmConfigUpdate>,
) -> ApiResult<()> {
    let mut vm = find_vm(&app, &node, &vmid).await?;
    check_config_privileges(&user, &vm, &req)?;
    let _guard = app.vm_locks.lock(vm.vmid, "qmconfig")?;
    if let Some(d) = &req.digest {
        if *d != digest(&vm) {
            return Err(ApiError::Conflict(
                "the configuration changed since you read it; reload and try again".into(),
            ));
        }
    }
    let hardware = req.cores.is_some_and(|c| c != vm.cores)
        || req.memory.is_some_and(|m| m != vm.memory_mib)
        || req.image.as_ref().is_some_and(|i| *i != vm.image);
    if hardware && observe(&app, &vm).is_active() {
        return Err(ApiError::Conflict(format!(
            "VM {} is running; stop it to change cores, memory or image",
            vm.vmid
        )));
    }
    if let Some(n) = req.name {
        check_name(&n)?;
        vm.name = n;
    }
    let (cores, memory) = (
        req.cores.unwrap_or(vm.cores),
        req.memory.unwrap_or(vm.memory_mib),
    );
    check_size(&app, &node, cores, memory)?;
    (vm.cores, vm.memory_mib) = (cores, memory);
    if let Some(i) = req.image {
        check_image_name(&i)?;
        vm.image = i;
    }
    if let Some(a) = req.args {
        if a.len() > 1024 {
            return Err(ApiError::param("args", "at most 1024 characters"));
        }
        vm.args = Some(a).filter(|a| !a.is_empty());
    }
    if let Some(d) = req.description {
        if d.len() > 8192 {
            return Err(ApiError::param("description", "at most 8192 characters"));
        }
        vm.description = d;
    }
    match req.onboot {
        None => {}
        Some(v @ (0 | 1)) => vm.onboot = v == 1,
        Some(_) => return Err(ApiError::param("onboot", "must be 0 or 1")),
    }
    app.db.update_vm(&vm).await?;
    app.changes.notify();
    Ok(ok(()))
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/status/current`.
pub async fn status(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
) -> ApiResult<VmStatus> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &vm_path(vm.vmid), Privilege::VmAudit)?;
    let seen = observe(&app, &vm);
    let active = seen.is_active();
    let rt = seen.runtime();
    let live = rt.filter(|_| active);
    Ok(ok(VmStatus {
        vmid: vm.vmid,
        name: vm.name.clone(),
        node: vm.node.clone(),
        status: if active {
            "running".into()
        } else {
            seen.state_word().into()
        },
        qmpstatus: seen.state_word().into(),
        cpus: vm.cores,
        maxmem: u64::from(vm.memory_mib) * MIB,
        mem: live.map_or(0, |r| r.rss_bytes),
        cpu: live.map_or(0.0, |r| r.cpu_usage),
        uptime: live.map_or(0, |r| r.uptime_secs),
        pid: live.and_then(|r| r.pid),
        stop_reason: rt.filter(|_| !active).and_then(|r| r.stop_reason.clone()),
    }))
}

/// Body of `status/shutdown`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShutdownParams {
    /// Seconds to wait for the guest before stopping it (default 60).
    pub timeout: Option<u32>,
    /// Proxmox's `forceStop` (Kiln always stops after the timeout).
    #[serde(rename = "forceStop")]
    pub force_stop: Option<u8>,
}

fn require(cond: bool, msg: impl FnOnce() -> String) -> Result<(), ApiError> {
    if cond {
        Ok(())
    } else {
        Err(ApiError::Conflict(msg()))
    }
}

/// `POST /api2/json/nodes/{node}/qemu/{vmid}/status/{action}`: start, stop, shutdown,
/// reboot, suspend, resume — each a task.
pub async fn action(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid, action)): Path<(String, String, String)>,
    Body(params): Body<ShutdownParams>,
) -> ApiResult<String> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &vm_path(vm.vmid), Privilege::VmPowerMgmt)?;
    let kind: &'static str = match action.as_str() {
        "start" => "qmstart",
        "stop" => "qmstop",
        "shutdown" => "qmshutdown",
        "reboot" => "qmreboot",
        "suspend" => "qmsuspend",
        "resume" => "qmresume",
        other => {
            return Err(ApiError::NotFound(format!(
                "no VM action '{other}'; use start, stop, shutdown, reboot, suspend or resume"
            )))
        }
    };
    if action != "shutdown" && (params.timeout.is_some() || params.force_stop.is_some()) {
        return Err(ApiError::param(
            "timeout",
            "only status/shutdown takes a timeout",
        ));
    }
    let timeout = params.timeout.unwrap_or(60);
    if !(1..=3600).contains(&timeout) {
        return Err(ApiError::param(
            "timeout",
            "must be between 1 and 3600 seconds",
        ));
    }
    let guard = app.vm_locks.lock(vm.vmid, kind)?;
    let seen = observe(&app, &vm);
    if seen == Observed::Unknown {
        return Err(ApiError::Unavailable(format!(
            "node {node} is offline, so the state of VM {} is unknown; start kiln-node there",
            vm.vmid
        )));
    }
    let state = seen.state_word();
    let id = vm.vmid;
    match action.as_str() {
        "start" => {
            require(!vm.template, || {
                format!("VM {id} is a template and cannot be started; clone it with POST /api2/json/nodes/{node}/qemu/{id}/clone")
            })?;
            require(!seen.is_active(), || format!("VM {id} is already {state}"))?;
            labs::check_window(&app, &user, id).await?;
            placement::check_capacity(&app, &node, id, vm.memory_mib)?;
            // Fails early; the word that counts is spoken under the placement lock below.
            pools::check_vm_start(&app, &vm)
                .await
                .map_err(start_refused)?;
        }
        "suspend" => require(state == "running", || {
            format!("VM {id} is {state}; only a running VM can be paused")
        })?,
        "resume" => {
            require(state == "paused", || {
                format!("VM {id} is {state}, not paused")
            })?;
            labs::check_window(&app, &user, id).await?;
        }
        _ => require(seen.is_active(), || format!("VM {id} is not running"))?,
    }
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            kind,
            &id.to_string(),
            &user.auth_id(),
            guard,
            move |log| async move {
                match kind {
                    "qmstart" => {
                        let _placing = task_app.placement.lock().await;
                        placement::check_capacity(&task_app, &vm.node, vm.vmid, vm.memory_mib)
                            .map_err(|e| e.to_string())?;
                        pools::check_vm_start(&task_app, &vm)
                            .await
                            .map_err(|e| e.to_string())?;
                        lifecycle::start(task_app.clone(), vm, log).await
                    }
                    "qmstop" => lifecycle::stop(task_app, vm, log).await,
                    "qmshutdown" => lifecycle::shutdown(task_app, vm, timeout, log).await,
                    "qmreboot" => lifecycle::reboot(task_app, vm, log).await,
                    "qmsuspend" => lifecycle::pause(task_app, vm, true, log).await,
                    _ => lifecycle::pause(task_app, vm, false, log).await,
                }
            },
        )
        .await?;
    Ok(ok(upid))
}

/// `DELETE /api2/json/nodes/{node}/qemu/{vmid}`: remove a stopped VM (task `qmdestroy`).
pub async fn destroy(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
    Query(_): Query<NoParams>,
) -> ApiResult<String> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &vm_path(vm.vmid), Privilege::VmAllocate)?;
    let using = app.db.labs_using_template(vm.vmid).await?;
    if !using.is_empty() {
        return Err(ApiError::Conflict(format!(
            "VM {} is the template of lab(s) {}; tear them down first",
            vm.vmid,
            using.join(", ")
        )));
    }
    let guard = app.vm_locks.lock(vm.vmid, "qmdestroy")?;
    ensure_stopped(&app, &vm, &node)?;
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "qmdestroy",
            &vm.vmid.to_string(),
            &user.auth_id(),
            guard,
            move |log| lifecycle::destroy(task_app, vm, log),
        )
        .await?;
    Ok(ok(upid))
}

/// Refuses an operation that needs `vm` stopped: 409 while it runs, 503 while its node is
/// offline (it may still run there).
pub(super) fn ensure_stopped(app: &AppState, vm: &VmRecord, node: &str) -> Result<(), ApiError> {
    match observe(app, vm) {
        Observed::Unknown => Err(ApiError::Unavailable(format!(
            "node {node} is offline, so VM {} may still run there; bring the node back first",
            vm.vmid
        ))),
        seen if seen.is_active() => Err(ApiError::Conflict(format!(
            "VM {} is running; stop it first",
            vm.vmid
        ))),
        _ => Ok(()),
    }
}
