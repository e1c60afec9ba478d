//! Integration tests of the access model on a real server and node: isolation between users,
//! disabled and expired accounts, API tokens, pool quotas under concurrency, and the
//! permission matrix generated from the route table (`kiln-server routes`).

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::{Api, Cluster, ServerOptions};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);
const PASSWORD: &str = "student-pw-1";

async fn cluster_with_node() -> (Cluster, Api) {
    let c = Cluster::start(ServerOptions::default()).await;
    c.add_node("n1").await;
    let root = c.login().await;
    root.wait_for_nodes_online(&["n1"], LONG).await;
    (c, root)
}

async fn ok(api: &Api, method: &str, path: &str, body: Value) -> Value {
    let (code, res) = api.request(method, path, Some(&body.to_string())).await;
    assert_eq!(code, 200, "{method} {path} {body}: {res}");
    res["data"].clone()
}

async fn add_user(root: &Api, userid: &str) {
    ok(
        root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": userid, "password": PASSWORD}),
    )
    .await;
}

async fn grant(root: &Api, path: &str, who: &str, role: &str) {
    let key = if who.contains('!') {
        "tokens"
    } else if who.contains('@') {
        "users"
    } else {
        "groups"
    };
    ok(
        root,
        "PUT",
        "/api2/json/access/acl",
        json!({"path": path, "roles": role, key: who}),
    )
    .await;
}

async fn create_vm(root: &Api, vmid: u32, extra: Value) {
    let mut body = json!({"vmid": vmid, "memory": 64});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    root.task_ok("n1", "/api2/json/nodes/n1/qemu", &body.to_string())
        .await;
}

fn ids(list: &Value) -> BTreeSet<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with("qemu/"))
        .collect()
}

#[tokio::test]
async fn a_student_cannot_list_read_start_or_console_into_another_students_vm() {
    let (c, root) = cluster_with_node().await;
    add_user(&root, "alice@kiln").await;
    add_user(&root, "bob@kiln").await;
    create_vm(&root, 100, json!({})).await;
    create_vm(&root, 101, json!({})).await;
    grant(&root, "/vms/100", "alice@kiln", "PVEVMUser").await;
    grant(&root, "/vms/101", "bob@kiln", "PVEVMUser").await;
    let alice = c.login_as("alice@kiln", PASSWORD).await;

    // Listings show her VM only.
    let all = alice.get("/api2/json/cluster/resources").await.1;
    assert_eq!(ids(&all), BTreeSet::from(["qemu/100".to_owned()]), "{all}");
    let on_node = alice.get("/api2/json/nodes/n1/qemu").await.1;
    let vmids: Vec<_> = on_node["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vmid"].clone())
        .collect();
    assert_eq!(vmids, vec![json!(100)], "{on_node}");
    // The live event stream (what the UI shows) carries her VM only.
    let mut events = alice.open("/api2/kiln/events").await;
    assert_eq!(events.status(), 200);
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = events.chunk().await.unwrap().expect("stream open");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        first.contains("qemu/100") && !first.contains("qemu/101"),
        "{first}"
    );
    drop(events);

    // Bob's VM: every door is closed, with Proxmox's message.
    for (method, path) in [
        ("GET", "/api2/json/nodes/n1/qemu/101/status/current"),
        ("GET", "/api2/json/nodes/n1/qemu/101/config"),
        ("POST", "/api2/json/nodes/n1/qemu/101/status/start"),
        ("DELETE", "/api2/json/nodes/n1/qemu/101"),
        ("GET", "/api2/kiln/nodes/n1/qemu/101/console"),
    ] {
        let body = (method == "POST").then_some("{}");
        let (code, res) = alice.request(method, path, body).await;
        assert_eq!(code, 403, "{method} {path}: {res}");
        let msg = res["message"].as_str().unwrap();
        assert!(
            msg.starts_with("Permission check failed (/vms/101, VM."),
            "{msg}"
        );
    }
    // Guessing ids: a VM that does not exist looks exactly like one she may not see.
    let (code, res) = alice
        .get("/api2/json/nodes/n1/qemu/999/status/current")
        .await;
    assert_eq!(
        (code, res["message"].as_str()),
        (403, Some("Permission check failed (/vms/999, VM.Audit)"))
    );

    // Her own VM works, and she may follow her own task but not root's.
    let (code, res) = alice
        .post("/api2/json/nodes/n1/qemu/100/status/start", "{}")
        .await;
    assert_eq!(code, 200, "{res}");
    let upid = res["data"].as_str().unwrap();
    assert_eq!(alice.wait_task("n1", upid, LONG).await, "OK");
    alice.wait_vm("n1", 100, "running", LONG).await;
    let tasks = alice.get("/api2/json/cluster/tasks").await.1;
    let users: BTreeSet<String> = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users, BTreeSet::from(["alice@kiln".to_owned()]), "{tasks}");
    let root_task = root.get("/api2/json/nodes/n1/tasks?limit=1000").await.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == "root@kiln")
        .unwrap()["upid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _) = alice
        .get(&format!("/api2/json/nodes/n1/tasks/{root_task}/status"))
        .await;
    assert_eq!(code, 403);

    // Her effective permissions say the same.
    let perms = alice.get("/api2/json/access/permissions").await.1;
    assert_eq!(perms["data"]["/vms/100"]["VM.PowerMgmt"], 1, "{perms}");
    assert!(perms["data"].get("/vms/101").is_none(), "{perms}");
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/stop", "{}")
        .await;
}

