//! Table 5, HA failover: an HA VM's node dies (its agent and its `kiln-vmm` SIGKILLed at
//! once) and the clock runs until the guest's banner shows on the console of the VM's new
//! node, with the server's default timings (heartbeat 1 s, node timeout 5 s, lease 8 s,
//! margin 2 s).
//!
//! Phases, each seen by polling the API every [`POLL`]:
//! - detection: kill → the server calls the node offline, and → the resource is in `fence`;
//! - fencing wait: `fence` → `recovery` (the dead node's lease has surely expired);
//! - restart: `recovery` → the banner on the new node's console (`NodeClient::console`,
//!   retried until the VM exists there; the scroll-back replays the banner).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};

use crate::cluster::{Api, Binaries, Cluster, Scratch};
use crate::console;

/// The HA VM of the table.
pub const VMID: u32 = 3000;
/// How often the API and the console are polled.
pub const POLL: Duration = Duration::from_millis(20);
/// Give up on a run after this long.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// One failover, times from the kill.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    /// The server reports the node offline.
    pub offline: Duration,
    /// The resource is in `fence`.
    pub fence: Duration,
    /// The resource is in `recovery` (or already on the other node).
    pub recovery: Duration,
    /// The server reports the VM running on the other node.
    pub running: Duration,
    /// The banner was read on the other node's console.
    pub banner: Duration,
}

/// The HA resource's line of `status/current`.
async fn service(api: &Api) -> anyhow::Result<Value> {
    let list = api.get("/api2/json/cluster/ha/status/current").await?;
    Ok(list["data"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["sid"] == format!("vm:{VMID}")).cloned())
        .unwrap_or(Value::Null))
}

/// The VM's line of `/cluster/resources`.
async fn vm_resource(api: &Api) -> anyhow::Result<Value> {
    let list = api.get("/api2/json/cluster/resources?type=vm").await?;
    Ok(list["data"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["vmid"] == VMID).cloned())
        .unwrap_or(Value::Null))
}

async fn node_offline(api: &Api, node: &str) -> anyhow::Result<bool> {
    let nodes = api.get("/api2/json/nodes").await?;
    Ok(nodes["data"].as_array().is_some_and(|a| {
        a.iter()
            .any(|n| n["node"] == node && n["status"] == "offline")
    }))
}

