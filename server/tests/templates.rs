//! Integration tests of templates and clones (`POST …/qemu/{vmid}/template`, `…/clone`) on a
//! real server and node agent with real `kiln-vmm` processes: the template rules, clones side
//! by side, the clone privileges and the pool quota on clones, and bad input.

#![allow(clippy::unwrap_used)] // assertions on JSON shapes

mod harness;

use std::time::Duration;

use harness::{Api, Cluster, ServerOptions};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);
const PASSWORD: &str = "teacher-pw-1";

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

/// A stopped template VM 100 (`tpl`, 64 MiB, described).
async fn make_template(root: &Api) {
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "name": "tpl", "memory": 64, "description": "lab base"}"#,
    )
    .await;
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/100/template", "{}")
        .await;
}

fn message(res: &Value) -> String {
    res["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_template_never_starts_and_its_clones_copy_its_configuration_and_run() {
    let (_c, root) = cluster_with_node().await;
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu",
        r#"{"vmid": 100, "name": "tpl", "memory": 64, "description": "lab base", "start": 1}"#,
    )
    .await;
    root.wait_vm("n1", 100, "running", LONG).await;
    // A running VM cannot become a template.
    let (code, res) = root
        .post("/api2/json/nodes/n1/qemu/100/template", "{}")
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(message(&res).contains("stop it first"), "{res}");
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/100/status/stop", "{}")
        .await;
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/100/template", "{}")
        .await;

    let config = root.get("/api2/json/nodes/n1/qemu/100/config").await.1;
    assert_eq!(config["data"]["template"], 1, "{config}");
    let resources = root.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(resources["data"][0]["template"], 1, "{resources}");
    let list = root.get("/api2/json/nodes/n1/qemu").await.1;
    assert_eq!(list["data"][0]["template"], 1, "{list}");

    // A template never starts, and stays a template.
    let (code, res) = root
        .post("/api2/json/nodes/n1/qemu/100/status/start", "{}")
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(
        message(&res).contains("VM 100 is a template and cannot be started; clone it"),
        "{res}"
    );
    let (code, res) = root
        .post("/api2/json/nodes/n1/qemu/100/template", "{}")
        .await;
    assert_eq!(
        (code, message(&res)),
        (409, "VM 100 is already a template".into())
    );
    // Nor can it be put under HA.
    let (code, res) = root
        .post("/api2/json/cluster/ha/resources", r#"{"sid": "vm:100"}"#)
        .await;
    assert_eq!(code, 400, "{res}");
    assert!(res["errors"]["sid"].as_str().unwrap().contains("template"));

    // A clone: the template's configuration, under its own id and name, no template.
    let (code, res) = root
        .post(
            "/api2/json/nodes/n1/qemu/100/clone",
            r#"{"newid": 101, "name": "student-1"}"#,
        )
        .await;
    assert_eq!(code, 200, "{res}");
    let upid = res["data"].as_str().unwrap();
    assert!(upid.contains(":qmclone:100:root@kiln:"), "{upid}");
    assert_eq!(root.wait_task("n1", upid, LONG).await, "OK");
    let log = root
        .get(&format!("/api2/json/nodes/n1/tasks/{upid}/log"))
        .await
        .1;
    assert!(
        log.to_string()
            .contains("cloning VM 100 (tpl) to VM 101 (student-1)"),
        "{log}"
    );
    let copy = root.get("/api2/json/nodes/n1/qemu/101/config").await.1["data"].clone();
    assert_eq!(
        (
            &copy["name"],
            &copy["memory"],
            &copy["cores"],
            &copy["description"]
        ),
        (
            &json!("student-1"),
            &json!(64),
            &json!(1),
            &json!("lab base")
        ),
        "{copy}"
    );
    assert!(copy.get("template").is_none(), "{copy}");
    // The clone runs the guest.
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/101/status/start", "{}")
        .await;
    root.wait_vm("n1", 101, "running", LONG).await;

    // Many clones of one template at once (a shared lock), one of them with Proxmox's default
    // name; a running VM can be cloned too (its configuration).
    let clones = [102, 103, 104].map(|id| {
        let root = &root;
        async move {
            let body = if id == 102 {
                json!({"newid": id})
            } else {
                json!({"newid": id, "name": format!("s{id}")})
            };
            root.post("/api2/json/nodes/n1/qemu/100/clone", &body.to_string())
                .await
        }
    });
    let [a, b, c] = clones;
    let (a, b, c) = tokio::join!(a, b, c);
    for (code, res) in [a, b, c] {
        assert_eq!(code, 200, "{res}");
        let exit = root
            .wait_task("n1", res["data"].as_str().unwrap(), LONG)
            .await;
        assert_eq!(exit, "OK");
    }
    let named = root.get("/api2/json/nodes/n1/qemu/102/config").await.1;
    assert_eq!(named["data"]["name"], "Copy-of-VM-tpl", "{named}");
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu/101/clone",
        r#"{"newid": 105, "name": "copy-of-running"}"#,
    )
    .await;
    root.wait_vm("n1", 105, "stopped", LONG).await;
    root.task_ok("n1", "/api2/json/nodes/n1/qemu/101/status/stop", "{}")
        .await;
}