#[tokio::test]
async fn disabled_and_expired_users_cannot_log_in_and_their_sessions_end() {
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    add_user(&root, "carol@kiln").await;
    let carol = c.login_as("carol@kiln", PASSWORD).await;
    assert_eq!(carol.get("/api2/json/version").await.0, 200);

    ok(
        &root,
        "PUT",
        "/api2/json/access/users/carol@kiln",
        json!({"enable": 0}),
    )
    .await;
    assert_eq!(
        carol.get("/api2/json/version").await.0,
        401,
        "session of a disabled user"
    );
    assert_eq!(c.try_login("carol@kiln", PASSWORD).await.0, 401);
    ok(
        &root,
        "PUT",
        "/api2/json/access/users/carol@kiln",
        json!({"enable": 1}),
    )
    .await;
    assert_eq!(c.try_login("carol@kiln", PASSWORD).await.0, 200);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ok(
        &root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": "dave@kiln", "password": PASSWORD, "expire": now - 10}),
    )
    .await;
    assert_eq!(
        c.try_login("dave@kiln", PASSWORD).await.0,
        401,
        "expired user"
    );
    ok(
        &root,
        "PUT",
        "/api2/json/access/users/dave@kiln",
        json!({"expire": now + 2}),
    )
    .await;
    let dave = c.login_as("dave@kiln", PASSWORD).await;
    assert_eq!(dave.get("/api2/json/version").await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        dave.get("/api2/json/version").await.0,
        401,
        "session past the expiry"
    );

    // A removed user's session ends too.
    let carol = c.login_as("carol@kiln", PASSWORD).await;
    ok(
        &root,
        "DELETE",
        "/api2/json/access/users/carol@kiln",
        Value::Null,
    )
    .await;
    assert_eq!(carol.get("/api2/json/version").await.0, 401);
}

