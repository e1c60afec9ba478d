//! A real test cluster for the benchmarks: one `kiln-server` and one `kiln-node` (release
//! binaries) on loopback ports picked here, data in a temporary directory. [`Cluster`] is the
//! guard: dropping it (also on error or Ctrl-C) kills the server, the agent and every process
//! whose command line names the cluster's directory (the `kiln-vmm`s the agent started and the
//! QEMUs the benchmark started), then deletes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use kiln_node_client::{ClusterIdentity, NodeClient};
use serde_json::Value;

/// Password of `root@kiln` in the bench cluster.
const ADMIN_PASSWORD: &str = "kiln-bench-admin-pw";
/// Name of the one node.
pub const NODE: &str = "n1";

/// Where the measured programs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kiln-server`.
    pub server: PathBuf,
    /// `kiln-node`.
    pub node: PathBuf,
    /// `kiln-vmm`.
    pub vmm: PathBuf,
    /// The Kiln test guest (PVH ELF), copied into the bench directory.
    pub guest: PathBuf,
}

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The bench's temporary directory; on drop, every process naming it is killed first.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    /// The directory's path, also after [`Scratch::keep`].
    path: PathBuf,
    children: Vec<Child>,
}

impl Scratch {
    /// A fresh directory under the system temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("kiln-bench-").tempdir()?;
        Ok(Scratch {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
            children: Vec::new(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory (for a look at the logs) instead of deleting it; the processes
    /// naming it are still killed on drop.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }

    fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Kill, by pid, every process whose command line contains this directory.
    pub fn kill_strays(&self) -> usize {
        let needle = self.path().to_string_lossy().into_owned();
        let me = std::process::id();
        let mut killed = 0;
        for pid in pids_whose_cmdline_contains(&needle) {
            if pid != me
                && Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                killed += 1;
            }
        }
        killed
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // kiln-vmm runs in its own process group and outlives its agent by design.
        for _ in 0..3 {
            if self.kill_strays() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Pids of the processes whose `/proc/<pid>/cmdline` contains `needle`.
pub fn pids_whose_cmdline_contains(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The running cluster.
pub struct Cluster {
    /// Base URL of the server, `https://127.0.0.1:<port>`.
    pub base: String,
    /// Server port.
    pub port: u16,
    /// The node agent's API URL.
    pub node_url: String,
    /// PEM of the cluster CA.
    pub ca_pem: String,
    /// Server data directory.
    pub server_dir: PathBuf,
    /// Node data directory.
    pub node_dir: PathBuf,
    /// Pid of the kiln-server process.
    pub server_pid: u32,
    /// Pid of the kiln-node process.
    pub node_pid: u32,
    /// Nodes added by [`Cluster::add_node`]: name and API URL.
    pub more_nodes: Vec<(String, String)>,
    /// Pid of every node's agent (the first node's too), by name.
    agents: Vec<(String, u32)>,
}

/// Join node `name` to the server (a fresh join token) and start its agent; its API URL and
/// pid. The agent is adopted by `scratch` (killed on drop).
async fn join_node(
    scratch: &mut Scratch,
    bins: &Binaries,
    server_dir: &Path,
    base: &str,
    name: &str,
) -> anyhow::Result<(String, u32)> {
    let root = scratch.path().to_path_buf();
    let token = Command::new(&bins.server)
        .arg("join-token")
        .arg("--data-dir")
        .arg(server_dir)
        .output()?;
    ensure!(
        token.status.success(),
        "kiln-server join-token: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)?.trim().to_owned();
    let node_dir = root.join(name);
    let node_port = free_port()?;
    let listen = format!("127.0.0.1:{node_port}");
    let join = Command::new(&bins.node)
        .args(["join", base, &token, "--name", name, "--listen", &listen])
        .arg("--data-dir")
        .arg(&node_dir)
        .output()?;
    ensure!(
        join.status.success(),
        "kiln-node join: {}",
        String::from_utf8_lossy(&join.stderr)
    );
    let pid = spawn_agent(scratch, bins, name)?;
    Ok((format!("https://{listen}"), pid))
}

/// Start `kiln-node run` for the joined node `name` (its data directory is `<scratch>/<name>`,
/// its log `<scratch>/<name>.log`, appended to); its pid. Adopted by `scratch`.
fn spawn_agent(scratch: &mut Scratch, bins: &Binaries, name: &str) -> anyhow::Result<u32> {
    let root = scratch.path().to_path_buf();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let node = Command::new(&bins.node)
        .arg("run")
        .arg("--data-dir")
        .arg(root.join(name))
        .env("KILN_VMM_BIN", &bins.vmm)
        .env("KILN_TEST_GUEST", &bins.guest)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {}", bins.node.display()))?;
    let pid = node.id();
    scratch.adopt(node);
    Ok(pid)
}

impl Cluster {
    /// Start the server, join one node and start its agent; wait until the node is online.
    pub async fn start(
        scratch: &mut Scratch,
        bins: &Binaries,
        heartbeat_ms: u64,
    ) -> anyhow::Result<(Self, Api)> {
        let root = scratch.path().to_path_buf();
        let port = free_port()?;
        let server_dir = root.join("server");
        let server = Command::new(&bins.server)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&server_dir)
            .arg("--site-root")
            .arg(root.join("no-site"))
            .args(["--heartbeat-ms", &heartbeat_ms.to_string()])
            .env("KILN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(log_file(&root, "server-out"))
            .stderr(log_file(&root, "server"))
            .spawn()
            .with_context(|| format!("cannot run {}", bins.server.display()))?;
        let server_pid = server.id();
        scratch.adopt(server);
        let ca_path = server_dir.join("pki/ca.crt");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(ca_path.exists()
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok())
        {
            ensure!(
                Instant::now() < deadline,
                "kiln-server did not start; see {}/server.log",
                root.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ca_pem = std::fs::read_to_string(&ca_path)?;
        let base = format!("https://127.0.0.1:{port}");

        let node_dir = root.join(NODE);
        let (node_url, node_pid) = join_node(scratch, bins, &server_dir, &base, NODE).await?;

        let cluster = Cluster {
            base,
            port,
            node_url,
            ca_pem,
            server_dir,
            node_dir,
            server_pid,
            node_pid,
            more_nodes: Vec::new(),
            agents: vec![(NODE.to_owned(), node_pid)],
        };
        let api = cluster.login().await?;
        api.wait_online(NODE, &root).await?;
        Ok((cluster, api))
    }

    /// Join one more node, `name`, start its agent and wait until the server sees it online.
    pub async fn add_node(
        &mut self,
        scratch: &mut Scratch,
        bins: &Binaries,
        api: &Api,
        name: &str,
    ) -> anyhow::Result<()> {
        let (url, pid) = join_node(scratch, bins, &self.server_dir, &self.base, name).await?;
        self.more_nodes.push((name.to_owned(), url));
        self.agents.push((name.to_owned(), pid));
        api.wait_online(name, scratch.path()).await
    }

    /// Whether node `name` is part of the bench cluster.
    pub fn has_node(&self, name: &str) -> bool {
        self.agents.iter().any(|(n, _)| n == name)
    }

    /// Pid of node `name`'s agent.
    pub fn agent_pid(&self, name: &str) -> anyhow::Result<u32> {
        self.agents
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .with_context(|| format!("no node {name} in the bench cluster"))
    }

    /// Start node `name`'s agent again (after it was killed) and wait until it is online.
    pub async fn restart_agent(
        &mut self,
        scratch: &mut Scratch,
        bins: &Binaries,
        api: &Api,
        name: &str,
    ) -> anyhow::Result<()> {
        let pid = spawn_agent(scratch, bins, name)?;
        if let Some(entry) = self.agents.iter_mut().find(|(n, _)| n == name) {
            entry.1 = pid;
        }
        if name == NODE {
            self.node_pid = pid;
        }
        api.wait_online(name, scratch.path()).await
    }

    /// A NodeClient for node `name` (the first node or one added), presenting the server's
    /// own client certificate.
    pub fn client_of(&self, name: &str) -> anyhow::Result<NodeClient> {
        let url = if name == NODE {
            self.node_url.clone()
        } else {
            self.more_nodes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, u)| u.clone())
                .with_context(|| format!("no node {name} in the bench cluster"))?
        };
        let identity =
            ClusterIdentity::from_dir(&self.server_dir.join("pki"), "client.crt", "client.key")?;
        Ok(NodeClient::new(
            &identity,
            name.parse()?,
            &url,
            Duration::from_secs(30),
        )?)
    }

    async fn login(&self) -> anyhow::Result<Api> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        let res = http
            .post(format!("{}/api2/json/access/ticket", self.base))
            .json(&serde_json::json!({"username": "root@kiln", "password": ADMIN_PASSWORD}))
            .send()
            .await?;
        ensure!(res.status().is_success(), "login: {}", res.status());
        let body: Value = res.json().await?;
        let text = |k: &str| {
            body["data"][k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("login answer without {k}: {body}"))
        };
        Ok(Api {
            http,
            base: self.base.clone(),
            ticket: text("ticket")?,
            csrf: text("CSRFPreventionToken")?,
        })
    }

    /// A NodeClient for the first node, presenting the server's own client certificate
    /// (`pki/client.crt`).
    pub fn node_client(&self) -> anyhow::Result<NodeClient> {
        self.client_of(NODE)
    }
}

/// An authenticated API client (cookie `PVEAuthCookie` + CSRF header, as Proxmox clients do).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// The session ticket (also the console WebSocket's cookie).
    pub ticket: String,
    csrf: String,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder, write: bool) -> anyhow::Result<Value> {
        let mut req = req.header("Cookie", format!("PVEAuthCookie={}", self.ticket));
        if write {
            req = req.header("CSRFPreventionToken", &self.csrf);
        }
        let res = req.send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "HTTP {status}: {body}");
        Ok(body)
    }

    /// GET; the whole answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), false)
            .await
    }

    /// POST a JSON body; the whole answer.
    pub async fn post(&self, path: &str, json: Value) -> anyhow::Result<Value> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&json);
        self.send(req, true)
            .await
            .with_context(|| format!("POST {path}"))
    }

