//! Integration tests: a real `kiln-server` and real `kiln-node` processes on loopback ports
//! picked by the test, talking HTTPS and mutual TLS, driven through the Proxmox-style API.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::time::Duration;

use harness::{Cluster, ServerOptions};
use serde_json::Value;

#[tokio::test]
async fn two_nodes_join_and_are_listed_online_through_the_ticket_flow() {
    let c = Cluster::start(ServerOptions::default()).await;
    c.add_node("n1").await;
    c.add_node("n2").await;
    let api = c.login().await;
    let nodes = api
        .wait_for_nodes_online(&["n1", "n2"], Duration::from_secs(15))
        .await;
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["type"], "node");
        assert!(n["maxcpu"].as_u64().unwrap() >= 1, "{n}");
        assert!(n["maxmem"].as_u64().unwrap() > 0, "{n}");
        assert_eq!(n["ssl_fingerprint"].as_str().unwrap().len(), 95, "{n}");
    }
    let status = api.get("/api2/json/nodes/n1/status").await;
    assert_eq!(status.0, 200, "{}", status.1);
    assert!(status.1["data"]["cpuinfo"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(status.1["data"]["status"], "online");

    // The join tasks were recorded with Proxmox-style UPIDs and a log.
    let tasks = api.get("/api2/json/nodes/n1/tasks").await.1;
    let task = &tasks["data"][0];
    assert_eq!(task["type"], "nodejoin");
    assert_eq!(task["exitstatus"], "OK");
    let upid = task["upid"].as_str().unwrap();
    assert!(upid.starts_with("UPID:n1:"), "{upid}");
    let st = api
        .get(&format!("/api2/json/nodes/n1/tasks/{upid}/status"))
        .await;
    assert_eq!(st.1["data"]["status"], "stopped");
    let log = api
        .get(&format!("/api2/json/nodes/n1/tasks/{upid}/log"))
        .await
        .1;
    let lines: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap())
        .collect();
    assert_eq!(lines.last(), Some(&"TASK OK"), "{lines:?}");

    let resources = api.get("/api2/json/cluster/resources?type=node").await.1;
    assert_eq!(resources["data"].as_array().unwrap().len(), 2);
    let cs = api.get("/api2/json/cluster/status").await.1;
    assert_eq!(cs["data"][0]["type"], "cluster");
    assert_eq!(cs["data"][0]["nodes"], 2);
}

