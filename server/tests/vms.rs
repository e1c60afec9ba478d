//! Integration tests of the VM lifecycle: a real server, a real node agent, real `kiln-vmm`
//! processes on the real `/dev/kvm`, running the Kiln test guest.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::time::Duration;

use harness::{Cluster, ServerOptions};

const LONG: Duration = Duration::from_secs(20);

async fn cluster_with_node(opts: ServerOptions) -> (Cluster, harness::Api) {
    let c = Cluster::start(opts).await;
    c.add_node("n1").await;
    let api = c.login().await;
    api.wait_for_nodes_online(&["n1"], LONG).await;
    (c, api)
}

#[tokio::test]
async fn a_vm_is_created_started_paused_stopped_and_removed_through_the_api() {
    let (_c, api) = cluster_with_node(ServerOptions::default()).await;
    let next = api.get("/api2/json/cluster/nextid").await.1;
    assert_eq!(next["data"], "100");
    let images = api.get("/api2/json/nodes/n1/images").await.1;
    assert!(images.to_string().contains("kiln-test-guest"), "{images}");

    api.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "name": "t1", "memory": 64}"#,
    )
    .await;
    api.wait_vm("n1", 100, "stopped", LONG).await;
    let config = api.get("/api2/json/nodes/n1/qemu/100/config").await.1;
    assert_eq!(config["data"]["memory"], 64);
    assert_eq!(config["data"]["image"], "kiln-test-guest");

    api.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/start", "{}")
        .await;
    let running = api.wait_vm("n1", 100, "running", LONG).await;
    assert!(running["pid"].as_u64().unwrap() > 1, "{running}");
    assert_eq!(running["maxmem"], 64 * 1024 * 1024);
    let resources = api.get("/api2/json/cluster/resources?type=vm").await.1;
    let vm = &resources["data"][0];
    assert_eq!(
        (vm["id"].as_str(), vm["status"].as_str()),
        (Some("qemu/100"), Some("running")),
        "{vm}"
    );

    let (code, body) = api
        .post("/api2/json/nodes/n1/qemu/100/status/start", "{}")
        .await;
    assert_eq!(code, 409, "double start: {body}");
    let (code, body) = api.delete("/api2/json/nodes/n1/qemu/100").await;
    assert_eq!(code, 409, "delete while running: {body}");
    assert!(body["message"].as_str().unwrap().contains("stop it first"));

    api.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/suspend", "{}")
        .await;
    api.wait_vm("n1", 100, "paused", LONG).await;
    api.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/resume", "{}")
        .await;
    api.wait_vm("n1", 100, "running", LONG).await;
    api.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu/100/status/shutdown",
        r#"{"timeout": 20}"#,
    )
    .await;
    let stopped = api.wait_vm("n1", 100, "stopped", LONG).await;
    assert_eq!(stopped["status"], "stopped");

    let (code, body) = api.delete("/api2/json/nodes/n1/qemu/100").await;
    assert_eq!(code, 200, "{body}");
    let exit = api
        .wait_task("n1", body["data"].as_str().unwrap(), LONG)
        .await;
    assert_eq!(exit, "OK");
    assert_eq!(api.get("/api2/json/nodes/n1/qemu/100/config").await.0, 404);
}

