//! Test harness: starts real `kiln-server` and `kiln-node` processes on loopback ports it
//! picks, and kills them (and deletes their data) when dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Password of `root@kiln` in every test cluster.
pub const ADMIN_PASSWORD: &str = "kiln-test-admin-pw";

/// Server settings a test may change.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub node_timeout_secs: u64,
    pub login_failure_delay_ms: u64,
    pub session_idle_secs: u64,
    pub session_max_secs: u64,
    pub memory_overcommit: f64,
    /// HA lease granted with each heartbeat (the heartbeat is 300 ms in tests).
    pub ha_lease_secs: u64,
    /// Margin on top of the lease before the server recovers a silent node's HA VMs.
    pub ha_lease_margin_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// `KILN_TEST_PAUSE` for the server (see server/src/failpoint.rs).
    pub pause: Option<String>,
    /// Seconds between two checks of the labs' schedules.
    pub lab_check_secs: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node_timeout_secs: 3,
            login_failure_delay_ms: 50,
            session_idle_secs: 600,
            session_max_secs: 3600,
            memory_overcommit: 1.0,
            ha_lease_secs: 3,
            ha_lease_margin_ms: 500,
            heartbeat_ms: 300,
            pause: None,
            lab_check_secs: 1,
        }
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn node_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_NODE_BIN") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/kiln-node");
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build -p kiln-node` (make test does)",
        p.display()
    );
    p
}

fn workspace_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The kiln-vmm binary and the test guest for node agents (built by `make test` first).
fn vm_env() -> Vec<(&'static str, PathBuf)> {
    let vmm = std::env::var("KILN_VMM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_path("target/debug/kiln-vmm"));
    let guest = std::env::var("KILN_TEST_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            workspace_path("target/guest/x86_64-unknown-none/release/kiln-test-guest")
        });
    vec![("KILN_VMM_BIN", vmm), ("KILN_TEST_GUEST", guest)]
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Spawn `kiln-server run` on `port` with its data under `dir`.
fn spawn_server(dir: &Path, port: u16, opts: &ServerOptions) -> Proc {
    let server = Command::new(env!("CARGO_BIN_EXE_kiln-server"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .arg("--site-root")
        .arg(dir.join("no-site"))
        .args(["--heartbeat-ms", &opts.heartbeat_ms.to_string()])
        .args(["--node-timeout-secs", &opts.node_timeout_secs.to_string()])
        .args([
            "--login-failure-delay-ms",
            &opts.login_failure_delay_ms.to_string(),
        ])
        .args(["--session-idle-secs", &opts.session_idle_secs.to_string()])
        .args(["--session-max-secs", &opts.session_max_secs.to_string()])
        .args(["--memory-overcommit", &opts.memory_overcommit.to_string()])
        .args(["--ha-lease-secs", &opts.ha_lease_secs.to_string()])
        .args(["--ha-lease-margin-ms", &opts.ha_lease_margin_ms.to_string()])
        .args(["--lab-check-secs", &opts.lab_check_secs.to_string()])
        .env("KILN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .envs(opts.pause.iter().map(|p| ("KILN_TEST_PAUSE", p)))
        .stdout(log_file(dir, "server-out"))
        .stderr(append_log(dir, "server"))
        .spawn()
        .expect("spawn kiln-server");
    Proc(server)
}

/// Wait until the server under `dir` listens on `port`.
async fn wait_for_server(dir: &Path, port: u16) {
    let ca_path = dir.join("server/pki/ca.crt");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ca_path.exists()
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kiln-server did not start; see {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append_log(dir: &Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A running test cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub base: String,
    server: Mutex<Option<Proc>>,
    port: u16,
    opts: ServerOptions,
    nodes: Mutex<HashMap<String, (Option<Proc>, PathBuf)>>,
    ca_pem: String,
}

impl Cluster {
    /// Start a server and wait until it answers.
    pub async fn start(opts: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = spawn_server(dir.path(), port, &opts);
        let base = format!("https://127.0.0.1:{port}");
        let ca_path = dir.path().join("server/pki/ca.crt");
        wait_for_server(dir.path(), port).await;
        let ca_pem = std::fs::read_to_string(&ca_path).expect("ca.crt");
        Cluster {
            dir,
            base,
            server: Mutex::new(Some(server)),
            port,
            opts,
            nodes: Mutex::default(),
            ca_pem,
        }
    }

    /// The cluster's directory (server and node data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL the server.
    pub fn kill_server(&self) {
        *self.server.lock().expect("lock") = None;
    }

    /// Start the server again (same data, port and options) and wait until it answers.
    pub async fn restart_server(&self) {
        let server = spawn_server(self.dir.path(), self.port, &self.opts);
        *self.server.lock().expect("lock") = Some(server);
        wait_for_server(self.dir.path(), self.port).await;
    }

    /// The process id of a node's agent.
    pub fn node_pid(&self, name: &str) -> u32 {
        let nodes = self.nodes.lock().expect("lock");
        nodes
            .get(name)
            .and_then(|(p, _)| p.as_ref())
            .map(|p| p.0.id())
            .expect("a running agent")
    }

    /// Send `signal` (e.g. "STOP", "CONT", "KILL") to process `pid` (one this test started).
    pub fn signal(pid: u32, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The log of the server (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"),
            )
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// A fresh join token from `kiln-server join-token`.
    pub fn join_token(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln-server"))
            .arg("join-token")
            .arg("--data-dir")
            .arg(self.dir.path().join("server"))
            .output()
            .expect("kiln-server join-token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    }

    /// Run `kiln-node join` for `name`; `Err` holds its error output.
    pub async fn join_with_token(&self, name: &str, token: &str) -> Result<(), String> {
        let data = self.dir.path().join(name);
        let listen = format!("127.0.0.1:{}", free_port());
        let out = tokio::process::Command::new(node_bin())
            .args([
                "join", &self.base, token, "--name", name, "--listen", &listen,
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .await
            .expect("kiln-node join");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        self.nodes
            .lock()
            .expect("lock")
            .insert(name.to_owned(), (None, data));
        Ok(())
    }

    /// Join a node whose API the server reaches only through a TCP relay the test can cut
    /// (a network partition between server and node: both stay alive), and start its agent.
    pub async fn add_node_behind_relay(&self, name: &str) -> Relay {
        let node_port = free_port();
        let relay = Relay::start(node_port).await;
        let data = self.dir.path().join(name);
        let out = tokio::process::Command::new(node_bin())
            .args([
                "join",
                &self.base,
                &self.join_token(),
                "--name",
                name,
                "--listen",
                &format!("127.0.0.1:{node_port}"),
                "--advertise",
                &format!("https://127.0.0.1:{}", relay.port),
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .await
            .expect("kiln-node join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.nodes
            .lock()
            .expect("lock")
            .insert(name.to_owned(), (None, data));
        self.restart_node(name);
        relay
    }

    /// Join a node and start its agent.
    pub async fn add_node(&self, name: &str) {
        let token = self.join_token();
        self.join_with_token(name, &token).await.expect("join");
        self.restart_node(name);
    }

    /// Start (again) the agent of a joined node.
    pub fn restart_node(&self, name: &str) {
        let mut nodes = self.nodes.lock().expect("lock");
        let entry = nodes.get_mut(name).expect("joined node");
        // The host's "boot id" of this node, which a test may change to fake a host boot.
        let boot_id = entry.1.join("boot_id");
        if !boot_id.exists() {
            std::fs::write(&boot_id, format!("{name}-boot-1\n")).expect("boot_id");
        }
        let child = Command::new(node_bin())
            .arg("run")
            .arg("--data-dir")
            .arg(&entry.1)
            .arg("--boot-id-file")
            .arg(&boot_id)
            .envs(vm_env())
            .stdout(Stdio::null())
            .stderr(append_log(self.dir.path(), name))
            .spawn()
            .expect("spawn kiln-node");
        entry.0 = Some(Proc(child));
    }

    /// Make node `name` report a new host boot id, as after a reboot of its host.
    pub fn new_boot_id(&self, name: &str, boot_id: &str) {
        let nodes = self.nodes.lock().expect("lock");
        let data = &nodes.get(name).expect("joined node").1;
        std::fs::write(data.join("boot_id"), format!("{boot_id}\n")).expect("boot_id");
    }

    /// The directory of VM `vmid` on node `name`.
    fn vm_dir(&self, name: &str, vmid: u32) -> PathBuf {
        let nodes = self.nodes.lock().expect("lock");
        nodes
            .get(name)
            .expect("joined node")
            .1
            .join("vms")
            .join(vmid.to_string())
    }

    /// Whether a kiln-vmm process for VM `vmid` lives on node `name` (read from the process
    /// table, not from any agent or the server: what really runs).
    pub async fn node_reports_running(&self, name: &str, vmid: u32) -> bool {
        let dir = self.vm_dir(name, vmid);
        let needle = dir.to_string_lossy().into_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .any(|e| {
                    let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                    let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                    let zombie = stat
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    !zombie && cmdline.contains("kiln-vmm") && cmdline.contains(&needle)
                })
        })
        .await
        .expect("scan /proc")
    }

    /// Type `command` on the test guest's console of VM `vmid` on node `name` (through the
    /// VM's control socket) and return what it printed before the next prompt.
    /// Whether the kiln-vmm of VM `vmid` on node `name` runs its vCPUs (not paused, not
    /// stopped), asked of it directly.
    pub async fn vmm_runs_guest(&self, name: &str, vmid: u32) -> bool {
        let socket = self.vm_dir(name, vmid).join("control.sock");
        tokio::task::spawn_blocking(move || {
            let mut client = kiln_vmm::control::client::ControlClient::connect(&socket).ok()?;
            client.set_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(client.status().ok()?.state == kiln_vmm::protocol::VmState::Running)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    }

    /// The phase of VM `vmid`'s current or last migration on node `name`, asked of its
    /// kiln-vmm directly (`None`: no kiln-vmm or no migration).
    pub async fn vmm_migration_phase(&self, name: &str, vmid: u32) -> Option<String> {
        let socket = self.vm_dir(name, vmid).join("control.sock");
        tokio::task::spawn_blocking(move || {
            let mut client = kiln_vmm::control::client::ControlClient::connect(&socket).ok()?;
            client.set_timeout(Some(Duration::from_secs(5))).ok()?;
            let status = client.migrate_status(false).ok()?;
            Some(format!("{:?}", status.phase))
        })
        .await
        .ok()
        .flatten()
    }

    pub async fn guest_command(&self, name: &str, vmid: u32, command: &str) -> String {
        use std::io::{Read, Write};
        let socket = self.vm_dir(name, vmid).join("control.sock");
        let command = command.to_owned();
        tokio::task::spawn_blocking(move || {
            let client =
                kiln_vmm::control::client::ControlClient::connect(&socket).expect("control socket");
            client
                .set_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            // With the scroll-back: a guest still booting has not shown its prompt yet, and
            // what is typed before it reads its serial port is lost. A migrated guest has no
            // scroll-back here: an empty line brings up its prompt.
            let mut console = client.attach_console(true).expect("console");
            console
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut typed_at = None;
            let mut nudged = Instant::now();
            loop {
                let text = String::from_utf8_lossy(&seen).into_owned();
                match typed_at {
                    None if text.contains("kiln> ") => {
                        console
                            .write_all(format!("{command}\r").as_bytes())
                            .expect("type");
                        typed_at = Some(text.len());
                    }
                    Some(at) => {
                        let after = &text[at.min(text.len())..];
                        if let Some(echo) = after.find(&command) {
                            if after[echo..].contains("kiln> ") {
                                return after.to_owned();
                            }
                        }
                    }
                    None => {
                        if nudged.elapsed() > Duration::from_secs(1) {
                            console.write_all(b"\r").expect("type");
                            nudged = Instant::now();
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no prompt after {command:?}: {text}"
                );
                match console.read(&mut buf) {
                    Ok(0) => panic!("console closed: {text}"),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
        })
        .await
        .expect("console")
    }

    /// SIGKILL a node's agent.
    pub fn kill_node(&self, name: &str) {
        let mut nodes = self.nodes.lock().expect("lock");
        nodes.get_mut(name).expect("joined node").0 = None;
    }

    /// Try a login; status and body.
    pub async fn try_login(&self, user: &str, password: &str) -> (u16, Value) {
        let res = self
            .client()
            .post(format!("{}/api2/json/access/ticket", self.base))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request");
        let code = res.status().as_u16();
        (code, res.json().await.unwrap_or(Value::Null))
    }

    /// Log in as root@kiln.
    pub async fn login(&self) -> Api {
        self.login_as("root@kiln", ADMIN_PASSWORD).await
    }

    /// Log in as `user`.
    pub async fn login_as(&self, user: &str, password: &str) -> Api {
        let (code, body) = self.try_login(user, password).await;
        assert_eq!(code, 200, "login of {user} failed: {body}");
        Api {
            client: self.client(),
            base: self.base.clone(),
            ticket: body["data"]["ticket"].as_str().expect("ticket").to_owned(),
            csrf: body["data"]["CSRFPreventionToken"]
                .as_str()
                .expect("csrf")
                .to_owned(),
            token: None,
        }
    }

    /// A client authenticating with API token `full_id` (`user@kiln!name`) and `secret`.
    pub fn token_api(&self, full_id: &str, secret: &str) -> Api {
        Api {
            client: self.client(),
            base: self.base.clone(),
            ticket: String::new(),
            csrf: String::new(),
            token: Some(format!("PVEAPIToken={full_id}={secret}")),
        }
    }

    /// A client using an existing ticket and CSRF token.
    pub fn session_api(&self, ticket: &str, csrf: &str) -> Api {
        Api {
            client: self.client(),
            base: self.base.clone(),
            ticket: ticket.to_owned(),
            csrf: csrf.to_owned(),
            token: None,
        }
    }

    /// A client without any credentials.
    pub fn anonymous(&self) -> Api {
        Api {
            client: self.client(),
            base: self.base.clone(),
            ticket: String::new(),
            csrf: String::new(),
            token: None,
        }
    }

    /// The route table from `kiln-server routes`.
    pub fn routes(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln-server"))
            .arg("routes")
            .output()
            .expect("kiln-server routes");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("route table JSON")
    }

    /// GET without any session.
    pub async fn anonymous_get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(self.dir.path());
        }
        // VMs outlive their node agent by design: end every kiln-vmm this cluster started
        // (their command lines name sockets under the cluster's directory).
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.dir.path())
            .status();
    }
}

/// Print the end of every log of a failed test's cluster to stderr (CI keeps nothing else).
fn dump_logs(dir: &Path) {
    fn find(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() && depth > 0 {
                find(&path, depth - 1, out);
            } else if path.extension().is_some_and(|e| e == "log") {
                out.push(path);
            }
        }
    }
    let mut logs = Vec::new();
    find(dir, 5, &mut logs);
    logs.sort();
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        eprintln!("----- {} (last {} lines) -----", path.display(), tail.len());
        for line in tail {
            eprintln!("{line}");
        }
    }
}

/// An authenticated API client (cookie `PVEAuthCookie` + CSRF header, as Proxmox clients do).
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub ticket: String,
    pub csrf: String,
    /// `Authorization` header value for API-token clients.
    pub token: Option<String>,
}

impl Api {
    fn authenticated(
        &self,
        req: reqwest::RequestBuilder,
        csrf: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match &self.token {
            Some(header) => req.header("Authorization", header),
            None if self.ticket.is_empty() => req,
            None => {
                let req = req.header("Cookie", format!("PVEAuthCookie={}", self.ticket));
                match csrf {
                    Some(c) => req.header("CSRFPreventionToken", c),
                    None => req,
                }
            }
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, csrf: Option<&str>) -> (u16, Value) {
        let res = self.authenticated(req, csrf).send().await.expect("request");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Any request; the body is read only when it is JSON (not an event stream).
    pub async fn request(&self, method: &str, path: &str, json: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = json {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let csrf = self.csrf.clone();
        let res = self
            .authenticated(req, Some(&csrf))
            .send()
            .await
            .expect("request");
        let code = res.status().as_u16();
        let is_json = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        let body = if is_json {
            res.json().await.unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        (code, body)
    }

    pub async fn put(&self, path: &str, json: &str) -> (u16, Value) {
        self.request("PUT", path, Some(json)).await
    }

    /// A GET whose body is read by the caller (e.g. an event stream).
    pub async fn open(&self, path: &str) -> reqwest::Response {
        self.authenticated(self.client.get(format!("{}{path}", self.base)), None)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)), None)
            .await
    }

    pub async fn post(&self, path: &str, json: &str) -> (u16, Value) {
        let csrf = self.csrf.clone();
        self.post_raw(path, Some(&csrf), json).await
    }

    pub async fn post_raw(&self, path: &str, csrf: Option<&str>, json: &str) -> (u16, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(json.to_owned());
        self.send(req, csrf).await
    }

    /// POST raw bytes with a content type (e.g. a `text/csv` upload).
    pub async fn post_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body);
        let csrf = self.csrf.clone();
        self.send(req, Some(&csrf)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(
            self.client.delete(format!("{}{path}", self.base)),
            Some(&self.csrf),
        )
        .await
    }

    /// Poll a task until it stops; returns its exit status.
    pub async fn wait_task(&self, node: &str, upid: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (code, body) = self
                .get(&format!("/api2/json/nodes/{node}/tasks/{upid}/status"))
                .await;
            assert_eq!(code, 200, "{body}");
            if body["data"]["status"] == "stopped" {
                return body["data"]["exitstatus"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "task {upid} still running: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run a VM action or creation that answers a UPID, and wait for the task to succeed.
    pub async fn task_ok(&self, node: &str, path: &str, json: &str) {
        let (code, body) = self.post(path, json).await;
        assert_eq!(code, 200, "{path}: {body}");
        let upid = body["data"].as_str().expect("upid");
        let exit = self.wait_task(node, upid, Duration::from_secs(30)).await;
        assert_eq!(exit, "OK", "{path}: task failed");
    }

    /// Poll a VM's status until it is `state` (`running`, `paused`, `stopped`).
    pub async fn wait_vm(&self, node: &str, vmid: u32, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, body) = self
                .get(&format!(
                    "/api2/json/nodes/{node}/qemu/{vmid}/status/current"
                ))
                .await;
            assert_eq!(code, 200, "{body}");
            // A VM still starting is reported running without a pid yet: wait for the pid.
            let settled = state != "running" || body["data"]["pid"].is_u64();
            if body["data"]["qmpstatus"] == state && settled {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "VM {vmid} not {state}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll `/nodes` until all `names` are online; returns the list.
    pub async fn wait_for_nodes_online(&self, names: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, body) = self.get("/api2/json/nodes").await;
            assert_eq!(code, 200, "{body}");
            let list = body["data"].clone();
            let online = names.iter().all(|n| {
                list.as_array()
                    .is_some_and(|a| a.iter().any(|e| e["node"] == *n && e["status"] == "online"))
            });
            if online {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "nodes {names:?} not online: {list}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll until `node` has `state` in `/nodes`.
    pub async fn wait_for_node_state(&self, node: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let body = self.get("/api2/json/nodes").await.1;
            if body["data"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["node"] == node && e["status"] == state))
            {
                return;
            }
            assert!(Instant::now() < deadline, "{node} not {state}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A TCP relay from a port of its own to a node's API port. `cut()` drops every connection
/// and blackholes new ones (accepted, never answered), as a lost network would;
/// `restore()` relays again.
pub struct Relay {
    pub port: u16,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay listener");
        let port = listener.local_addr().expect("relay addr").port();
        let cut = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let cut2 = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    if *cut_rx.borrow() {
                        // Blackhole: hold the connection, never answer.
                        let _ = cut_rx.wait_for(|c| !*c).await;
                        return;
                    }
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { port, cut, task }
    }

    /// Cut the network between server and node.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Let traffic through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
