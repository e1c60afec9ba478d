//! High availability with real processes: a server, node agents, `kiln-vmm` on the real
//! `/dev/kvm`. Timings are short (heartbeat 300 ms, lease 3 s, margin 0.5 s, node timeout
//! 3 s) so the suite stays fast; the defaults are 1 s / 8 s / 2 s / 5 s.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Api, Cluster, ServerOptions};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// Live (not zombie) `kiln-vmm` processes of VM `vmid` under `dir`, by node name.
fn vmm_copies(dir: &Path, vmid: u32) -> Vec<(String, u32)> {
    let needle = format!("/vms/{vmid}/control.sock");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let Some(pos) = cmdline.find(&needle) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
        if state == Some('Z') || !cmdline.contains("kiln-vmm") {
            continue;
        }
        let dir_s = dir.display().to_string();
        if !cmdline.contains(&dir_s) {
            continue;
        }
        // …/<node>/vms/<vmid>/control.sock
        let before = &cmdline[..pos];
        let node = before.rsplit('/').next().unwrap_or("?").to_owned();
        out.push((node, pid));
    }
    out
}

async fn vm_resource(api: &Api, vmid: u32) -> Value {
    let list = api.get("/api2/json/cluster/resources?type=vm").await.1;
    list["data"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["vmid"] == vmid).cloned())
        .unwrap_or(Value::Null)
}

async fn service(api: &Api, sid: &str) -> Value {
    let list = api.get("/api2/json/cluster/ha/status/current").await.1;
    list["data"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["sid"] == sid).cloned())
        .unwrap_or(Value::Null)
}