#[tokio::test]
async fn a_start_beyond_the_nodes_memory_is_refused_with_how_much_is_missing() {
    // 1% of the host's RAM is assignable: one small VM fits, a second does not.
    let (_c, api) = cluster_with_node(ServerOptions {
        memory_overcommit: 0.01,
        ..Default::default()
    })
    .await;
    let total = api.get("/api2/json/nodes/n1/status").await.1["data"]["memory"]["total"]
        .as_u64()
        .unwrap();
    let cap_mib = total / 100 / (1024 * 1024);
    let first = (cap_mib * 3 / 4).max(16);
    let second = cap_mib - first + 16;
    for (vmid, mem) in [(100, first), (101, second)] {
        let body = format!(r#"{{"vmid": {vmid}, "memory": {mem}}}"#);
        api.task_ok("n1", "/api2/json/nodes/n1/qemu", &body).await;
    }
    api.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/start", "{}")
        .await;
    api.wait_vm("n1", 100, "running", LONG).await;
    let (code, body) = api
        .post("/api2/json/nodes/n1/qemu/101/status/start", "{}")
        .await;
    assert_eq!(code, 409, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("not enough memory on node n1") && msg.contains("short by"),
        "{msg}"
    );
    api.wait_vm("n1", 101, "stopped", LONG).await;
    api.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/stop", "{}")
        .await;
}

#[tokio::test]
async fn a_killed_vmm_is_marked_stopped_with_the_reason_in_a_task() {
    let (_c, api) = cluster_with_node(ServerOptions::default()).await;
    api.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "memory": 32, "start": 1}"#,
    )
    .await;
    let running = api.wait_vm("n1", 100, "running", LONG).await;
    let pid = running["pid"].as_u64().unwrap() as i32;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let stopped = api.wait_vm("n1", 100, "stopped", LONG).await;
    assert!(
        stopped["stop_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("signal 9"),
        "{stopped}"
    );
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let tasks = api
            .get("/api2/json/nodes/n1/tasks?typefilter=vmcrash")
            .await
            .1;
        if let Some(t) = tasks["data"].as_array().unwrap().first() {
            let exit = t["exitstatus"].as_str().unwrap_or_default();
            assert!(
                exit.contains("stopped unexpectedly") && exit.contains("signal 9"),
                "{t}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no vmcrash task");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn vm_requests_with_bad_input_get_clear_errors_and_change_nothing() {
    let (_c, api) = cluster_with_node(ServerOptions::default()).await;
    let cases: [(&str, u16, &str); 6] = [
        (r#"{"vmid": 5}"#, 400, "vmid"),
        (r#"{"vmid": 100, "name": "bad name"}"#, 400, "name"),
        (r#"{"vmid": 100, "cores": 100000}"#, 400, "cores"),
        (r#"{"vmid": 100, "memory": 1}"#, 400, "memory"),
        (r#"{"vmid": 100, "image": "nope"}"#, 400, "image"),
        (r#"{"vmid": 100, "bogus": 1}"#, 400, "bogus"),
    ];
    for (body, code, field) in cases {
        let (got, answer) = api.post("/api2/json/nodes/n1/qemu", body).await;
        assert_eq!(got, code, "{body}: {answer}");
        assert!(answer["errors"][field].is_string(), "{body}: {answer}");
    }
    assert_eq!(
        api.get("/api2/json/nodes/n1/qemu").await.1["data"],
        serde_json::json!([])
    );
    api.task_ok("n1", "/api2/json/nodes/n1/qemu", r#"{"vmid": 100}"#)
        .await;
    let (code, _) = api
        .post("/api2/json/nodes/n1/qemu", r#"{"vmid": 100}"#)
        .await;
    assert_eq!(code, 409, "duplicate id");
    let (code, body) = api.get("/api2/json/cluster/nextid?vmid=100").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        api.post("/api2/json/nodes/n1/qemu/100/status/explode", "{}")
            .await
            .0,
        404
    );
    assert_eq!(
        api.post("/api2/json/nodes/n1/qemu/999/status/start", "{}")
            .await
            .0,
        404
    );
    assert_eq!(
        api.post("/api2/json/nodes/n1/qemu/abc/status/start", "{}")
            .await
            .0,
        400
    );
    let (code, body) = api
        .post("/api2/json/nodes/n1/qemu/100/status/stop", "{}")
        .await;
    assert_eq!(code, 409, "stop of a stopped VM: {body}");
    let (code, body) = api
        .post(
            "/api2/json/nodes/n1/qemu/100/status/start",
            r#"{"timeout": 5}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
}

/// The `startall` tasks of node `node`.
async fn startall_tasks(api: &harness::Api, node: &str) -> Vec<serde_json::Value> {
    let tasks = api
        .get(&format!("/api2/json/nodes/{node}/tasks?limit=100"))
        .await
        .1;
    tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "startall")
        .cloned()
        .collect()
}

#[tokio::test]
async fn on_boot_vms_start_when_their_host_boots_and_only_then() {
    let (c, api) = cluster_with_node(ServerOptions::default()).await;
    for (vmid, onboot) in [(100, 1), (101, 0)] {
        api.task_ok(
            "n1",
            "/api2/json/nodes/n1/qemu",
            &format!(r#"{{"vmid": {vmid}, "name": "b{vmid}", "memory": 64, "onboot": {onboot}}}"#),
        )
        .await;
    }
    // Joining a node or restarting its agent is not a host boot.
    c.kill_node("n1");
    c.restart_node("n1");
    api.wait_for_nodes_online(&["n1"], LONG).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.wait_vm("n1", 100, "stopped", LONG).await;
    assert!(startall_tasks(&api, "n1").await.is_empty());

    c.new_boot_id("n1", "n1-boot-2");
    api.wait_vm("n1", 100, "running", LONG).await;
    api.wait_vm("n1", 101, "stopped", LONG).await;
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let tasks = startall_tasks(&api, "n1").await;
        if tasks.first().is_some_and(|t| t["exitstatus"] == "OK") {
            assert_eq!(tasks.len(), 1, "{tasks:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tasks:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