    /// DELETE; the whole answer.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), true)
            .await
            .with_context(|| format!("DELETE {path}"))
    }

    /// Poll until the server reports node `name` online (its agent's log is in `root`).
    pub async fn wait_online(&self, name: &str, root: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = self.get("/api2/json/nodes").await?;
            let online = nodes["data"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|n| n["node"] == name && n["status"] == "online")
            });
            if online {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "node {name} did not come online: {nodes}; see {}/{name}.log",
                root.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll a task every `every` until it stops; fails unless its exit status is OK.
    pub async fn wait_task(&self, upid: &str, every: Duration) -> anyhow::Result<()> {
        self.wait_task_on(NODE, upid, every).await
    }

    /// [`Api::wait_task`] for a task of node `node`.
    pub async fn wait_task_on(
        &self,
        node: &str,
        upid: &str,
        every: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let body = self
                .get(&format!("/api2/json/nodes/{node}/tasks/{upid}/status"))
                .await?;
            if body["data"]["status"] == "stopped" {
                let exit = body["data"]["exitstatus"].as_str().unwrap_or_default();
                if exit == "OK" {
                    return Ok(());
                }
                bail!("task {upid} failed: {exit}");
            }
            ensure!(Instant::now() < deadline, "task {upid} still running");
            tokio::time::sleep(every).await;
        }
    }

    /// POST an action or a creation that answers a UPID, and wait for its task.
    pub async fn task(&self, path: &str, json: Value) -> anyhow::Result<()> {
        let body = self.post(path, json).await?;
        let upid = body["data"]
            .as_str()
            .with_context(|| format!("{path}: no UPID in {body}"))?;
        self.wait_task(upid, Duration::from_millis(20)).await
    }

    /// POST an empty action to a task of node `node` (e.g. `status/stop` of a VM there) and
    /// wait for it.
    pub async fn task_on(&self, node: &str, path: &str) -> anyhow::Result<()> {
        let body = self.post(path, serde_json::json!({})).await?;
        let upid = body["data"]
            .as_str()
            .with_context(|| format!("{path}: no UPID in {body}"))?;
        self.wait_task_on(node, upid, Duration::from_millis(20))
            .await
    }

    /// The server's view of VM `vmid` (`status/current`).
    pub async fn vm_status(&self, vmid: u32) -> anyhow::Result<Value> {
        Ok(self
            .get(&format!(
                "/api2/json/nodes/{NODE}/qemu/{vmid}/status/current"
            ))
            .await?["data"]
            .clone())
    }

    /// Poll `status/current` every `every` until its `qmpstatus` is `state`.
    pub async fn wait_vm(
        &self,
        vmid: u32,
        state: &str,
        every: Duration,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.vm_status(vmid).await?;
            if s["qmpstatus"] == state {
                return Ok(s);
            }
            ensure!(Instant::now() < deadline, "VM {vmid} not {state}: {s}");
            tokio::time::sleep(every).await;
        }
    }
}
