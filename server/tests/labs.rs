//! Integration tests of teaching labs (`/api2/kiln/labs...`) on a real server and node agent
//! with real `kiln-vmm` processes: deploying one VM per student into per-student pools with
//! the right permissions, re-deploying, isolation between students, the lab's end stopping the
//! VMs (the schedule is checked every second here), reset and teardown, quotas, and rosters
//! with mistakes reported line by line and nothing created.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Api, Cluster, ServerOptions};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);
const PASSWORD: &str = "teacher-pw-1";
const ROSTER: &str = "username,email,firstname,lastname\nada,ada@example.org,Ada,Lovelace\nbob,bob@example.org,Bob,Kahn\ncarol,carol@example.org,Carol,Shaw\n";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn ok(api: &Api, method: &str, path: &str, body: Value) -> Value {
    let (code, res) = api.request(method, path, Some(&body.to_string())).await;
    assert_eq!(code, 200, "{method} {path} {body}: {res}");
    res["data"].clone()
}

fn message(res: &Value) -> String {
    res["message"].as_str().unwrap_or_default().to_owned()
}

/// A cluster with node n1, template VM 100 (64 MiB), and teacher@kiln holding
/// KilnLabInstructor on pool `lab1` (created with `quota`) and PVETemplateUser on the template.
async fn setup(quota: Value) -> (Cluster, Api, Api) {
    let c = Cluster::start(ServerOptions::default()).await;
    c.add_node("n1").await;
    let root = c.login().await;
    root.wait_for_nodes_online(&["n1"], LONG).await;
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "name": "tpl", "memory": 64}"#,
    )
    .await;
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/100/template", "{}")
        .await;
    let mut pool = json!({"poolid": "lab1"});
    pool.as_object_mut()
        .unwrap()
        .extend(quota.as_object().unwrap().clone());
    ok(&root, "POST", "/api2/json/pools", pool).await;
    ok(
        &root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": "teacher@kiln", "password": PASSWORD}),
    )
    .await;
    for (path, role) in [
        ("/pool/lab1", "KilnLabInstructor"),
        ("/vms/100", "PVETemplateUser"),
    ] {
        ok(
            &root,
            "PUT",
            "/api2/json/access/acl",
            json!({"path": path, "roles": role, "users": "teacher@kiln"}),
        )
        .await;
    }
    let teacher = c.login_as("teacher@kiln", PASSWORD).await;
    (c, root, teacher)
}