/// Wait until the VM runs on `node` with HA state `started`; its `kiln-vmm` pid.
pub async fn wait_started_on(api: &Api, node: &str, within: Duration) -> anyhow::Result<u32> {
    let deadline = Instant::now() + within;
    loop {
        let r = vm_resource(api).await?;
        if r["node"] == node && r["status"] == "running" && r["hastate"] == "started" {
            let st = api
                .get(&format!(
                    "/api2/json/nodes/{node}/qemu/{VMID}/status/current"
                ))
                .await?;
            if let Some(pid) = st["data"]["pid"].as_u64() {
                return Ok(u32::try_from(pid)?);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "VM {VMID} not running on {node}: {r}; HA: {}",
            service(api).await?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kill(pid: u32) -> anyhow::Result<()> {
    let raw = rustix::process::Pid::from_raw(i32::try_from(pid)?)
        .with_context(|| format!("pid {pid}"))?;
    rustix::process::kill_process(raw, rustix::process::Signal::KILL)
        .with_context(|| format!("kill -9 {pid}"))
}

/// Kill `from` (agent and VM) and time the VM's way to `to`.
pub async fn one_run(cluster: &Cluster, api: &Api, from: &str, to: &str) -> anyhow::Result<Run> {
    let vmm_pid = wait_started_on(api, from, Duration::from_secs(60)).await?;
    let agent_pid = cluster.agent_pid(from)?;
    let target = cluster.client_of(to)?;
    let t0 = Instant::now();
    kill(agent_pid)?;
    kill(vmm_pid)?;
    let mut run = Run::default();
    let (mut offline, mut fence, mut recovery, mut running) = (None, None, None, None);
    // Status until recovery begins, then the console of the target (and the server's view).
    while recovery.is_none() {
        ensure!(
            t0.elapsed() < RUN_LIMIT,
            "no recovery of VM {VMID} within {RUN_LIMIT:?}"
        );
        if offline.is_none() && node_offline(api, from).await? {
            offline = Some(t0.elapsed());
        }
        let svc = service(api).await?;
        if fence.is_none() && svc["state"] == "fence" {
            fence = Some(t0.elapsed());
        }
        if svc["state"] == "recovery" || (svc["node"] == to && svc["state"] != "fence") {
            recovery = Some(t0.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
    let banner = loop {
        ensure!(
            t0.elapsed() < RUN_LIMIT,
            "no banner of VM {VMID} on {to} within {RUN_LIMIT:?}"
        );
        if running.is_none() {
            let r = vm_resource(api).await?;
            if r["node"] == to && r["status"] == "running" {
                running = Some(t0.elapsed());
            }
        }
        // Fails until the VM exists on the target; the scroll-back replays the banner.
        if let Ok(mut ws) = target.console(VMID).await {
            let read = console::read_banner(&mut ws, Duration::from_secs(10)).await;
            let _ = ws.close(None).await;
            if read.is_ok() {
                break t0.elapsed();
            }
        }
        tokio::time::sleep(POLL).await;
    };
    run.banner = banner;
    run.offline = offline.unwrap_or_default();
    run.fence = fence.or(recovery).unwrap_or_default();
    run.recovery = recovery.unwrap_or_default();
    run.running = match running {
        Some(r) => r,
        None => {
            wait_started_on(api, to, Duration::from_secs(30)).await?;
            t0.elapsed()
        }
    };
    Ok(run)
}

/// The whole table: `runs` failovers between `a` and `b`, alternating.
pub async fn table(
    scratch: &mut Scratch,
    bins: &Binaries,
    cluster: &mut Cluster,
    api: &Api,
    nodes: [&str; 2],
    runs: usize,
    mib: u32,
) -> anyhow::Result<Vec<Run>> {
    let [a, b] = nodes;
    let body = api
        .post(
            &format!("/api2/json/nodes/{a}/qemu"),
            json!({"vmid": VMID, "name": "bench-ha", "memory": mib, "cores": 1}),
        )
        .await?;
    let upid = body["data"].as_str().context("no UPID")?.to_owned();
    api.wait_task_on(a, &upid, POLL).await?;
    api.post(
        "/api2/json/cluster/ha/resources",
        json!({"sid": format!("vm:{VMID}"), "state": "started"}),
    )
    .await?;
    let mut out = Vec::new();
    let mut on = a;
    for i in 0..runs {
        let other = if on == a { b } else { a };
        wait_started_on(api, on, Duration::from_secs(60)).await?;
        // Let the VM's node renew its lease a few times, as a node that has run for a while.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let run = one_run(cluster, api, on, other).await?;
        println!(
            "  run {}: {on} killed → offline {:.2} s, fence {:.2} s, recovery {:.2} s, running on {other} {:.2} s, banner {:.2} s",
            i + 1,
            run.offline.as_secs_f64(),
            run.fence.as_secs_f64(),
            run.recovery.as_secs_f64(),
            run.running.as_secs_f64(),
            run.banner.as_secs_f64()
        );
        out.push(run);
        cluster.restart_agent(scratch, bins, api, on).await?;
        on = other;
    }
    // Leave the cluster without the HA VM.
    api.delete(&format!("/api2/json/cluster/ha/resources/vm:{VMID}"))
        .await?;
    let r = vm_resource(api).await?;
    if let Some(node) = r["node"].as_str() {
        let node = node.to_owned();
        api.task_on(
            &node,
            &format!("/api2/json/nodes/{node}/qemu/{VMID}/status/stop"),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while vm_resource(api).await?["status"] != "stopped" {
            ensure!(Instant::now() < deadline, "VM {VMID} did not stop");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = api
            .delete(&format!("/api2/json/nodes/{node}/qemu/{VMID}"))
            .await?;
        if let Some(upid) = body["data"].as_str() {
            api.wait_task_on(&node, upid, POLL).await?;
        }
    }
    Ok(out)
}