#[tokio::test]
async fn a_killed_node_goes_offline_and_comes_back_online_after_restart() {
    let c = Cluster::start(ServerOptions {
        node_timeout_secs: 2,
        ..Default::default()
    })
    .await;
    c.add_node("n1").await;
    let api = c.login().await;
    api.wait_for_nodes_online(&["n1"], Duration::from_secs(15))
        .await;
    c.kill_node("n1");
    api.wait_for_node_state("n1", "offline", Duration::from_secs(10))
        .await;
    let (code, body) = api.get("/api2/json/nodes/n1/status").await;
    assert_eq!(code, 503, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("n1 is offline"), "{msg}");
    c.restart_node("n1");
    api.wait_for_node_state("n1", "online", Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token() {
    let c = Cluster::start(ServerOptions::default()).await;
    let api = c.login().await;
    let without = api
        .post_raw("/api2/json/cluster/join-tokens", None, "{}")
        .await;
    assert_eq!(without.0, 403, "{}", without.1);
    assert!(without.1["message"].as_str().unwrap().contains("CSRF"));
    let wrong = api
        .post_raw("/api2/json/cluster/join-tokens", Some("nope"), "{}")
        .await;
    assert_eq!(wrong.0, 403);
    let right = api.post("/api2/json/cluster/join-tokens", "{}").await;
    assert_eq!(right.0, 200, "{}", right.1);
    assert!(right.1["data"]["token"]
        .as_str()
        .unwrap()
        .starts_with("kiln1."));
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_and_answered_late() {
    let c = Cluster::start(ServerOptions {
        login_failure_delay_ms: 200,
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (code, body) = c.try_login("root@kiln", "wrong").await;
    assert_eq!(code, 401, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "no fixed delay"
    );
    for _ in 0..4 {
        assert_eq!(c.try_login("root@kiln", "wrong").await.0, 401);
    }
    let (code, body) = c.try_login("root@kiln", harness::ADMIN_PASSWORD).await;
    assert_eq!(
        code, 429,
        "the right password is refused while throttled: {body}"
    );
    assert!(body["message"].as_str().unwrap().contains("try again in"));
    // Parameter errors use Proxmox's shape.
    let (code, body) = c.try_login("", "x").await;
    assert_eq!(code, 400);
    assert!(body["errors"]["username"].is_string(), "{body}");
}

#[tokio::test]
async fn an_idle_session_expires_and_logout_kills_the_ticket() {
    let c = Cluster::start(ServerOptions {
        session_idle_secs: 2,
        ..Default::default()
    })
    .await;
    let api = c.login().await;
    assert_eq!(api.get("/api2/json/version").await.0, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        api.get("/api2/json/version").await.0,
        401,
        "idle session still valid"
    );

    let api = c.login().await;
    assert_eq!(api.delete("/api2/json/access/ticket").await.0, 200);
    assert_eq!(
        api.get("/api2/json/version").await.0,
        401,
        "ticket valid after logout"
    );
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_even_when_used() {
    let c = Cluster::start(ServerOptions {
        session_max_secs: 2,
        ..Default::default()
    })
    .await;
    let api = c.login().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(api.get("/api2/json/version").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(api.get("/api2/json/version").await.0, 401);
}

#[tokio::test]
async fn join_tokens_are_single_use_and_replays_change_nothing() {
    let c = Cluster::start(ServerOptions::default()).await;
    let token = c.join_token();
    c.join_with_token("n1", &token).await.expect("first join");
    let replay = c
        .join_with_token("n2", &token)
        .await
        .expect_err("replayed token accepted");
    assert!(replay.contains("already used"), "{replay}");
    let api = c.login().await;
    let nodes = api.get("/api2/json/nodes").await.1;
    let names: Vec<&str> = nodes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1"]);
    // The refused join is a failed task with the reason.
    let failed = api.get("/api2/json/nodes/n2/tasks?errors=1").await;
    assert_eq!(failed.0, 404, "n2 never joined: {}", failed.1);
    let all = api.get("/api2/json/cluster/tasks").await.1;
    let refused = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == "n2")
        .expect("task for n2");
    assert!(
        refused["exitstatus"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{refused}"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let c = Cluster::start(ServerOptions::default()).await;
    let api = c.login().await;
    let cases: [(&str, u16, &str); 6] = [
        ("/api2/json/nodes/nosuch/status", 404, "does not exist"),
        ("/api2/json/nodes/Bad_Name/status", 400, "invalid node name"),
        (
            "/api2/json/nodes/nosuch/tasks/UPID:x/status",
            404,
            "does not exist",
        ),
        (
            "/api2/json/cluster/resources?type=bogus",
            400,
            "enumeration",
        ),
        ("/api2/json/cluster/tasks/extra", 404, "no API method"),
        (
            "/api2/json/nodes/nosuch/tasks?limit=abc",
            400,
            "invalid digit",
        ),
    ];
    for (path, code, needle) in cases {
        let (got, body) = api.get(path).await;
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.to_string().contains(needle), "{path}: {body}");
        assert_eq!(body["data"], Value::Null);
    }
    let big = format!("{{\"ttl\": 600, \"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    assert_eq!(
        api.post("/api2/json/cluster/join-tokens", &big).await.0,
        413
    );
    let unknown = api
        .post("/api2/json/cluster/join-tokens", "{\"ttl\": 5}")
        .await;
    assert_eq!(unknown.0, 400);
    assert!(unknown.1["errors"]["ttl"].is_string(), "{}", unknown.1);
    // Without a session nothing but login answers.
    let (code, _) = c.anonymous_get("/api2/json/nodes").await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn the_event_stream_pushes_the_cluster_and_ends_with_the_session() {
    let c = Cluster::start(ServerOptions::default()).await;
    c.add_node("n1").await;
    let api = c.login().await;
    let mut res = api.open("/api2/kiln/events").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while !seen.contains("\"status\":\"online\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no online node in events: {seen}"
        );
        let chunk = res.chunk().await.expect("chunk").expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("data:") && seen.contains("node/n1"), "{seen}");
    assert!(
        seen.contains("nodejoin"),
        "tasks missing from the event: {seen}"
    );

    assert_eq!(api.delete("/api2/json/access/ticket").await.0, 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = res.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "event stream still open after logout");
}