#[tokio::test]
async fn clones_need_vm_clone_on_the_source_and_vm_allocate_on_the_target_and_fit_the_pool() {
    let (c, root) = cluster_with_node().await;
    make_template(&root).await;
    ok(
        &root,
        "POST",
        "/api2/json/pools",
        json!({"poolid": "lab", "max-vms": 2}),
    )
    .await;
    for user in ["teacher@kiln", "other@kiln"] {
        ok(
            &root,
            "POST",
            "/api2/json/access/users",
            json!({"userid": user, "password": PASSWORD}),
        )
        .await;
        ok(
            &root,
            "PUT",
            "/api2/json/access/acl",
            json!({"path": "/pool/lab", "roles": "PVEVMAdmin", "users": user}),
        )
        .await;
    }
    // The teacher may use the template; the other user may not.
    ok(
        &root,
        "PUT",
        "/api2/json/access/acl",
        json!({"path": "/vms/100", "roles": "PVETemplateUser", "users": "teacher@kiln"}),
    )
    .await;
    let teacher = c.login_as("teacher@kiln", PASSWORD).await;
    let other = c.login_as("other@kiln", PASSWORD).await;

    let (code, res) = other
        .post(
            "/api2/json/nodes/n1/qemu/100/clone",
            r#"{"newid": 101, "pool": "lab"}"#,
        )
        .await;
    assert_eq!(
        (code, message(&res)),
        (403, "Permission check failed (/vms/100, VM.Clone)".into())
    );
    // Outside the pool the teacher may not allocate.
    let (code, res) = teacher
        .post("/api2/json/nodes/n1/qemu/100/clone", r#"{"newid": 101}"#)
        .await;
    assert_eq!(
        (code, message(&res)),
        (
            403,
            "Permission check failed (/vms/101, VM.Allocate)".into()
        )
    );
    for id in [101, 102] {
        teacher
            .task_ok(
                "n1",
                "/api2/json/nodes/n1/qemu/100/clone",
                &json!({"newid": id, "pool": "lab", "name": format!("s{id}")}).to_string(),
            )
            .await;
    }
    // The pool is full: refused before any task starts, nothing is left behind.
    let (code, res) = teacher
        .post(
            "/api2/json/nodes/n1/qemu/100/clone",
            r#"{"newid": 103, "pool": "lab"}"#,
        )
        .await;
    assert_eq!(code, 409, "{res}");
    assert!(
        message(&res).starts_with("pool lab: it holds 2 of at most 2 VMs, so 1 more do not fit"),
        "{res}"
    );
    let (code, _) = root.get("/api2/json/nodes/n1/qemu/103/config").await;
    assert_eq!(code, 404, "a refused clone leaves no VM");
    let pool = root.get("/api2/json/pools/lab").await.1;
    assert_eq!(
        pool["data"]["members"].as_array().unwrap().len(),
        2,
        "{pool}"
    );
    // Clones in the pool are the teacher's to run (through the pool's roles).
    teacher
        .task_ok("n1", "/api2/json/nodes/n1/qemu/101/status/start", "{}")
        .await;
    teacher.wait_vm("n1", 101, "running", LONG).await;
    teacher
        .task_ok("n1", "/api2/json/nodes/n1/qemu/101/status/stop", "{}")
        .await;
}

#[tokio::test]
async fn clone_and_template_refuse_bad_input_with_actionable_messages() {
    let (_c, root) = cluster_with_node().await;
    make_template(&root).await;
    root.task_ok(
        "n1",
        "/api2/json/nodes/n1/qemu/100/clone",
        r#"{"newid": 101}"#,
    )
    .await;
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"newid": 101}"#, "newid", "VM 101 already exists"),
        (r#"{"newid": 100}"#, "newid", "an id of its own"),
        (r#"{"newid": 5}"#, "newid", "VM ids range from 100"),
        (r#"{}"#, "newid", "property is missing"),
        (r#"{"newid": 102, "name": "no spaces"}"#, "name", "DNS name"),
        (
            r#"{"newid": 102, "target": "nowhere"}"#,
            "target",
            "'nowhere' does not exist",
        ),
        (
            r#"{"newid": 102, "pool": "nopool"}"#,
            "pool",
            "pool 'nopool' does not exist",
        ),
        (r#"{"newid": 102, "full": 2}"#, "full", "must be 0 or 1"),
        (
            r#"{"newid": 102, "storage": "local"}"#,
            "storage",
            "unknown field",
        ),
    ];
    for (body, param, text) in cases {
        let (code, res) = root.post("/api2/json/nodes/n1/qemu/100/clone", body).await;
        assert_eq!(code, 400, "{body}: {res}");
        let msg = res["errors"][param].as_str().unwrap_or_default();
        assert!(
            msg.contains(text),
            "{body}: {param} should say '{text}': {res}"
        );
    }
    let (code, res) = root
        .post("/api2/json/nodes/n1/qemu/999/clone", r#"{"newid": 102}"#)
        .await;
    assert_eq!(code, 404, "{res}");
    let (code, res) = root
        .post("/api2/json/nodes/n1/qemu/101/template", r#"{"disk": "x"}"#)
        .await;
    assert_eq!(code, 400, "{res}");
    // Nothing of the refused clones exists.
    let all = root.get("/api2/json/cluster/resources?type=vm").await.1;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
}