/// Create lab `lab1` from the 3-student roster; the accounts by user id.
async fn create_lab(teacher: &Api, extra: Value) -> Vec<(String, String)> {
    let mut body = json!({
        "labid": "lab1",
        "template": 100,
        "csv": ROSTER,
        "max-vcpus": 1,
        "max-memory": 64,
        "end": now() + 3600,
        "comment": "networks 101",
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let created = ok(teacher, "POST", "/api2/kiln/labs", body).await;
    created["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["userid"].as_str().unwrap().to_owned(),
                a["password"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn run_task(api: &Api, path: &str, body: &str) -> (String, String) {
    let (code, res) = api.post(path, body).await;
    assert_eq!(code, 200, "{path}: {res}");
    let upid = res["data"].as_str().unwrap().to_owned();
    let node = upid.split(':').nth(1).unwrap().to_owned();
    let exit = api.wait_task(&node, &upid, Duration::from_secs(60)).await;
    let log = api
        .get(&format!(
            "/api2/json/nodes/{node}/tasks/{upid}/log?limit=500"
        ))
        .await
        .1;
    let text = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    (exit, text)
}

/// The lab's members: user id → (vmid, pool, status).
async fn members(api: &Api, labid: &str) -> Vec<Value> {
    let detail = api.get(&format!("/api2/kiln/labs/{labid}")).await;
    assert_eq!(detail.0, 200, "{}", detail.1);
    detail.1["data"]["members"].as_array().unwrap().clone()
}

fn vmid_of(members: &[Value], userid: &str) -> u32 {
    members
        .iter()
        .find(|m| m["userid"] == userid)
        .and_then(|m| m["vmid"].as_u64())
        .unwrap_or_else(|| panic!("{userid} has no VM: {members:?}")) as u32
}

async fn wait_status(api: &Api, labid: &str, userid: &str, status: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let m = members(api, labid).await;
        if m.iter()
            .any(|m| m["userid"] == userid && m["status"] == status)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{userid} not {status}: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_lab_gives_each_student_a_vm_of_their_own_and_redeploy_adds_only_the_missing() {
    let (c, root, teacher) = setup(json!({"max-vms": 10})).await;
    let accounts = create_lab(&teacher, json!({})).await;
    let ids: Vec<&str> = accounts.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(ids, ["ada@kiln", "bob@kiln", "carol@kiln"]);
    assert!(accounts.iter().all(|(_, pw)| pw.len() == 12));

    // Deploy: one task, a line and a VM per student, each in a pool of their own.
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    for u in &ids {
        assert!(log.contains(&format!("{u}: VM ")), "{log}");
    }
    let m = members(&teacher, "lab1").await;
    assert_eq!(m.len(), 3, "{m:?}");
    let vms: BTreeSet<u32> = ids.iter().map(|u| vmid_of(&m, u)).collect();
    assert_eq!(vms.len(), 3);
    for member in &m {
        let name = member["userid"]
            .as_str()
            .unwrap()
            .split('@')
            .next()
            .unwrap();
        assert_eq!(member["pool"], format!("lab1-{name}"), "{member}");
        assert_eq!(member["status"], "stopped", "{member}");
    }
    // The pools: children of the lab's pool with the per-student quota.
    let pools = root.get("/api2/json/pools").await.1;
    for name in ["ada", "bob", "carol"] {
        let p = pools["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["poolid"] == format!("lab1-{name}"))
            .unwrap_or_else(|| panic!("no pool lab1-{name}: {pools}"));
        assert_eq!(
            (
                &p["parent"],
                &p["max-vcpus"],
                &p["max-memory"],
                &p["usage"]["vms"]
            ),
            (&json!("lab1"), &json!(1), &json!(64), &json!(1)),
            "{p}"
        );
    }
    let lab_pool = root.get("/api2/json/pools/lab1").await.1;
    assert_eq!(lab_pool["data"]["usage"]["vms"], 3, "{lab_pool}");
    // The ACL: each student holds KilnLabStudent on their own VM, and nothing else.
    let acl = root.get("/api2/json/access/acl").await.1;
    let student_entries: BTreeSet<(String, String)> = acl["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["roleid"] == "KilnLabStudent")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["ugid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ids
        .iter()
        .map(|u| (format!("/vms/{}", vmid_of(&m, u)), (*u).to_owned()))
        .collect();
    assert_eq!(student_entries, expected);

    // Students log in with their one-time passwords and see only their own VM and entry.
    let pw = |u: &str| accounts.iter().find(|(id, _)| id == u).unwrap().1.clone();
    let ada = c.login_as("ada@kiln", &pw("ada@kiln")).await;
    let bob = c.login_as("bob@kiln", &pw("bob@kiln")).await;
    // A one-time password must be replaced before anything else.
    let (code, refused) = ada.get("/api2/json/cluster/resources").await;
    assert_eq!(code, 403, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("must change the password"),
        "{refused}"
    );
    replace_password(&ada, "ada@kiln", &pw("ada@kiln")).await;
    replace_password(&bob, "bob@kiln", &pw("bob@kiln")).await;
    let (ada_vm, bob_vm) = (vmid_of(&m, "ada@kiln"), vmid_of(&m, "bob@kiln"));
    let seen = ada.get("/api2/json/cluster/resources").await.1;
    let ids_seen: Vec<&str> = seen["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids_seen,
        [format!("qemu/{ada_vm}")],
        "no nodes, no other VM"
    );
    let labs = ada.get("/api2/kiln/labs").await.1;
    assert_eq!(labs["data"][0]["labid"], "lab1", "{labs}");
    assert_eq!(labs["data"][0]["role"], "student");
    let mine = members(&ada, "lab1").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["userid"], "ada@kiln");
    // Isolation: every door to bob's VM is closed to ada, as are the lab's actions.
    for (method, path, body) in [
        (
            "GET",
            format!("/api2/json/nodes/n1/qemu/{bob_vm}/status/current"),
            None,
        ),
        (
            "GET",
            format!("/api2/json/nodes/n1/qemu/{bob_vm}/config"),
            None,
        ),
        (
            "POST",
            format!("/api2/json/nodes/n1/qemu/{bob_vm}/status/start"),
            Some("{}"),
        ),
        (
            "GET",
            format!("/api2/kiln/nodes/n1/qemu/{bob_vm}/console"),
            None,
        ),
        ("DELETE", format!("/api2/json/nodes/n1/qemu/{ada_vm}"), None),
        (
            "POST",
            "/api2/kiln/labs/lab1/reset".into(),
            Some(r#"{"userid": "bob@kiln"}"#),
        ),
        ("POST", "/api2/kiln/labs/lab1/deploy".into(), Some("{}")),
        (
            "POST",
            "/api2/kiln/labs/lab1/status/stop".into(),
            Some("{}"),
        ),
        (
            "PUT",
            "/api2/kiln/labs/lab1".into(),
            Some(r#"{"comment": "mine"}"#),
        ),
        ("DELETE", "/api2/kiln/labs/lab1".into(), None),
        ("GET", "/api2/json/pools/lab1-bob".into(), None),
    ] {
        let (code, res) = ada.request(method, &path, body).await;
        assert_eq!(code, 403, "{method} {path}: {res}");
    }
    // Ada runs her own VM.
    let (code, res) = ada
        .post(
            &format!("/api2/json/nodes/n1/qemu/{ada_vm}/status/start"),
            "{}",
        )
        .await;
    assert_eq!(code, 200, "{res}");
    ada.wait_vm("n1", ada_vm, "running", LONG).await;
    assert!(c.node_reports_running("n1", ada_vm).await);
    let (code, _) = bob
        .get(&format!("/api2/json/nodes/n1/qemu/{ada_vm}/status/current"))
        .await;
    assert_eq!(code, 403);

    // A new student joins by CSV (as text/csv), and a second deployment adds only them.
    let (code, res) = teacher
        .post_bytes(
            "/api2/kiln/labs/lab1/students",
            "text/csv",
            b"email\ndave@example.org\n".to_vec(),
        )
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["data"]["accounts"][0]["userid"], "dave@kiln");
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    assert!(
        log.contains("for 1 student(s)") && log.contains("3 of 4 have a VM already"),
        "{log}"
    );
    let m2 = members(&teacher, "lab1").await;
    assert_eq!(m2.len(), 4);
    for u in &ids {
        assert_eq!(vmid_of(&m2, u), vmid_of(&m, u), "{u} kept its VM");
    }
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert_eq!(exit, "OK");
    assert!(log.contains("nothing to do"), "{log}");
    let all = root.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        5,
        "template + 4: {all}"
    );

    // Ada resets her VM: stopped, a fresh clone again, still hers.
    let (exit, log) = run_task(&ada, "/api2/kiln/labs/lab1/reset", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    assert!(
        log.contains(&format!("VM {ada_vm} is a fresh clone of VM 100 again")),
        "{log}"
    );
    ada.wait_vm("n1", ada_vm, "stopped", LONG).await;
    assert!(!c.node_reports_running("n1", ada_vm).await);
    let config = ada
        .get(&format!("/api2/json/nodes/n1/qemu/{ada_vm}/config"))
        .await
        .1;
    assert_eq!(config["data"]["name"], "lab1-ada", "{config}");

    // The instructor starts and stops everything.
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/status/start", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    for u in ["ada@kiln", "bob@kiln", "carol@kiln", "dave@kiln"] {
        wait_status(&teacher, "lab1", u, "running", LONG).await;
    }
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/status/stop", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    for u in ["ada@kiln", "bob@kiln"] {
        wait_status(&teacher, "lab1", u, "stopped", LONG).await;
    }

    // Tear down: the VMs and student pools go, the lab pool and the accounts stay.
    let (code, res) = teacher.delete("/api2/kiln/labs/lab1").await;
    assert_eq!(code, 200, "{res}");
    let exit = teacher
        .wait_task("n1", res["data"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(exit, "OK");
    let all = root.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        1,
        "only the template: {all}"
    );
    let pools = root.get("/api2/json/pools").await.1;
    let left: Vec<&str> = pools["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["poolid"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["lab1"]);
    assert_eq!(root.get("/api2/kiln/labs").await.1["data"], json!([]));
    c.login_as("ada@kiln", NEW_PASSWORD).await;
}

/// What students replace their one-time passwords with.
const NEW_PASSWORD: &str = "my-own-password-1";

/// A student replaces its one-time password (its session is restricted until then).
async fn replace_password(api: &Api, userid: &str, old: &str) {
    let body = json!({"userid": userid, "password": NEW_PASSWORD, "confirmation-password": old});
    let (code, res) = api
        .put("/api2/json/access/password", &body.to_string())
        .await;
    assert_eq!(code, 200, "{res}");
}

#[tokio::test]
async fn the_lab_end_stops_the_vms_and_students_cannot_start_them_until_extended() {
    let (c, root, teacher) = setup(json!({})).await;
    // A group roster this time.
    ok(
        &root,
        "POST",
        "/api2/json/access/groups",
        json!({"groupid": "class1"}),
    )
    .await;
    for u in ["ada@kiln", "bob@kiln"] {
        ok(
            &root,
            "POST",
            "/api2/json/access/users",
            json!({"userid": u, "password": "student-pw-1", "groups": "class1"}),
        )
        .await;
    }
    // The teacher may use the group only once allowed to see it.
    let body = json!({"labid": "lab1", "template": 100, "group": "class1", "end": now() + 6});
    let (code, res) = teacher.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(code, 403, "{res}");
    ok(
        &root,
        "PUT",
        "/api2/json/access/acl",
        json!({"path": "/access/groups/class1", "roles": "PVEAuditor", "users": "teacher@kiln"}),
    )
    .await;
    let body = json!({"labid": "lab1", "template": 100, "group": "class1", "end": now() + 12});
    let created = ok(&teacher, "POST", "/api2/kiln/labs", body).await;
    assert_eq!(created["accounts"], json!([]));
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    let m = members(&teacher, "lab1").await;
    let ada_vm = vmid_of(&m, "ada@kiln");
    let ada = c.login_as("ada@kiln", "student-pw-1").await;
    ada.task_ok(
        "n1",
        &format!("/api2/json/nodes/n1/qemu/{ada_vm}/status/start"),
        "{}",
    )
    .await;
    ada.wait_vm("n1", ada_vm, "running", LONG).await;

    // The end comes: the schedule stops the VM (task labend) within a few seconds.
    ada.wait_vm("n1", ada_vm, "stopped", Duration::from_secs(25))
        .await;
    assert!(!c.node_reports_running("n1", ada_vm).await);
    let tasks = root.get("/api2/json/cluster/tasks").await.1;
    let end = tasks["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "labend")
        .unwrap_or_else(|| panic!("no labend task: {tasks}"));
    assert_eq!(
        (&end["id"], &end["user"]),
        (&json!("lab1"), &json!("root@kiln"))
    );
    let lab = ada.get("/api2/kiln/labs/lab1").await.1;
    assert_eq!(lab["data"]["state"], "ended", "{lab}");
    // Students cannot start it again; the instructor can, or extends the lab.
    let (code, res) = ada
        .post(
            &format!("/api2/json/nodes/n1/qemu/{ada_vm}/status/start"),
            "{}",
        )
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(
        message(&res).contains("lab lab1 ended at")
            && message(&res).contains("ask your instructor to extend it"),
        "{res}"
    );
    let (code, res) = ada.post("/api2/kiln/labs/lab1/reset", "{}").await;
    assert_eq!(code, 409, "{res}");
    ok(
        &teacher,
        "PUT",
        "/api2/kiln/labs/lab1",
        json!({"end": now() + 3600}),
    )
    .await;
    ada.task_ok(
        "n1",
        &format!("/api2/json/nodes/n1/qemu/{ada_vm}/status/start"),
        "{}",
    )
    .await;
    ada.wait_vm("n1", ada_vm, "running", LONG).await;
    // The extended lab does not end at the old time: still running a few checks later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ada.wait_vm("n1", ada_vm, "running", LONG).await;
    // "End now": the instructor moves the end to now.
    ok(
        &teacher,
        "PUT",
        "/api2/kiln/labs/lab1",
        json!({"end": now()}),
    )
    .await;
    ada.wait_vm("n1", ada_vm, "stopped", Duration::from_secs(25))
        .await;
    // A template in use by a lab cannot be removed.
    let (code, res) = root.delete("/api2/json/nodes/n1/qemu/100").await;
    assert_eq!(code, 409, "{res}");
    assert!(message(&res).contains("template of lab(s) lab1"), "{res}");
}

#[tokio::test]
async fn the_lab_pool_quota_bounds_a_deployment_and_a_failed_student_leaves_nothing_behind() {
    let (c, root, teacher) = setup(json!({"max-vms": 2, "max-vcpus": 1})).await;
    create_lab(&teacher, json!({})).await;
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert!(
        exit.starts_with("2 of 3 student VM(s) deployed; "),
        "{exit}\n{log}"
    );
    assert!(
        exit.contains("pool lab1: it holds 2 of at most 2 VMs"),
        "{exit}"
    );
    let m = members(&teacher, "lab1").await;
    let failed: Vec<&Value> = m.iter().filter(|s| s["vmid"].is_null()).collect();
    assert_eq!(failed.len(), 1, "{m:?}");
    assert_eq!(failed[0]["status"], "missing");
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("at most 2 VMs"));
    // Nothing half-made: no VM and no pool for the student who failed.
    let name = failed[0]["userid"]
        .as_str()
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    let (code, _) = root.get(&format!("/api2/json/pools/lab1-{name}")).await;
    assert_eq!(code, 404, "the failed student's pool was removed");
    let all = root.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    // The lab pool's running limit covers the students' pools: one VM runs, not two.
    let (exit, _) = run_task(&teacher, "/api2/kiln/labs/lab1/status/start", "{}").await;
    assert!(exit.starts_with("could not start 1 of 2 VM(s)"), "{exit}");
    assert!(exit.contains("pool lab1: starting VM"), "{exit}");
    // Raising the lab pool's quota (root) lets a re-deployment finish the job.
    ok(&root, "PUT", "/api2/json/pools/lab1", json!({"max-vms": 3})).await;
    let (exit, log) = run_task(&teacher, "/api2/kiln/labs/lab1/deploy", "{}").await;
    assert_eq!(exit, "OK", "{log}");
    assert_eq!(
        members(&teacher, "lab1")
            .await
            .iter()
            .filter(|s| s["vmid"].is_u64())
            .count(),
        3
    );
    // The instructor's reach ends at the lab: another pool's lab is refused, and labs it does
    // not run look exactly like labs that do not exist.
    ok(
        &root,
        "POST",
        "/api2/json/pools",
        json!({"poolid": "other"}),
    )
    .await;
    let body =
        json!({"labid": "other", "template": 100, "csv": "username\nzed\n", "end": now() + 60});
    let (code, res) = teacher.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(
        (code, message(&res)),
        (
            403,
            "Permission check failed (/pool/other, Pool.Allocate)".into()
        )
    );
    ok(&root, "POST", "/api2/kiln/labs", body).await;
    let (code, hidden) = teacher.get("/api2/kiln/labs/other").await;
    let (code2, missing) = teacher.get("/api2/kiln/labs/nolab").await;
    assert_eq!((code, code2), (404, 404));
    assert_eq!(
        message(&hidden).replace("other", "X"),
        message(&missing).replace("nolab", "X")
    );
    let listed = teacher.get("/api2/kiln/labs").await.1;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    let (exit, _) = run_task(&teacher, "/api2/kiln/labs/lab1/status/stop", "{}").await;
    assert_eq!(exit, "OK");
    let _ = c;
}

#[tokio::test]
async fn rosters_with_mistakes_are_reported_line_by_line_and_create_nothing() {
    let (_c, root, teacher) = setup(json!({})).await;
    ok(
        &root,
        "POST",
        "/api2/json/access/users",
        json!({"userid": "taken@kiln", "password": "student-pw-1"}),
    )
    .await;
    let users_before = root.get("/api2/json/access/users").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    let bad = "username,email\nada,ada@example.org\nada,ada2@example.org\nbad name,x@example.org\ntaken,t@example.org\nonly-one-field\n";
    let body = json!({"labid": "lab1", "template": 100, "csv": bad, "end": now() + 600});
    let (code, res) = teacher.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(code, 400, "{res}");
    let lines: Vec<&str> = res["errors"]["csv"].as_str().unwrap().lines().collect();
    assert_eq!(lines.len(), 4, "{res}");
    assert!(
        lines[0].starts_with("line 3: user ada@kiln is already on line 2"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("line 4: 'bad name' is not a valid user name"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("line 5: user taken@kiln already exists"),
        "{lines:?}"
    );
    assert!(
        lines[3].starts_with("line 6: 1 field(s), but the first line names 2"),
        "{lines:?}"
    );
    let body = json!({"labid": "lab1", "template": 100, "csv": "username\nada\ntaken\n", "end": now() + 600});
    let (code, res) = teacher.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(code, 400, "{res}");
    assert!(
        res["errors"]["csv"]
            .as_str()
            .unwrap()
            .starts_with("line 3: user taken@kiln already exists"),
        "{res}"
    );
    let body = json!({"labid": "lab1", "template": 100, "csv": "firstname,lastname\nAda,Lovelace\n", "end": now() + 600});
    let (code, res) = teacher.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(code, 400);
    assert!(
        res["errors"]["csv"]
            .as_str()
            .unwrap()
            .starts_with("line 1: a 'username' or an 'email' column is missing"),
        "{res}"
    );
    // Nothing was created: no lab, no group, no account.
    assert_eq!(teacher.get("/api2/kiln/labs").await.1["data"], json!([]));
    let users_after = root.get("/api2/json/access/users").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(users_before, users_after);
    let groups = root.get("/api2/json/access/groups").await.1;
    assert_eq!(groups["data"], json!([]), "{groups}");

    // Other parameters, each with a message a person can act on.
    let t = now();
    let cases = [
        (
            json!({"template": 100, "csv": "username\nx\n", "end": t + 60, "labid": "a b"}),
            "labid",
            "invalid pool id",
        ),
        (
            json!({"template": 100, "csv": "username\nx\n", "end": t + 60, "labid": "x".repeat(33)}),
            "labid",
            "at most 32 characters",
        ),
        (
            json!({"labid": "lab1", "template": 999, "csv": "username\nx\n", "end": t + 60}),
            "template",
            "VM 999 does not exist",
        ),
        (
            json!({"labid": "lab1", "template": 100, "end": t + 60}),
            "group",
            "a lab needs a roster",
        ),
        (
            json!({"labid": "lab1", "template": 100, "group": "g", "csv": "username\nx\n", "end": t + 60}),
            "group",
            "not both",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "end": t - 60}),
            "end",
            "must come after the start",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "start": t - 600, "end": t - 60}),
            "end",
            "has passed already",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "end": t + 60, "max-memory": 32}),
            "max-memory",
            "no student could start a VM",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "end": t + 60, "node": "nowhere"}),
            "node",
            "'nowhere' does not exist",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "end": t + 60, "delete-after": 9999}),
            "delete-after",
            "at most 3650 days",
        ),
        (
            json!({"labid": "lab1", "template": 100, "csv": "username\nx\n", "end": t + 60, "teacher": "me"}),
            "teacher",
            "unknown field",
        ),
    ];
    for (body, param, text) in cases {
        let (code, res) = root.post("/api2/kiln/labs", &body.to_string()).await;
        assert_eq!(code, 400, "{body}: {res}");
        let msg = res["errors"][param].as_str().unwrap_or_default();
        assert!(
            msg.contains(text),
            "{body}: {param} should say '{text}': {res}"
        );
    }
    // A VM that is no template.
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 101, "memory": 64}"#,
    )
    .await;
    let body = json!({"labid": "lab1", "template": 101, "csv": "username\nx\n", "end": t + 60});
    let (code, res) = root.post("/api2/kiln/labs", &body.to_string()).await;
    assert_eq!(code, 400);
    assert!(res["errors"]["template"]
        .as_str()
        .unwrap()
        .contains("is not a template"));

    // Adding students to an existing lab: a file that is not UTF-8 is reported by line, and
    // nothing of it is created.
    create_lab(&teacher, json!({})).await;
    let users_before = root.get("/api2/json/access/users").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    let (code, res) = teacher
        .post_bytes(
            "/api2/kiln/labs/lab1/students",
            "text/csv",
            b"username,lastname\nerin,Smith\nfrank,M\xfcller\n".to_vec(),
        )
        .await;
    assert_eq!(code, 400, "{res}");
    assert_eq!(
        res["errors"]["csv"],
        "line 3: not valid UTF-8 (at byte 8 of the line); save the file as UTF-8"
    );
    let (code, res) = teacher
        .post_bytes(
            "/api2/kiln/labs/lab1/students",
            "application/octet-stream",
            b"username\nerin\n".to_vec(),
        )
        .await;
    assert_eq!(code, 400, "{res}");
    let users_after = root.get("/api2/json/access/users").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(users_before, users_after);
}