/// Poll until VM `vmid` runs on `node` with a pid, HA state `started`; returns the pid.
async fn wait_running_on(api: &Api, vmid: u32, node: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let r = vm_resource(api, vmid).await;
        if r["node"] == node && r["status"] == "running" && r["hastate"] == "started" {
            let st = api
                .get(&format!(
                    "/api2/json/nodes/{node}/qemu/{vmid}/status/current"
                ))
                .await
                .1;
            if let Some(pid) = st["data"]["pid"].as_u64() {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "VM {vmid} not running on {node}: {r}; HA: {}",
            service(api, &format!("vm:{vmid}")).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster of `nodes` with VMs `vmids` (64 MiB) created on the first node.
async fn ha_cluster(nodes: &[&str], vmids: &[u32]) -> (Cluster, Api) {
    ha_cluster_with(ServerOptions::default(), nodes, vmids).await
}

async fn ha_cluster_with(opts: ServerOptions, nodes: &[&str], vmids: &[u32]) -> (Cluster, Api) {
    let c = Cluster::start(opts).await;
    for n in nodes {
        c.add_node(n).await;
    }
    let api = c.login().await;
    api.wait_for_nodes_online(nodes, LONG).await;
    for vmid in vmids {
        api.task_ok(
            nodes[0],
            &format!("/api2/json/nodes/{}/qemu", nodes[0]),
            &format!(r#"{{"vmid": {vmid}, "memory": 64}}"#),
        )
        .await;
    }
    (c, api)
}

async fn add_resource(api: &Api, sid: &str, extra: &str) {
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/resources",
            &format!(r#"{{"sid": "{sid}"{extra}}}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

async fn add_rule(api: &Api, json: &str) {
    let (code, body) = api.post("/api2/json/cluster/ha/rules", json).await;
    assert_eq!(code, 200, "{body}");
}

/// SIGKILL a node's agent and the VMs it runs (a host that died).
async fn kill_host(c: &Cluster, api: &Api, node: &str, vmids: &[u32]) {
    let mut pids = Vec::new();
    for vmid in vmids {
        let st = api
            .get(&format!(
                "/api2/json/nodes/{node}/qemu/{vmid}/status/current"
            ))
            .await
            .1;
        pids.push(st["data"]["pid"].as_u64().expect("a running VM's pid"));
    }
    c.kill_node(node);
    for pid in pids {
        Cluster::signal(pid as u32, "KILL");
    }
}

#[tokio::test]
async fn ha_recovers_a_killed_nodes_vm_on_the_highest_priority_node_exactly_once() {
    let (c, api) = ha_cluster(&["n1", "n2", "n3"], &[100]).await;
    add_resource(&api, "vm:100", "").await;
    add_rule(
        &api,
        r#"{"rule": "prefer", "type": "node-affinity", "resources": "vm:100", "nodes": "n1:3,n2:1,n3:2"}"#,
    )
    .await;
    wait_running_on(&api, 100, "n1", LONG).await;
    // Guarded by n1's lease.
    let deadline = Instant::now() + LONG;
    while service(&api, "vm:100").await["state"] != "started" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let killed = Instant::now();
    kill_host(&c, &api, "n1", &[100]).await;
    wait_running_on(&api, 100, "n3", LONG).await;
    let failover = killed.elapsed();
    // Lease 3 s + margin 0.5 s after n1's last answer: never earlier.
    assert!(
        failover >= Duration::from_millis(3000),
        "recovered before the lease surely expired: {failover:?}"
    );
    eprintln!("failover (kill → running on n3): {failover:?}");
    let copies = vmm_copies(c.dir(), 100);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, "n3", "{copies:?}");
    // A recovery task with its log.
    let tasks = api.get("/api2/json/cluster/tasks").await.1;
    assert!(
        tasks["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["type"] == "harecover" && t["exitstatus"] == "OK"),
        "{tasks}"
    );
    // Stays exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vmm_copies(c.dir(), 100).len(), 1);
}

#[tokio::test]
async fn a_frozen_agents_vm_fences_itself_before_it_starts_elsewhere_and_never_comes_back() {
    let (c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", "").await;
    let pid = wait_running_on(&api, 100, "n1", LONG).await;
    // Let the agent hand its lease to the VMM at least once.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let agent = c.node_pid("n1");
    Cluster::signal(agent, "STOP");
    let frozen = Instant::now();
    let mut fenced_at = None;
    loop {
        let copies = vmm_copies(c.dir(), 100);
        let on_n1 = copies
            .iter()
            .any(|(n, p)| n == "n1" && u64::from(*p) == pid);
        let on_n2 = copies.iter().any(|(n, _)| n == "n2");
        if !on_n1 && fenced_at.is_none() {
            fenced_at = Some(frozen.elapsed());
        }
        assert!(
            !(on_n1 && on_n2),
            "two copies at once after {:?}: {copies:?}",
            frozen.elapsed()
        );
        if on_n2 {
            break;
        }
        assert!(
            frozen.elapsed() < LONG,
            "not recovered: {}",
            service(&api, "vm:100").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_at = fenced_at.expect("the n1 copy ended first");
    let started_at = frozen.elapsed();
    eprintln!(
        "frozen agent: VMM fenced after {fenced_at:?}, VM started on n2 after {started_at:?}"
    );
    // The VMM kept running at first: it stopped on its lease, not at the freeze.
    assert!(fenced_at >= Duration::from_millis(1500), "{fenced_at:?}");
    wait_running_on(&api, 100, "n2", LONG).await;

    // Thawing the agent brings no second copy back.
    Cluster::signal(agent, "CONT");
    api.wait_for_node_state("n1", "online", LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copies = vmm_copies(c.dir(), 100);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, "n2");
    let log = std::fs::read_to_string(c.dir().join("n1/vms/100/vmm.log")).unwrap();
    assert!(log.contains("the HA lease expired"), "{log}");
}

#[tokio::test]
async fn a_node_cut_off_from_the_server_fences_its_vm_before_it_starts_elsewhere() {
    let c = Cluster::start(ServerOptions::default()).await;
    let relay = c.add_node_behind_relay("n1").await;
    c.add_node("n2").await;
    let api = c.login().await;
    api.wait_for_nodes_online(&["n1", "n2"], LONG).await;
    api.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "memory": 64}"#,
    )
    .await;
    add_resource(&api, "vm:100", "").await;
    let pid = wait_running_on(&api, 100, "n1", LONG).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    relay.cut();
    let cut = Instant::now();
    let mut fenced_at = None;
    loop {
        let copies = vmm_copies(c.dir(), 100);
        let on_n1 = copies
            .iter()
            .any(|(n, p)| n == "n1" && u64::from(*p) == pid);
        let on_n2 = copies.iter().any(|(n, _)| n == "n2");
        if !on_n1 && fenced_at.is_none() {
            fenced_at = Some(cut.elapsed());
        }
        assert!(!(on_n1 && on_n2), "two copies at once: {copies:?}");
        if on_n2 {
            break;
        }
        assert!(cut.elapsed() < LONG, "{}", service(&api, "vm:100").await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_at = fenced_at.expect("the n1 copy ended first");
    eprintln!(
        "cut-off node: VMM fenced after {fenced_at:?}, VM started on n2 after {:?}",
        cut.elapsed()
    );
    assert!(fenced_at >= Duration::from_millis(1500), "{fenced_at:?}");
    wait_running_on(&api, 100, "n2", LONG).await;

    // The network comes back: the agent, alive all along, restarts nothing.
    relay.restore();
    api.wait_for_node_state("n1", "online", LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copies = vmm_copies(c.dir(), 100);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, "n2");
    let n1 = api.get("/api2/json/cluster/ha/status/current").await.1;
    assert!(n1.to_string().contains("lrm:n1"), "{n1}");
}

#[tokio::test]
async fn a_crashing_vm_is_restarted_then_relocated_then_put_in_error() {
    let (_c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", r#", "max_restart": 1, "max_relocate": 1"#).await;
    let pid = wait_running_on(&api, 100, "n1", LONG).await;

    Cluster::signal(pid as u32, "KILL");
    let deadline = Instant::now() + LONG;
    let restarted = loop {
        let p = wait_running_on(&api, 100, "n1", LONG).await;
        if p != pid {
            break p;
        }
        assert!(Instant::now() < deadline, "not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    Cluster::signal(restarted as u32, "KILL");
    let moved = wait_running_on(&api, 100, "n2", LONG).await;

    Cluster::signal(moved as u32, "KILL");
    let deadline = Instant::now() + LONG;
    let svc = loop {
        let svc = service(&api, "vm:100").await;
        if svc["state"] == "error" {
            break svc;
        }
        assert!(Instant::now() < deadline, "not in error: {svc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = svc["reason"].as_str().unwrap();
    assert!(
        reason.contains("after 1 restart(s) and 1 relocation(s)") && reason.contains("disabled"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(vm_resource(&api, 100).await["status"], "stopped");
    let tasks = api.get("/api2/json/cluster/tasks").await.1.to_string();
    assert!(
        tasks.contains("harelocate") && tasks.contains("hastart"),
        "{tasks}"
    );
    // `started` cannot leave error; `disabled` can.
    api.put(
        "/api2/json/cluster/ha/resources/vm:100",
        r#"{"state": "disabled"}"#,
    )
    .await;
    let deadline = Instant::now() + LONG;
    while service(&api, "vm:100").await["state"] != "disabled" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn strict_affinity_with_no_allowed_node_left_keeps_the_vm_stopped_with_the_reason() {
    let (c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", "").await;
    add_rule(
        &api,
        r#"{"rule": "only-n1", "type": "node-affinity", "resources": "vm:100", "nodes": "n1", "strict": 1}"#,
    )
    .await;
    wait_running_on(&api, 100, "n1", LONG).await;
    kill_host(&c, &api, "n1", &[100]).await;
    let deadline = Instant::now() + LONG;
    let svc = loop {
        let svc = service(&api, "vm:100").await;
        if svc["state"] == "recovery"
            && svc["reason"]
                .as_str()
                .is_some_and(|r| r.contains("strict node-affinity rule only-n1"))
        {
            break svc;
        }
        assert!(Instant::now() < deadline, "{svc}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        svc["reason"]
            .as_str()
            .unwrap()
            .contains("n2: not in strict node-affinity rule only-n1"),
        "{svc}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(vmm_copies(c.dir(), 100).is_empty());
}

#[tokio::test]
async fn a_keep_apart_rule_is_respected_on_recovery() {
    let (c, api) = ha_cluster(&["n1", "n2", "n3"], &[100, 101]).await;
    // Added stopped, so nothing starts before the rules are in place.
    add_resource(&api, "vm:100", r#", "state": "stopped""#).await;
    add_resource(&api, "vm:101", r#", "state": "stopped""#).await;
    add_rule(
        &api,
        r#"{"rule": "p100", "type": "node-affinity", "resources": "vm:100", "nodes": "n1:3,n3:2,n2:1"}"#,
    )
    .await;
    add_rule(
        &api,
        r#"{"rule": "p101", "type": "node-affinity", "resources": "vm:101", "nodes": "n3", "strict": 1}"#,
    )
    .await;
    add_rule(
        &api,
        r#"{"rule": "apart", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "negative"}"#,
    )
    .await;
    for sid in ["vm:101", "vm:100"] {
        let (code, body) = api
            .put(
                &format!("/api2/json/cluster/ha/resources/{sid}"),
                r#"{"state": "started"}"#,
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    wait_running_on(&api, 100, "n1", LONG).await;
    wait_running_on(&api, 101, "n3", LONG).await;
    kill_host(&c, &api, "n1", &[100]).await;
    // n3 has the higher priority, but runs vm:101.
    wait_running_on(&api, 100, "n2", LONG).await;
    assert_eq!(vmm_copies(c.dir(), 100).len(), 1);
}

#[tokio::test]
async fn a_server_killed_mid_recovery_completes_it_after_a_restart_without_a_duplicate() {
    let (c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", "").await;
    wait_running_on(&api, 100, "n1", LONG).await;
    kill_host(&c, &api, "n1", &[100]).await;
    let deadline = Instant::now() + LONG;
    while service(&api, "vm:100").await["state"] != "fence" {
        assert!(
            Instant::now() < deadline,
            "{}",
            service(&api, "vm:100").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill_server();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.restart_server().await;
    let restarted = Instant::now();
    let api = c.login().await;
    wait_running_on(&api, 100, "n2", LONG).await;
    // The new server process cannot know what the old one granted: it waits a full lease.
    assert!(
        restarted.elapsed() >= Duration::from_millis(3000),
        "{:?}",
        restarted.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copies = vmm_copies(c.dir(), 100);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(c.server_log().contains("recover"), "server log");
}

#[tokio::test]
async fn the_ha_api_validates_its_parameters_and_refuses_conflicting_rules() {
    let (c, api) = ha_cluster(&["n1"], &[100, 101]).await;
    let (code, body) = api
        .post("/api2/json/cluster/ha/resources", r#"{"sid": "ct:100"}"#)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"]["sid"]
        .as_str()
        .unwrap()
        .contains("vm:<vmid>"));
    let (code, body) = api
        .post("/api2/json/cluster/ha/resources", r#"{"sid": "vm:999"}"#)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"]["sid"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/resources",
            r#"{"sid": "vm:100", "state": "running"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"]["state"]
        .as_str()
        .unwrap()
        .contains("started"));
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/resources",
            r#"{"sid": "vm:100", "max_restart": 99, "state": "stopped"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    add_resource(&api, "vm:100", r#", "state": "stopped""#).await;
    add_resource(&api, "101", r#", "state": "stopped""#).await;
    let (code, _) = api
        .post("/api2/json/cluster/ha/resources", r#"{"sid": "vm:100"}"#)
        .await;
    assert_eq!(code, 409);
    // Without the CSRF token a change is refused.
    let (code, _) = api
        .post_raw(
            "/api2/json/cluster/ha/resources",
            None,
            r#"{"sid": "vm:100"}"#,
        )
        .await;
    assert_eq!(code, 403);

    add_rule(
        &api,
        r#"{"rule": "a", "type": "node-affinity", "resources": "vm:100", "nodes": "n1:2"}"#,
    )
    .await;
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/rules",
            r#"{"rule": "b", "type": "node-affinity", "resources": "vm:100", "nodes": "n1"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["errors"]["rule"]
            .as_str()
            .unwrap()
            .contains("vm:100 is in node-affinity rules a and b"),
        "{body}"
    );
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/rules",
            r#"{"rule": "c", "type": "node-affinity", "resources": "vm:100", "nodes": "nx"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["errors"]["nodes"]
        .as_str()
        .unwrap()
        .contains("no node 'nx'"));
    let (code, body) = api
        .post(
            "/api2/json/cluster/ha/rules",
            r#"{"rule": "t", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "sideways"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let rules = api.get("/api2/json/cluster/ha/rules").await.1;
    assert_eq!(rules["data"].as_array().unwrap().len(), 1, "{rules}");
    let res = api.get("/api2/json/cluster/ha/resources/vm:101").await.1;
    assert_eq!(res["data"]["state"], "stopped");
    assert_eq!(res["data"]["max_restart"], 1);
    let status = api
        .get("/api2/json/cluster/ha/status/manager_status")
        .await
        .1;
    assert!(
        status["data"]["manager_status"]["node_status"]["n1"] == "online",
        "{status}"
    );
    let (code, _) = api.delete("/api2/json/cluster/ha/resources/vm:101").await;
    assert_eq!(code, 200);
    let (code, _) = api.get("/api2/json/cluster/ha/resources/vm:101").await;
    assert_eq!(code, 404);
    drop(c);
}

#[tokio::test]
async fn a_recovered_vm_fails_back_when_its_higher_priority_node_returns() {
    let (c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", r#", "state": "stopped""#).await;
    add_rule(
        &api,
        r#"{"rule": "home", "type": "node-affinity", "resources": "vm:100", "nodes": "n1:2,n2:1"}"#,
    )
    .await;
    api.put(
        "/api2/json/cluster/ha/resources/vm:100",
        r#"{"state": "started"}"#,
    )
    .await;
    wait_running_on(&api, 100, "n1", LONG).await;
    kill_host(&c, &api, "n1", &[100]).await;
    wait_running_on(&api, 100, "n2", LONG).await;

    c.restart_node("n1");
    wait_running_on(&api, 100, "n1", LONG).await;
    let copies = vmm_copies(c.dir(), 100);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, "n1");
    let tasks = api.get("/api2/json/cluster/tasks").await.1.to_string();
    assert!(tasks.contains("harelocate"), "{tasks}");
}

#[tokio::test]
async fn maintenance_drains_a_node_and_nothing_returns_until_it_ends() {
    let (c, api) = ha_cluster(&["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", r#", "state": "stopped""#).await;
    add_rule(
        &api,
        r#"{"rule": "home", "type": "node-affinity", "resources": "vm:100", "nodes": "n1:2,n2:1"}"#,
    )
    .await;
    api.put(
        "/api2/json/cluster/ha/resources/vm:100",
        r#"{"state": "started"}"#,
    )
    .await;
    wait_running_on(&api, 100, "n1", LONG).await;

    let (code, body) = api
        .post("/api2/kiln/nodes/n1/maintenance", r#"{"enable": 1}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    wait_running_on(&api, 100, "n2", LONG).await;
    let status = api
        .get("/api2/json/cluster/ha/status/manager_status")
        .await
        .1;
    assert_eq!(
        status["data"]["manager_status"]["node_status"]["n1"], "maintenance",
        "{status}"
    );
    let state = api.get("/api2/kiln/nodes/n1/maintenance").await.1;
    assert_eq!(state["data"]["enable"], 1, "{state}");
    assert!(state["data"]["since"].as_i64().is_some(), "{state}");
    let state = api.get("/api2/kiln/nodes/n2/maintenance").await.1;
    assert_eq!(state["data"]["enable"], 0, "{state}");
    // n1 has the higher priority, but stays empty while in maintenance.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vm_resource(&api, 100).await["node"], "n2");

    let (code, body) = api
        .post("/api2/kiln/nodes/n1/maintenance", r#"{"enable": 0}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    wait_running_on(&api, 100, "n1", LONG).await;
    assert_eq!(vmm_copies(c.dir(), 100).len(), 1);
    let (code, body) = api
        .post("/api2/kiln/nodes/nx/maintenance", r#"{"enable": 1}"#)
        .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = api.get("/api2/kiln/nodes/nx/maintenance").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = api
        .post("/api2/kiln/nodes/n1/maintenance", r#"{"enable": "maybe"}"#)
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        api.get("/api2/kiln/nodes/n1/maintenance").await.1["data"]["enable"],
        0
    );
}

/// Failover time with the default timings (heartbeat 1 s, lease 8 s, margin 2 s, node
/// timeout 5 s): `cargo test -p kiln-server --test ha -- --ignored --nocapture failover`.
#[tokio::test]
#[ignore = "a measurement (≈1 min): run it explicitly"]
async fn failover_time_with_default_timings() {
    let opts = ServerOptions {
        heartbeat_ms: 1000,
        ha_lease_secs: 8,
        ha_lease_margin_ms: 2000,
        node_timeout_secs: 5,
        ..ServerOptions::default()
    };
    let (c, api) = ha_cluster_with(opts, &["n1", "n2"], &[100]).await;
    add_resource(&api, "vm:100", "").await;
    let mut on = "n1";
    wait_running_on(&api, 100, on, LONG).await;
    let mut totals = Vec::new();
    for run in 0..5 {
        let other = if on == "n1" { "n2" } else { "n1" };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        kill_host(&c, &api, on, &[100]).await;
        let (mut offline, mut recovery) = (None, None);
        loop {
            let nodes = api.get("/api2/json/nodes").await.1;
            let is_offline = nodes["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == on && n["status"] == "offline");
            if is_offline && offline.is_none() {
                offline = Some(killed.elapsed());
            }
            let svc = service(&api, "vm:100").await;
            if recovery.is_none() && (svc["state"] == "recovery" || svc["node"] == other) {
                recovery = Some(killed.elapsed());
            }
            let r = vm_resource(&api, 100).await;
            if r["node"] == other && r["status"] == "running" {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "{svc}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let total = killed.elapsed();
        eprintln!(
            "run {run}: detection (node offline) {:.2} s, fencing wait until recovery {:.2} s, restart {:.2} s, total {:.2} s",
            offline.unwrap_or_default().as_secs_f64(),
            recovery.unwrap_or_default().saturating_sub(offline.unwrap_or_default()).as_secs_f64(),
            total.saturating_sub(recovery.unwrap_or_default()).as_secs_f64(),
            total.as_secs_f64()
        );
        totals.push(total);
        assert_eq!(vmm_copies(c.dir(), 100).len(), 1);
        c.restart_node(on);
        api.wait_for_node_state(on, "online", LONG).await;
        on = other;
    }
    totals.sort();
    eprintln!(
        "failover kill → running elsewhere: median {:.2} s, max {:.2} s",
        totals[2].as_secs_f64(),
        totals[4].as_secs_f64()
    );
}