#[tokio::test]
async fn api_tokens_work_without_csrf_and_a_revoked_token_stops_at_once() {
    let (c, root) = cluster_with_node().await;
    create_vm(&root, 100, json!({})).await;
    create_vm(&root, 101, json!({})).await;
    add_user(&root, "ops@kiln").await;
    grant(&root, "/", "ops@kiln", "PVEVMAdmin").await;
    let ops = c.login_as("ops@kiln", PASSWORD).await;

    // Full token (no privilege separation): the user's rights, no CSRF token needed.
    let full = ok(
        &ops,
        "POST",
        "/api2/json/access/users/ops@kiln/token/full",
        json!({"privsep": 0}),
    )
    .await;
    assert_eq!(full["full-tokenid"], "ops@kiln!full");
    let secret = full["value"].as_str().unwrap();
    let token = c.token_api("ops@kiln!full", secret);
    let (code, res) = token
        .request(
            "PUT",
            "/api2/json/nodes/n1/qemu/100/config",
            Some(r#"{"description": "by token"}"#),
        )
        .await;
    assert_eq!(code, 200, "{res}");
    let listed = ops.get("/api2/json/access/users/ops@kiln/token").await.1;
    assert!(
        !listed.to_string().contains(secret),
        "the secret is shown only once"
    );
    // Tokens cannot make tokens or change passwords.
    let (code, _) = token
        .request(
            "POST",
            "/api2/json/access/users/ops@kiln/token/other",
            Some("{}"),
        )
        .await;
    assert_eq!(code, 403);

    // Privilege-separated token: the intersection of its own ACL and the user's.
    let sep = ok(
        &ops,
        "POST",
        "/api2/json/access/users/ops@kiln/token/sep",
        json!({}),
    )
    .await;
    let sep_api = c.token_api("ops@kiln!sep", sep["value"].as_str().unwrap());
    assert_eq!(
        sep_api
            .get("/api2/json/nodes/n1/qemu/100/status/current")
            .await
            .0,
        403
    );
    grant(&root, "/vms/100", "ops@kiln!sep", "Administrator").await;
    assert_eq!(
        sep_api
            .get("/api2/json/nodes/n1/qemu/100/status/current")
            .await
            .0,
        200
    );
    assert_eq!(
        sep_api
            .get("/api2/json/nodes/n1/qemu/101/status/current")
            .await
            .0,
        403
    );
    let (code, res) = sep_api
        .request("POST", "/api2/json/cluster/join-tokens", Some("{}"))
        .await;
    assert_eq!(code, 403, "the owner lacks Sys.Modify: {res}");
    let resources = sep_api.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(ids(&resources), BTreeSet::from(["qemu/100".to_owned()]));

    // Wrong secrets and revoked tokens: 401, at once.
    let wrong = c.token_api("ops@kiln!full", "00000000-0000-0000-0000-000000000000");
    assert_eq!(wrong.get("/api2/json/version").await.0, 401);
    ok(
        &ops,
        "DELETE",
        "/api2/json/access/users/ops@kiln/token/full",
        Value::Null,
    )
    .await;
    let (code, res) = token.get("/api2/json/version").await;
    assert_eq!(code, 401, "{res}");
    // Disabling the user stops its tokens too.
    ok(
        &root,
        "PUT",
        "/api2/json/access/users/ops@kiln",
        json!({"enable": 0}),
    )
    .await;
    assert_eq!(
        sep_api
            .get("/api2/json/nodes/n1/qemu/100/status/current")
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn concurrent_starts_at_the_edge_of_a_pool_quota_let_exactly_the_allowed_number_run() {
    let (c, root) = cluster_with_node().await;
    ok(
        &root,
        "POST",
        "/api2/json/pools",
        json!({"poolid": "lab", "max-vcpus": 2, "max-vms": 3}),
    )
    .await;
    add_user(&root, "teacher@kiln").await;
    grant(
        &root,
        "/pool/lab",
        "teacher@kiln",
        "PVEVMAdmin,PVEPoolAdmin",
    )
    .await;
    let teacher = c.login_as("teacher@kiln", PASSWORD).await;
    // VM.Allocate on the pool suffices to create VMs in it, and only in it.
    for vmid in [100, 101, 102] {
        create_vm(&teacher, vmid, json!({"pool": "lab"})).await;
    }
    let (code, res) = teacher
        .post("/api2/json/nodes/n1/qemu", r#"{"vmid": 103, "memory": 64}"#)
        .await;
    assert_eq!(code, 403, "outside the pool: {res}");
    let (code, res) = teacher
        .post(
            "/api2/json/nodes/n1/qemu",
            r#"{"vmid": 103, "memory": 64, "pool": "lab"}"#,
        )
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(
        res["message"]
            .as_str()
            .unwrap()
            .starts_with("pool lab: it holds 3 of at most 3 VMs"),
        "{res}"
    );

    // Three starts at once against a limit of two vCPUs.
    let starts = [100, 101, 102].map(|vmid| {
        let t = &teacher;
        async move {
            t.post(
                &format!("/api2/json/nodes/n1/qemu/{vmid}/status/start"),
                "{}",
            )
            .await
        }
    });
    let answers = futures_join(starts).await;
    let mut ran = 0;
    let mut refusals = Vec::new();
    for (code, res) in answers {
        if code == 200 {
            let exit = teacher
                .wait_task("n1", res["data"].as_str().unwrap(), LONG)
                .await;
            if exit == "OK" {
                ran += 1;
            } else {
                refusals.push(exit);
            }
        } else {
            assert_eq!(code, 409, "{res}");
            refusals.push(res["message"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ran, 2, "refusals: {refusals:?}");
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].contains("pool lab: starting VM 10")
            && refusals[0].contains("needs 1 vCPUs but only 0 of 2 are free"),
        "{refusals:?}"
    );
    let pool = teacher.get("/api2/json/pools/lab").await.1;
    assert_eq!(pool["data"]["usage"]["running_vcpus"], 2, "{pool}");
    assert_eq!(pool["data"]["members"].as_array().unwrap().len(), 3);
    // A running VM cannot be moved into the full pool either.
    create_vm(&root, 104, json!({"start": 1})).await;
    root.wait_vm("n1", 104, "running", LONG).await;
    ok(&root, "PUT", "/api2/json/pools/lab", json!({"max-vms": 4})).await;
    let (code, res) = root.put("/api2/json/pools/lab", r#"{"vms": "104"}"#).await;
    assert_eq!(code, 409, "{res}");
    assert!(
        res["message"]
            .as_str()
            .unwrap()
            .starts_with("pool lab: the running VMs to add use 1 vCPUs but only 0 of 2 are free"),
        "{res}"
    );
    // The teacher administers the pool but cannot raise its quota.
    let (code, res) = teacher
        .put("/api2/json/pools/lab", r#"{"max-vcpus": 8}"#)
        .await;
    assert_eq!(code, 403, "{res}");
    for vmid in [100, 101, 102, 104] {
        let _ = root
            .post(
                &format!("/api2/json/nodes/n1/qemu/{vmid}/status/stop"),
                "{}",
            )
            .await;
    }
    let _ = c;
}

/// Run futures concurrently and collect their outputs in order.
async fn futures_join<F: std::future::Future>(futures: [F; 3]) -> Vec<F::Output> {
    let [a, b, c] = futures;
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}

#[tokio::test]
async fn the_access_api_rejects_bad_input_with_actionable_messages() {
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    for (method, path, body, param, words) in [
        (
            "POST",
            "/api2/json/access/users",
            json!({"userid": "alice"}),
            "userid",
            "expected name@kiln",
        ),
        (
            "POST",
            "/api2/json/access/users",
            json!({"userid": "a@kiln", "password": "short"}),
            "password",
            "8 to 1024",
        ),
        (
            "POST",
            "/api2/json/access/users",
            json!({"userid": "a@kiln", "groups": "nope"}),
            "groups",
            "does not exist",
        ),
        (
            "POST",
            "/api2/json/access/roles",
            json!({"roleid": "R", "privs": "VM.Fly"}),
            "privs",
            "unknown privilege 'VM.Fly'",
        ),
        (
            "PUT",
            "/api2/json/access/acl",
            json!({"path": "/vm/100", "roles": "PVEAuditor", "users": "root@kiln"}),
            "path",
            "invalid ACL path",
        ),
        (
            "PUT",
            "/api2/json/access/acl",
            json!({"path": "/vms/100", "roles": "Nope", "users": "root@kiln"}),
            "roles",
            "does not exist",
        ),
        (
            "PUT",
            "/api2/json/access/acl",
            json!({"path": "/vms/100", "roles": "PVEAuditor"}),
            "users",
            "at least one",
        ),
        (
            "POST",
            "/api2/json/pools",
            json!({"poolid": "a/b"}),
            "poolid",
            "not a valid poolid",
        ),
        (
            "PUT",
            "/api2/json/access/roles/PVEAdmin",
            json!({"privs": "VM.Audit"}),
            "roleid",
            "built-in",
        ),
    ] {
        let (code, res) = root.request(method, path, Some(&body.to_string())).await;
        assert_eq!(code, 400, "{method} {path} {body}: {res}");
        let msg = res["errors"][param].as_str().unwrap_or_default();
        assert!(msg.contains(words), "{path} {param}: {res}");
    }
    let (code, res) = root
        .request("DELETE", "/api2/json/access/users/root@kiln", None)
        .await;
    assert_eq!(code, 400, "{res}");
}

#[tokio::test]
async fn a_delegated_acl_manager_cannot_grant_more_than_it_holds_or_smuggle_a_path() {
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    add_user(&root, "lead@kiln").await;
    add_user(&root, "bob@kiln").await;
    ok(
        &root,
        "POST",
        "/api2/json/access/roles",
        json!({"roleid": "Delegate", "privs": "VM.Audit,VM.PowerMgmt,Permissions.Modify"}),
    )
    .await;
    ok(
        &root,
        "POST",
        "/api2/json/access/roles",
        json!({"roleid": "Viewer", "privs": "VM.Audit"}),
    )
    .await;
    grant(&root, "/vms/100", "lead@kiln", "Delegate").await;
    let lead = c.login_as("lead@kiln", PASSWORD).await;

    let give = |path: &str, role: &str| {
        json!({"path": path, "roles": role, "users": "bob@kiln"}).to_string()
    };
    let (code, res) = lead
        .put("/api2/json/access/acl", &give("/vms/100", "Viewer"))
        .await;
    assert_eq!(code, 200, "{res}");
    let (code, res) = lead
        .put("/api2/json/access/acl", &give("/vms/100", "PVEVMAdmin"))
        .await;
    assert_eq!(code, 403, "{res}");
    assert!(
        res["message"]
            .as_str()
            .unwrap()
            .contains("you do not hold VM.Allocate"),
        "{res}"
    );
    let (code, res) = lead
        .put("/api2/json/access/acl", &give("/vms/101", "Viewer"))
        .await;
    assert_eq!(
        (code, res["message"].as_str()),
        (
            403,
            Some("Permission check failed (/vms/101, Permissions.Modify)")
        )
    );
    // The check reads the parameter where the handler reads it: a query string cannot stand
    // in for the body.
    let (code, res) = lead
        .put("/api2/json/access/acl?path=/vms/100", &give("/", "Viewer"))
        .await;
    assert_eq!(code, 403, "{res}");
    let acl = root.get("/api2/json/access/acl").await.1;
    let bobs: Vec<_> = acl["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ugid"] == "bob@kiln")
        .collect();
    assert_eq!(bobs.len(), 1, "{acl}");
    assert_eq!(
        (bobs[0]["path"].as_str(), bobs[0]["roleid"].as_str()),
        (Some("/vms/100"), Some("Viewer"))
    );
}

#[tokio::test]
async fn state_changing_calls_are_audited_and_only_auditors_read_the_log() {
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    add_user(&root, "eve@kiln").await;
    add_user(&root, "aud@kiln").await;
    grant(&root, "/", "aud@kiln", "PVEAuditor").await;
    let eve = c.login_as("eve@kiln", PASSWORD).await;
    let (code, _) = eve.post("/api2/json/pools", r#"{"poolid": "mine"}"#).await;
    assert_eq!(code, 403);
    assert_eq!(eve.get("/api2/kiln/audit").await.0, 403, "not an auditor");

    let aud = c.login_as("aud@kiln", PASSWORD).await;
    let (code, log) = aud.get("/api2/kiln/audit").await;
    assert_eq!(code, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let has = |user: &str, method: &str, path: &str, status: u64| {
        entries.iter().any(|e| {
            e["user"] == user
                && e["method"] == method
                && e["path"] == path
                && e["status"] == status
                && e["client"] == "127.0.0.1"
        })
    };
    assert!(
        has("root@kiln", "POST", "/api2/json/access/users", 200),
        "{log}"
    );
    assert!(
        has("root@kiln", "PUT", "/api2/json/access/acl", 200),
        "{log}"
    );
    assert!(has("eve@kiln", "POST", "/api2/json/pools", 403), "{log}");
    assert!(
        has("", "POST", "/api2/json/access/ticket", 200),
        "logins: {log}"
    );
    assert!(
        !log.to_string().contains(PASSWORD),
        "no secrets in the audit log"
    );
    let only_eve = aud.get("/api2/kiln/audit?userfilter=eve@kiln").await.1;
    assert_eq!(only_eve["data"].as_array().unwrap().len(), 1, "{only_eve}");
}

#[tokio::test]
async fn a_totp_login_needs_the_second_factor_and_codes_and_recovery_keys_work_once() {
    use totp_rs::{Algorithm, Secret, TOTP};
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    add_user(&root, "tina@kiln").await;
    let tina = c.login_as("tina@kiln", PASSWORD).await;
    let secret = Secret::Raw(rand_bytes()).to_bytes().unwrap();
    let totp = TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        Some("Kiln".into()),
        "tina@kiln".into(),
    )
    .unwrap();
    let url = totp.get_url();
    let enrol = |value: &str, password: &str| {
        json!({"type": "totp", "totp": url, "value": value, "password": password}).to_string()
    };
    let path = "/api2/json/access/tfa/tina@kiln";
    let (code, res) = tina.post(path, &enrol("abcdef", PASSWORD)).await;
    assert_eq!(
        (code, res["errors"]["value"].is_string()),
        (400, true),
        "{res}"
    );
    let (code, res) = tina
        .post(path, &enrol(&totp.generate_current().unwrap(), "not-it"))
        .await;
    assert_eq!(
        (code, res["errors"]["password"].is_string()),
        (400, true),
        "{res}"
    );
    ok(
        &tina,
        "POST",
        path,
        serde_json::from_str(&enrol(&totp.generate_current().unwrap(), PASSWORD)).unwrap(),
    )
    .await;
    let keys = ok(
        &tina,
        "POST",
        path,
        json!({"type": "recovery", "password": PASSWORD}),
    )
    .await["recovery"]
        .clone();
    let keys: Vec<String> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 10);
    let (code, _) = root
        .post(
            path,
            &json!({"type": "recovery", "password": harness::ADMIN_PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(code, 403, "only the user enrols its own second factors");

    // The password alone no longer opens a session: the answer is a challenge.
    let ch = tfa_challenge(&c).await;
    assert!(ch.starts_with("PVE:tina@kiln:!tfa!"), "{ch}");
    assert_eq!(
        c.session_api(&ch, "").get("/api2/json/version").await.0,
        401,
        "a challenge is no session"
    );
    // A wrong answer uses the challenge up.
    assert_eq!(
        tfa_answer(&c, ch.clone(), "totp:abcdef".into()).await.0,
        401
    );
    assert_eq!(
        tfa_answer(&c, ch, format!("recovery:{}", keys[0])).await.0,
        401
    );

    // A recovery key works once.
    let (code, body) =
        tfa_answer(&c, tfa_challenge(&c).await, format!("recovery:{}", keys[0])).await;
    assert_eq!(code, 200, "{body}");
    let session = c.session_api(
        body["data"]["ticket"].as_str().unwrap(),
        body["data"]["CSRFPreventionToken"].as_str().unwrap(),
    );
    assert_eq!(session.get("/api2/json/version").await.0, 200);
    assert_eq!(
        tfa_answer(&c, tfa_challenge(&c).await, format!("recovery:{}", keys[0]))
            .await
            .0,
        401
    );
    let listed = tina.get(path).await.1;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["remaining"] == 9),
        "{listed}"
    );

    // A TOTP code works once (the enrolment used the current one; the next is accepted).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let next = totp.generate(now + 30);
    let (code, body) = tfa_answer(&c, tfa_challenge(&c).await, format!("totp:{next}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        tfa_answer(&c, tfa_challenge(&c).await, format!("totp:{next}"))
            .await
            .0,
        401,
        "replayed code"
    );

    // After a lost phone an administrator removes the factors; the password suffices again.
    ok(
        &root,
        "DELETE",
        "/api2/json/access/tfa/tina@kiln/totp",
        Value::Null,
    )
    .await;
    ok(
        &root,
        "DELETE",
        "/api2/json/access/tfa/tina@kiln/recovery",
        Value::Null,
    )
    .await;
    let (code, body) = c.try_login("tina@kiln", PASSWORD).await;
    assert_eq!(
        (code, body["data"]["NeedTFA"].is_null()),
        (200, true),
        "{body}"
    );
}

#[tokio::test]
async fn a_password_set_by_an_administrator_must_be_replaced_before_anything_else() {
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    add_user(&root, "pat@kiln").await;
    let set_by_admin = "given-by-admin-1";
    ok(
        &root,
        "PUT",
        "/api2/json/access/password",
        json!({"userid": "pat@kiln", "password": set_by_admin,
               "confirmation-password": harness::ADMIN_PASSWORD}),
    )
    .await;
    let (code, body) = c.try_login("pat@kiln", set_by_admin).await;
    assert_eq!(
        (code, body["data"]["kiln-setup"].as_str()),
        (200, Some("change-password")),
        "{body}"
    );
    let pat = c.login_as("pat@kiln", set_by_admin).await;
    let (code, refused) = pat.get("/api2/json/cluster/resources").await;
    assert_eq!(code, 403, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("must change the password") && message.contains("/access/password"),
        "{message}"
    );
    // Its own account stays readable; another user's password is out of reach.
    assert_eq!(pat.get("/api2/json/access/users/pat@kiln").await.0, 200);
    let other = json!({"userid": "root@kiln", "password": "whatever-123",
                       "confirmation-password": set_by_admin});
    assert_eq!(
        pat.put("/api2/json/access/password", &other.to_string())
            .await
            .0,
        403
    );
    let own = json!({"userid": "pat@kiln", "password": PASSWORD,
                     "confirmation-password": set_by_admin});
    ok(&pat, "PUT", "/api2/json/access/password", own).await;
    // The same session is a normal one now, and so is the next login.
    assert_eq!(pat.get("/api2/json/cluster/resources").await.0, 200);
    let (code, body) = c.try_login("pat@kiln", PASSWORD).await;
    assert_eq!(
        (code, body["data"]["kiln-setup"].is_null()),
        (200, true),
        "{body}"
    );
    // Logging out is always allowed, even while restricted.
    ok(
        &root,
        "PUT",
        "/api2/json/access/password",
        json!({"userid": "pat@kiln", "password": set_by_admin,
               "confirmation-password": harness::ADMIN_PASSWORD}),
    )
    .await;
    let pat = c.login_as("pat@kiln", set_by_admin).await;
    assert_eq!(pat.delete("/api2/json/access/ticket").await.0, 200);
}

#[tokio::test]
async fn a_user_who_must_have_a_second_factor_may_only_enrol_one_until_it_has() {
    use totp_rs::{Algorithm, Secret, TOTP};
    let c = Cluster::start(ServerOptions::default()).await;
    let root = c.login().await;
    ok(
        &root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": "tom@kiln", "password": PASSWORD, "tfa-required": 1}),
    )
    .await;
    let (code, res) = root
        .post(
            "/api2/json/access/users",
            &json!({"userid": "bad@kiln", "password": PASSWORD, "tfa-required": 2}).to_string(),
        )
        .await;
    assert_eq!(
        (code, res["errors"]["tfa-required"].is_string()),
        (400, true),
        "{res}"
    );
    let user = ok(
        &root,
        "GET",
        "/api2/json/access/users/tom@kiln",
        Value::Null,
    )
    .await;
    assert_eq!(user["tfa-required"], 1, "{user}");
    let (code, body) = c.try_login("tom@kiln", PASSWORD).await;
    assert_eq!(
        (code, body["data"]["kiln-setup"].as_str()),
        (200, Some("enrol-tfa")),
        "{body}"
    );
    let tom = c.login_as("tom@kiln", PASSWORD).await;
    let (code, refused) = tom.get("/api2/json/cluster/resources").await;
    assert_eq!(code, 403, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("/access/tfa/tom@kiln"),
        "{refused}"
    );
    // Recovery keys alone do not meet the requirement.
    let path = "/api2/json/access/tfa/tom@kiln";
    ok(
        &tom,
        "POST",
        path,
        json!({"type": "recovery", "password": PASSWORD}),
    )
    .await;
    assert_eq!(tom.get("/api2/json/cluster/resources").await.0, 403);
    let totp = TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        Secret::Raw(rand_bytes()).to_bytes().unwrap(),
        Some("Kiln".into()),
        "tom@kiln".into(),
    )
    .unwrap();
    ok(
        &tom,
        "POST",
        path,
        json!({"type": "totp", "totp": totp.get_url(),
               "value": totp.generate_current().unwrap(), "password": PASSWORD}),
    )
    .await;
    assert_eq!(tom.get("/api2/json/cluster/resources").await.0, 200);
    let (code, body) = c.try_login("tom@kiln", PASSWORD).await;
    assert_eq!(
        (code, body["data"]["NeedTFA"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    // Without the TOTP (a lost phone) the requirement holds again, at once.
    ok(
        &root,
        "DELETE",
        "/api2/json/access/tfa/tom@kiln/totp",
        Value::Null,
    )
    .await;
    assert_eq!(tom.get("/api2/json/cluster/resources").await.0, 403);

    // Requiring a factor of a user without one restricts its open sessions at once.
    add_user(&root, "una@kiln").await;
    let una = c.login_as("una@kiln", PASSWORD).await;
    assert_eq!(una.get("/api2/json/cluster/resources").await.0, 200);
    ok(
        &root,
        "PUT",
        "/api2/json/access/users/una@kiln",
        json!({"tfa-required": 1}),
    )
    .await;
    assert_eq!(una.get("/api2/json/cluster/resources").await.0, 403);
    ok(
        &root,
        "PUT",
        "/api2/json/access/users/una@kiln",
        json!({"tfa-required": 0}),
    )
    .await;
    assert_eq!(una.get("/api2/json/cluster/resources").await.0, 200);
}

/// The first step of tina's login: the challenge of a `NeedTFA` answer.
async fn tfa_challenge(c: &Cluster) -> String {
    let (code, body) = c.try_login("tina@kiln", PASSWORD).await;
    assert_eq!(
        (code, body["data"]["NeedTFA"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    body["data"]["ticket"].as_str().unwrap().to_owned()
}

/// The second step of tina's login.
async fn tfa_answer(c: &Cluster, challenge: String, answer: String) -> (u16, Value) {
    let body = json!({"username": "tina@kiln", "password": answer, "tfa-challenge": challenge});
    c.anonymous()
        .request("POST", "/api2/json/access/ticket", Some(&body.to_string()))
        .await
}

fn rand_bytes() -> Vec<u8> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kiln-tfa-test-{t}").into_bytes()
}

// ---------------------------------------------------------------------------------------
// The permission matrix.

/// Routes every authenticated caller may use, and why; any other route declared without a
/// privilege fails the matrix.
const OPEN_TO_USERS: &[(&str, &str, &str)] = &[
    ("GET", "/api2/json/version", "version string"),
    (
        "DELETE",
        "/api2/json/access/ticket",
        "log out of one's own session",
    ),
    (
        "GET",
        "/api2/json/access/users",
        "filtered: self, and users the caller may audit",
    ),
    (
        "GET",
        "/api2/json/access/groups",
        "filtered by Sys.Audit/User.Modify/Group.Allocate",
    ),
    (
        "GET",
        "/api2/json/access/roles",
        "role definitions are public (Proxmox)",
    ),
    (
        "GET",
        "/api2/json/access/roles/{roleid}",
        "role definitions are public (Proxmox)",
    ),
    (
        "GET",
        "/api2/json/access/acl",
        "filtered by Permissions.Modify / Sys.Audit on /access",
    ),
    ("GET", "/api2/json/pools", "filtered by Pool.Audit"),
    (
        "GET",
        "/api2/json/nodes",
        "filtered by Sys.Audit on the node",
    ),
    (
        "GET",
        "/api2/json/nodes/{node}/tasks",
        "filtered: own tasks, or Sys.Audit on the node",
    ),
    (
        "GET",
        "/api2/json/nodes/{node}/qemu",
        "filtered by VM.Audit",
    ),
    ("GET", "/api2/json/cluster/nextid", "a free id (Proxmox)"),
    (
        "GET",
        "/api2/json/cluster/resources",
        "filtered by VM.Audit / Sys.Audit",
    ),
    (
        "GET",
        "/api2/json/cluster/tasks",
        "filtered: own tasks, or Sys.Audit on the node",
    ),
    (
        "GET",
        "/api2/kiln/events",
        "filtered like resources and tasks",
    ),
    (
        "GET",
        "/api2/kiln/labs",
        "filtered: labs the caller runs or audits (Pool.* on the lab pool) or attends",
    ),
    (
        "GET",
        "/api2/kiln/labs/{labid}",
        "instructors and auditors see every student, a student only itself, anyone else 404",
    ),
];
/// Routes without authentication.
const PUBLIC: &[(&str, &str)] = &[
    ("POST", "/api2/json/access/ticket"),
    ("GET", "/api2/kiln/ca"),
    ("POST", "/api2/kiln/join"),
];

/// Proxmox's built-in roles used by the matrix, written out here independently of the server.
fn role(name: &str) -> &'static [&'static str] {
    match name {
        "PVEAuditor" => &[
            "VM.Audit",
            "Sys.Audit",
            "Datastore.Audit",
            "SDN.Audit",
            "Pool.Audit",
            "Mapping.Audit",
        ],
        "PVEVMUser" => &[
            "VM.Audit",
            "VM.Console",
            "VM.PowerMgmt",
            "VM.Backup",
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
        ],
        "PVEVMAdmin" => &[
            "VM.Audit",
            "VM.Console",
            "VM.PowerMgmt",
            "VM.Backup",
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Allocate",
            "VM.Clone",
            "VM.Migrate",
            "VM.Monitor",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
        ],
        other => panic!("role {other} not modelled"),
    }
}

/// A principal of the matrix and what the model says it holds.
struct Principal {
    name: &'static str,
    api: Api,
    userid: Option<&'static str>,
    token: bool,
    root: bool,
    /// (path, role, propagate) of the user, and of the token when `token`.
    grants: Vec<(&'static str, &'static str)>,
    token_grants: Vec<(&'static str, &'static str)>,
}

fn covers(grants: &[(&str, &str)], path: &str, privilege: &str) -> bool {
    grants.iter().any(|(at, r)| {
        let below = *at == "/" || path == *at || path.starts_with(&format!("{at}/"));
        below && role(r).contains(&privilege)
    })
}

impl Principal {
    fn holds(&self, path: &str, privilege: &str) -> bool {
        if self.root && !self.token {
            return true;
        }
        let user = covers(&self.grants, path, privilege);
        if self.token {
            user && covers(&self.token_grants, path, privilege)
        } else {
            user
        }
    }

    /// Whether the model allows `check` with the fixture parameters.
    fn allowed(&self, check: &Value, params: &BTreeMap<&str, String>) -> bool {
        let anonymous = self.userid.is_none();
        match check["kind"].as_str().unwrap() {
            "public" => true,
            "authenticated" => !anonymous,
            "perm" => {
                let path = fill(check["path"].as_str().unwrap(), params);
                let privs: Vec<&str> = check["privs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect();
                !anonymous
                    && if check["any"] == true {
                        privs.iter().any(|p| self.holds(&path, p))
                    } else {
                        privs.iter().all(|p| self.holds(&path, p))
                    }
            }
            "user-group" => {
                // The fixture user is in group fixgroup.
                let privs = check["privs"].as_array().unwrap();
                !anonymous
                    && privs.iter().any(|p| {
                        let p = p.as_str().unwrap();
                        self.holds("/access/groups", p) || self.holds("/access/groups/fixgroup", p)
                    })
            }
            "is-user" => {
                let param = check["param"].as_str().unwrap();
                !anonymous
                    && !self.token
                    && params
                        .get(param)
                        .is_none_or(|u| Some(u.as_str()) == self.userid)
            }
            "task-owner" => self.root && !self.token, // the fixture task is root's
            "or" => check["any_of"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| self.allowed(c, params)),
            "all" => check["all_of"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| self.allowed(c, params)),
            "session-only" => !anonymous && !self.token && self.allowed(&check["then"], params),
            other => panic!("check kind {other} not modelled by the matrix"),
        }
    }
}

fn fill(template: &str, params: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    assert!(
        !out.contains('{'),
        "no fixture for a parameter of {template}"
    );
    out
}

fn check_params(check: &Value, out: &mut BTreeSet<String>) {
    match check["kind"].as_str().unwrap_or_default() {
        "perm" => {
            let t = check["path"].as_str().unwrap();
            for part in t.split('{').skip(1) {
                out.insert(part.split('}').next().unwrap().to_owned());
            }
        }
        "user-group" | "is-user" | "task-owner" => {
            out.insert(check["param"].as_str().unwrap().to_owned());
        }
        "or" => check["any_of"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(|c| check_params(c, out)),
        "all" => check["all_of"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(|c| check_params(c, out)),
        "session-only" => check_params(&check["then"], out),
        _ => {}
    }
}

#[tokio::test]
async fn permission_matrix_follows_the_route_table() {
    let (c, root) = cluster_with_node().await;
    // Fixtures: a VM, a user in a group, a role, a pool, a token, a task of root's.
    create_vm(&root, 100, json!({})).await;
    ok(
        &root,
        "POST",
        "/api2/json/access/groups",
        json!({"groupid": "fixgroup"}),
    )
    .await;
    ok(
        &root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": "fixture@kiln", "groups": "fixgroup"}),
    )
    .await;
    ok(
        &root,
        "POST",
        "/api2/json/access/users/fixture@kiln/token/fixtok",
        json!({}),
    )
    .await;
    ok(
        &root,
        "POST",
        "/api2/json/access/roles",
        json!({"roleid": "FixtureRole", "privs": "VM.Audit"}),
    )
    .await;
    ok(
        &root,
        "POST",
        "/api2/json/pools",
        json!({"poolid": "fixpool"}),
    )
    .await;
    let task = root.get("/api2/json/nodes/n1/tasks").await.1["data"][0]["upid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(task.contains(":root@kiln:"), "{task}");
    // Principals.
    for u in [
        "plain@kiln",
        "vmaudit@kiln",
        "auditor@kiln",
        "tokowner@kiln",
    ] {
        add_user(&root, u).await;
    }
    grant(&root, "/vms/100", "vmaudit@kiln", "PVEAuditor").await;
    grant(&root, "/", "auditor@kiln", "PVEAuditor").await;
    grant(&root, "/", "tokowner@kiln", "PVEVMAdmin").await;
    let tokowner = c.login_as("tokowner@kiln", PASSWORD).await;
    let tok = ok(
        &tokowner,
        "POST",
        "/api2/json/access/users/tokowner@kiln/token/mx",
        json!({"privsep": 1}),
    )
    .await;
    grant(&root, "/vms/100", "tokowner@kiln!mx", "PVEVMUser").await;
    let principals = vec![
        Principal {
            name: "anonymous",
            api: c.anonymous(),
            userid: None,
            token: false,
            root: false,
            grants: vec![],
            token_grants: vec![],
        },
        Principal {
            name: "plain user",
            api: c.login_as("plain@kiln", PASSWORD).await,
            userid: Some("plain@kiln"),
            token: false,
            root: false,
            grants: vec![],
            token_grants: vec![],
        },
        Principal {
            name: "VM.Audit on /vms/100",
            api: c.login_as("vmaudit@kiln", PASSWORD).await,
            userid: Some("vmaudit@kiln"),
            token: false,
            root: false,
            grants: vec![("/vms/100", "PVEAuditor")],
            token_grants: vec![],
        },
        Principal {
            name: "auditor",
            api: c.login_as("auditor@kiln", PASSWORD).await,
            userid: Some("auditor@kiln"),
            token: false,
            root: false,
            grants: vec![("/", "PVEAuditor")],
            token_grants: vec![],
        },
        Principal {
            name: "token with privsep",
            api: c.token_api("tokowner@kiln!mx", tok["value"].as_str().unwrap()),
            userid: Some("tokowner@kiln"),
            token: true,
            root: false,
            grants: vec![("/", "PVEVMAdmin")],
            token_grants: vec![("/vms/100", "PVEVMUser")],
        },
        Principal {
            name: "admin",
            api: c.login().await,
            userid: Some("root@kiln"),
            token: false,
            root: true,
            grants: vec![],
            token_grants: vec![],
        },
    ];
    let params: BTreeMap<&str, String> = [
        ("node", "n1".to_owned()),
        ("vmid", "100".to_owned()),
        ("newid", "150".to_owned()),
        ("upid", task),
        ("userid", "fixture@kiln".to_owned()),
        ("tokenid", "fixtok".to_owned()),
        ("groupid", "fixgroup".to_owned()),
        ("roleid", "FixtureRole".to_owned()),
        ("poolid", "fixpool".to_owned()),
        ("labid", "fixpool".to_owned()),
        ("pool", "fixpool".to_owned()),
        ("action", "start".to_owned()),
        ("path", "/vms/100".to_owned()),
        ("id", "totp".to_owned()),
        ("sid", "vm:100".to_owned()),
        ("rule", "fixrule".to_owned()),
    ]
    .into();

    let routes = c.routes();
    let routes = routes.as_array().unwrap();
    assert!(routes.len() >= 50, "only {} routes", routes.len());
    let mut failures = Vec::new();
    let mut probes = 0;
    for r in routes {
        let method = r["method"].as_str().unwrap();
        let template = r["path"].as_str().unwrap();
        let check = &r["check"];
        match check["kind"].as_str().unwrap() {
            "authenticated" if !OPEN_TO_USERS.iter().any(|(m, p, _)| *m == method && *p == template) => failures.push(format!(
                "{method} {template} is open to every user: declare its privilege in server/src/api/routes.rs, or list it in OPEN_TO_USERS with the reason"
            )),
            "public" if !PUBLIC.contains(&(method, template)) => {
                failures.push(format!("{method} {template} needs no login: list it in PUBLIC if that is right"))
            }
            _ => {}
        }
        let path = fill(template, &params);
        let mut extra = BTreeSet::new();
        check_params(check, &mut extra);
        let extra: BTreeMap<String, String> = extra
            .into_iter()
            .filter(|p| !template.contains(&format!("{{{p}}}")))
            .map(|p| {
                let v = params
                    .get(p.as_str())
                    .unwrap_or_else(|| panic!("no fixture for parameter {p}"))
                    .clone();
                (p, v)
            })
            .collect();
        // The probe: real targets, plus a parameter no route knows, so an allowed mutating
        // call is refused by parameter validation after the privilege check and changes
        // nothing.
        let mutating = method != "GET";
        let (url, body) = if method == "POST" || method == "PUT" {
            let mut b = serde_json::Map::new();
            for (k, v) in &extra {
                b.insert(k.clone(), json!(v));
            }
            b.insert("kiln-probe".into(), json!(1));
            (path.clone(), Some(Value::Object(b).to_string()))
        } else {
            let mut q: Vec<(String, String)> = extra.into_iter().collect();
            q.push(("kiln-probe".into(), "1".into()));
            (
                format!("{path}?{}", serde_urlencoded::to_string(&q).unwrap()),
                None,
            )
        };
        for p in &principals {
            probes += 1;
            let allowed = p.allowed(check, &params);
            let (code, res) = p.api.request(method, &url, body.as_deref()).await;
            let verdict = match (allowed, code) {
                (true, 401 | 403) => Some("refused, but the model allows it"),
                (true, 200..=299) if mutating => Some("acted on a probe with an unknown parameter"),
                (false, 401) if p.userid.is_none() => None,
                (false, 403) if p.userid.is_some() => None,
                (false, _) => Some("allowed, but the model refuses it"),
                _ => None,
            };
            if let Some(v) = verdict {
                failures.push(format!(
                    "{method} {template} as {}: {v} ({code} {res})",
                    p.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {probes} probes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn guessing_a_token_secret_is_throttled_like_a_password() {
    let (c, root) = cluster_with_node().await;
    add_user(&root, "ops@kiln").await;
    grant(&root, "/", "ops@kiln", "PVEAuditor").await;
    let ops = c.login_as("ops@kiln", PASSWORD).await;
    let t = ok(
        &ops,
        "POST",
        "/api2/json/access/users/ops@kiln/token/t",
        json!({"privsep": 0}),
    )
    .await;
    let secret = t["value"].as_str().unwrap();
    let good = c.token_api("ops@kiln!t", secret);
    assert_eq!(good.get("/api2/json/nodes").await.0, 200);
    let guess = c.token_api("ops@kiln!t", "00000000-0000-0000-0000-000000000000");
    for _ in 0..5 {
        assert_eq!(guess.get("/api2/json/nodes").await.0, 401);
    }
    // Now even the right secret waits: the guesser cannot tell when it found it.
    let (code, res) = good.get("/api2/json/nodes").await;
    assert_eq!(code, 429, "{res}");
    assert!(
        res.to_string()
            .contains("too many failed API token attempts"),
        "{res}"
    );
    // Other tokens of the same user are not blocked.
    let other = ok(
        &ops,
        "POST",
        "/api2/json/access/users/ops@kiln/token/u",
        json!({"privsep": 0}),
    )
    .await;
    let other_api = c.token_api("ops@kiln!u", other["value"].as_str().unwrap());
    assert_eq!(other_api.get("/api2/json/nodes").await.0, 200);
}
