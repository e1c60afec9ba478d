//! Migration through the API on a real three-node cluster: live migration with the server
//! recording the new owner, the preconditions, and the faults of the live-migration issue
//! (target agent killed mid-transfer, source agent killed at the handover, cancel, a target
//! without the memory, two migrations at once), plus the offline move of a stopped VM.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::time::{Duration, Instant};

use harness::{Api, Cluster, ServerOptions};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

async fn three_nodes() -> (Cluster, Api) {
    let c = Cluster::start(ServerOptions::default()).await;
    for n in ["n1", "n2", "n3"] {
        c.add_node(n).await;
    }
    let api = c.login().await;
    api.wait_for_nodes_online(&["n1", "n2", "n3"], LONG).await;
    (c, api)
}

async fn running_vm(api: &Api, node: &str, vmid: u32, memory: u32) {
    api.task_ok(
        node,
        &format!("/api2/json/nodes/{node}/qemu"),
        &format!(r#"{{"vmid": {vmid}, "name": "m{vmid}", "memory": {memory}}}"#),
    )
    .await;
    api.task_ok(
        node,
        &format!("/api2/json/nodes/{node}/qemu/{vmid}/status/start"),
        "{}",
    )
    .await;
    api.wait_vm(node, vmid, "running", LONG).await;
}

async fn start_migration(api: &Api, node: &str, vmid: u32, body: &str) -> String {
    let (code, res) = api
        .post(
            &format!("/api2/json/nodes/{node}/qemu/{vmid}/migrate"),
            body,
        )
        .await;
    assert_eq!(code, 200, "{res}");
    res["data"].as_str().unwrap().to_owned()
}

async fn task_log(api: &Api, node: &str, upid: &str) -> String {
    let body = api
        .get(&format!(
            "/api2/json/nodes/{node}/tasks/{upid}/log?limit=10000"
        ))
        .await
        .1;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_log_line(api: &Api, node: &str, upid: &str, needle: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let log = task_log(api, node, upid).await;
        if log.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until a running task reports some progress.
async fn wait_progress(api: &Api, node: &str, upid: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let body = api
            .get(&format!("/api2/json/nodes/{node}/tasks/{upid}/status"))
            .await
            .1;
        if body["data"]["progress"].as_f64().is_some_and(|p| p > 0.0) {
            return;
        }
        assert_eq!(body["data"]["status"], "running", "{body}");
        assert!(Instant::now() < deadline, "no progress: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The VM as `/cluster/resources` shows it.
async fn resource(api: &Api, vmid: u32) -> Value {
    let all = api.get("/api2/json/cluster/resources?type=vm").await.1;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == vmid)
        .cloned()
        .unwrap()
}

/// Which nodes run `vmid`, asked of every node through the API's node-side view
/// (`/nodes/{n}/qemu` lists only the VMs recorded there, so ask each node's status).
async fn nodes_running(c: &Cluster, vmid: u32) -> Vec<String> {
    let mut on = Vec::new();
    for n in ["n1", "n2", "n3"] {
        if c.node_reports_running(n, vmid).await {
            on.push(n.to_owned());
        }
    }
    on
}

#[tokio::test]
async fn a_running_vm_moves_live_and_the_server_records_its_new_node() {
    let (c, api) = three_nodes().await;
    running_vm(&api, "n1", 100, 128).await;
    let before = api.wait_vm("n1", 100, "running", LONG).await;

    let pre = api.get("/api2/json/nodes/n1/qemu/100/migrate").await.1;
    assert_eq!(pre["data"]["running"], true, "{pre}");
    assert_eq!(
        pre["data"]["allowed_nodes"],
        serde_json::json!(["n2", "n3"])
    );

    let upid = start_migration(&api, "n1", 100, r#"{"target": "n2"}"#).await;
    let exit = api.wait_task("n1", &upid, LONG).await;
    let log = task_log(&api, "n1", &upid).await;
    assert_eq!(exit, "OK", "{log}");
    assert!(log.contains("round 0:"), "{log}");
    assert!(log.contains("recording node n2 as its owner"), "{log}");
    assert!(log.contains("migration finished: downtime"), "{log}");

    let after = api.wait_vm("n2", 100, "running", LONG).await;
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(resource(&api, 100).await["node"], "n2");
    let (code, body) = api.get("/api2/json/nodes/n1/qemu/100/status/current").await;
    assert_eq!(code, 400, "the VM is no longer on n1: {body}");
    assert_eq!(nodes_running(&c, 100).await, vec!["n2".to_string()]);
    // It keeps running there (uptime goes on), and it can go back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(resource(&api, 100).await["status"], "running");
    let upid = start_migration(&api, "n2", 100, r#"{"target": "n1", "online": 1}"#).await;
    assert_eq!(api.wait_task("n2", &upid, LONG).await, "OK");
    api.wait_vm("n1", 100, "running", LONG).await;
    assert_eq!(nodes_running(&c, 100).await, vec!["n1".to_string()]);
}

#[tokio::test]
async fn bad_migration_requests_are_refused_before_anything_moves() {
    let (c, api) = three_nodes().await;
    running_vm(&api, "n1", 100, 64).await;
    for (body, param) in [
        (r#"{"target": ""}"#, "target"),
        (r#"{"target": "nope"}"#, "target"),
        (r#"{"target": "n1"}"#, "target"),
        (r#"{"target": "n2", "online": 0}"#, ""),
        (r#"{"target": "n2", "online": 7}"#, "online"),
        (r#"{"target": "n2", "bwlimit": 10}"#, "bwlimit"),
        (
            r#"{"target": "n2", "migration_downtime": 0}"#,
            "migration_downtime",
        ),
        (r#"{"target": "n2", "speed": 1}"#, ""),
    ] {
        let (code, res) = api.post("/api2/json/nodes/n1/qemu/100/migrate", body).await;
        assert!(code == 400 || code == 409, "{body}: {code} {res}");
        if !param.is_empty() {
            assert!(res["errors"][param].is_string(), "{body}: {res}");
        }
    }
    // A node that is down is not allowed, with the reason.
    c.kill_node("n3");
    api.wait_for_node_state("n3", "offline", LONG).await;
    let pre = api.get("/api2/json/nodes/n1/qemu/100/migrate").await.1;
    assert_eq!(pre["data"]["allowed_nodes"], serde_json::json!(["n2"]));
    let why = pre["data"]["not_allowed_nodes"]["n3"]["reason"]
        .as_str()
        .unwrap();
    assert!(why.contains("offline"), "{why}");
    let (code, res) = api
        .post(
            "/api2/json/nodes/n1/qemu/100/migrate",
            r#"{"target": "n3"}"#,
        )
        .await;
    assert_eq!(code, 400, "{res}");
    assert_eq!(resource(&api, 100).await["node"], "n1");
    assert_eq!(resource(&api, 100).await["status"], "running");
}

#[tokio::test]
async fn a_target_without_the_memory_is_refused_with_the_shortfall() {
    let (_c, api) = three_nodes().await;
    let total = api.get("/api2/json/nodes/n2/status").await.1["data"]["memory"]["total"]
        .as_u64()
        .unwrap();
    // Two VMs of 60 % of the host each: one runs on n2, the other cannot join it.
    let big = ((total * 6 / 10) >> 20) as u32;
    running_vm(&api, "n2", 200, big).await;
    running_vm(&api, "n1", 100, big).await;
    let pre = api.get("/api2/json/nodes/n1/qemu/100/migrate").await.1;
    let why = pre["data"]["not_allowed_nodes"]["n2"]["reason"]
        .as_str()
        .unwrap();
    assert!(why.contains("not enough memory on node n2"), "{why}");
    let (code, res) = api
        .post(
            "/api2/json/nodes/n1/qemu/100/migrate",
            r#"{"target": "n2"}"#,
        )
        .await;
    assert_eq!(code, 400, "{res}");
    assert!(
        res["errors"]["target"]
            .as_str()
            .unwrap()
            .contains("short by"),
        "{res}"
    );
    assert_eq!(resource(&api, 100).await["node"], "n1");
    assert_eq!(resource(&api, 100).await["status"], "running");
}

/// A migration slow enough to interrupt: 256 MiB of filled memory at 1 MiB/s.
async fn slow_migration(c: &Cluster, api: &Api) -> String {
    running_vm(api, "n1", 100, 256).await;
    c.guest_command("n1", 100, "mem fill 200 7").await;
    start_migration(api, "n1", 100, r#"{"target": "n2", "bwlimit": 1024}"#).await
}

#[tokio::test]
async fn target_agent_killed_mid_transfer_leaves_the_vm_on_the_source() {
    let (c, api) = three_nodes().await;
    let upid = slow_migration(&c, &api).await;
    wait_progress(&api, "n1", &upid).await;
    c.kill_node("n2");
    let exit = api.wait_task("n1", &upid, LONG).await;
    assert_ne!(exit, "OK");
    assert!(exit.contains("keeps running on node n1"), "{exit}");
    assert_eq!(resource(&api, 100).await["node"], "n1");
    api.wait_vm("n1", 100, "running", LONG).await;
    c.restart_node("n2");
    api.wait_for_nodes_online(&["n2"], LONG).await;
    assert_eq!(nodes_running(&c, 100).await, vec!["n1".to_string()]);
}

#[tokio::test]
async fn a_stopped_migration_task_leaves_the_vm_on_the_source() {
    let (c, api) = three_nodes().await;
    let upid = slow_migration(&c, &api).await;
    wait_progress(&api, "n1", &upid).await;
    // The same VM cannot be migrated twice at once.
    let (code, res) = api
        .post(
            "/api2/json/nodes/n1/qemu/100/migrate",
            r#"{"target": "n3"}"#,
        )
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(
        res["message"].as_str().unwrap().contains("qmigrate"),
        "{res}"
    );
    let (code, res) = api
        .delete(&format!("/api2/json/nodes/n1/tasks/{upid}"))
        .await;
    assert_eq!(code, 200, "{res}");
    let exit = api.wait_task("n1", &upid, LONG).await;
    assert!(exit.contains("cancelled"), "{exit}");
    assert_eq!(resource(&api, 100).await["node"], "n1");
    api.wait_vm("n1", 100, "running", LONG).await;
    assert_eq!(nodes_running(&c, 100).await, vec!["n1".to_string()]);
    let out = c.guest_command("n1", 100, "mem verify").await;
    assert!(out.contains("verify ok"), "{out}");
}

#[tokio::test]
async fn source_agent_killed_at_the_handover_leaves_exactly_one_copy_and_the_record_follows_it() {
    let (c, api) = three_nodes().await;
    running_vm(&api, "n1", 100, 128).await;
    let upid = start_migration(&api, "n1", 100, r#"{"target": "n2"}"#).await;
    wait_log_line(&api, "n1", &upid, "recording node n2 as its owner").await;
    c.kill_node("n1");
    let exit = api.wait_task("n1", &upid, LONG).await;
    c.restart_node("n1");
    api.wait_for_nodes_online(&["n1"], LONG).await;
    // Whichever side won (the commit got through, or the source resumed after its commit
    // timeout), exactly one node runs the VM and the record names it.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let on = nodes_running(&c, 100).await;
        let recorded = resource(&api, 100).await;
        if on.len() == 1 && recorded["node"] == on[0] && recorded["status"] == "running" {
            break;
        }
        assert!(on.len() <= 1, "two copies: {on:?}");
        assert!(
            Instant::now() < deadline,
            "task {exit}: running on {on:?}, recorded {recorded}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_stopped_vm_moves_its_configuration_and_starts_on_the_target() {
    let (_c, api) = three_nodes().await;
    api.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "name": "cold", "memory": 64}"#,
    )
    .await;
    let pre = api.get("/api2/json/nodes/n1/qemu/100/migrate").await.1;
    assert_eq!(pre["data"]["running"], false, "{pre}");
    let (code, res) = api
        .post(
            "/api2/json/nodes/n1/qemu/100/migrate",
            r#"{"target": "n3", "online": 1}"#,
        )
        .await;
    assert_eq!(code, 400, "online move of a stopped VM: {res}");
    let upid = start_migration(&api, "n1", 100, r#"{"target": "n3"}"#).await;
    assert_eq!(api.wait_task("n1", &upid, LONG).await, "OK");
    assert_eq!(resource(&api, 100).await["node"], "n3");
    api.task_ok("n3", "/api2/json/nodes/n3/qemu/100/status/start", "{}")
        .await;
    api.wait_vm("n3", 100, "running", LONG).await;
}
