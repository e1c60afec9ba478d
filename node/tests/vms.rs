//! VMs on a node, end to end: a real `kiln-node` on loopback, real `kiln-vmm` processes on
//! `/dev/kvm` booting the Kiln test guest, driven through `NodeClient` over mutual TLS.
//!
//! Needs `kiln-vmm` beside `kiln-node` (`cargo build -p kiln-vmm`, or `KILN_VMM_BIN`) and the
//! test guest (`make guest`, or `KILN_TEST_GUEST`); the tests say so when either is missing.

#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kiln_node_client::tokio_tungstenite::tungstenite::Message;
use kiln_node_client::wire::{VmPowerState, VmRuntime, VmSpec, TEST_GUEST_IMAGE};
use kiln_node_client::{ConsoleSocket, NodeClient, NodeClientError};
use support::{free_port, require_vm_binaries, write_data_dir, Agent, TestCa, VmReaper};

const TIMEOUT: Duration = Duration::from_secs(10);
const PROMPT: &str = "kiln> ";

/// One node agent with its data directory; stops every VM left over when dropped.
struct TestNode {
    agent: Agent,
    client: NodeClient,
    port: u16,
    _reaper: VmReaper,
    dir: tempfile::TempDir,
}

impl TestNode {
    fn start() -> TestNode {
        require_vm_binaries();
        let ca = TestCa::new("kiln cluster CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        write_data_dir(dir.path(), "n1", port, &ca.identity("n1"));
        let agent = Agent::run(dir.path(), port);
        let client = NodeClient::new(
            &ca.identity("kiln-server"),
            "n1".parse().expect("node name"),
            &agent.api_url(),
            TIMEOUT,
        )
        .expect("node client");
        TestNode {
            agent,
            client,
            port,
            _reaper: VmReaper(dir.path().to_owned()),
            dir,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the agent and starts a new one on the same data directory and port.
    fn restart_agent_after_sigkill(&mut self) {
        self.agent.kill();
        self.agent = Agent::run(self.dir.path(), self.port);
    }

    async fn start_vm(&self, spec: &VmSpec) -> VmRuntime {
        self.client
            .start_vm(spec)
            .await
            .unwrap_or_else(|e| panic!("start VM {}: {e}\n{}", spec.vmid, self.agent.log()))
    }

    /// Polls the VM until `done` holds.
    async fn wait_for(
        &self,
        vmid: u32,
        what: &str,
        done: impl Fn(&VmRuntime) -> bool,
    ) -> VmRuntime {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let vm = self.client.vm(vmid).await.expect("get VM");
            if done(&vm) {
                return vm;
            }
            assert!(
                Instant::now() < deadline,
                "VM {vmid} never became {what}: {vm:?}\n{}",
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn console(&self, vmid: u32) -> Console {
        let ws = self
            .client
            .console(vmid)
            .await
            .unwrap_or_else(|e| panic!("console of VM {vmid}: {e}\n{}", self.agent.log()));
        Console {
            ws,
            seen: Vec::new(),
        }
    }
}

fn spec(vmid: u32) -> VmSpec {
    VmSpec {
        vmid,
        name: format!("test-{vmid}"),
        memory_mib: 64,
        vcpus: 1,
        image: TEST_GUEST_IMAGE.to_owned(),
        cmdline: None,
        ha: false,
    }
}

/// A console WebSocket, read until patterns appear.
struct Console {
    ws: ConsoleSocket,
    seen: Vec<u8>,
}

impl Console {
    /// Reads until `pattern`; returns everything up to and including it.
    async fn expect(&mut self, pattern: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pos) = self
                .seen
                .windows(pattern.len())
                .position(|w| w == pattern.as_bytes())
            {
                let out: Vec<u8> = self.seen.drain(..pos + pattern.len()).collect();
                return String::from_utf8_lossy(&out).into_owned();
            }
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {pattern:?}; console so far: {:?}",
                        String::from_utf8_lossy(&self.seen)
                    )
                });
            match next {
                Some(Ok(Message::Binary(bytes))) => self.seen.extend_from_slice(&bytes),
                Some(Ok(Message::Close(_))) | None => panic!(
                    "console closed while waiting for {pattern:?}; got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("console failed: {e}"),
            }
        }
    }

    /// Types a line.
    async fn send_line(&mut self, line: &str) {
        self.ws
            .send(Message::Binary(format!("{line}\r").into_bytes().into()))
            .await
            .expect("send to the console");
    }

    /// Runs a shell command; returns its output lines.
    async fn run(&mut self, command: &str) -> Vec<String> {
        self.send_line(command).await;
        let out = self.expect(PROMPT).await;
        out.lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .filter(|l| !l.is_empty() && l != command && !l.starts_with(PROMPT))
            .collect()
    }
}

fn kill_process(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a valid pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL");
}

fn process_exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    rest.split_whitespace()
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("process group")
}

fn http_error(result: Result<VmRuntime, NodeClientError>) -> (u16, String) {
    match result {
        Err(NodeClientError::Http {
            status, message, ..
        }) => (status.as_u16(), message),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn started_vm_is_in_the_heartbeat_and_its_console_answers_echo() {
    let node = TestNode::start();
    let images = node.client.images().await.expect("images");
    assert!(
        images
            .iter()
            .any(|i| i.name == TEST_GUEST_IMAGE && i.kind == "pvh-elf" && i.size_bytes > 0),
        "{images:?}"
    );

    let vm = node.start_vm(&spec(101)).await;
    assert_eq!(vm.state, VmPowerState::Running);
    assert_eq!(vm.memory_bytes, 64 << 20);
    let pid = vm.pid.expect("a running VM has a pid");

    let facts = node.client.status().await.expect("status");
    let listed = facts
        .vms
        .iter()
        .find(|v| v.vmid == 101)
        .expect("VM in the heartbeat");
    assert_eq!(
        (listed.state, listed.pid),
        (VmPowerState::Running, Some(pid))
    );
    assert!(facts.mem_available > 0);

    let mut console = node.console(101).await;
    let boot = console.expect(PROMPT).await;
    assert!(boot.contains("Kiln test guest"), "banner: {boot:?}");
    assert_eq!(console.run("echo hello").await, vec!["hello".to_owned()]);

    // A second client gets the scroll-back and sees what the first one types.
    let mut second = node.console(101).await;
    let replay = second.expect("hello\r\n").await;
    assert!(replay.contains("Kiln test guest"), "{replay:?}");
    assert_eq!(console.run("echo both").await, vec!["both".to_owned()]);
    second.expect("both\r\n").await;

    let stats = node
        .wait_for(101, "sampled", |v| v.rss_bytes > 0 && v.uptime_secs >= 1)
        .await;
    assert!((0.0..=1.0).contains(&stats.cpu_usage), "{stats:?}");
}

#[tokio::test]
async fn pause_resume_and_stop_report_their_states() {
    let node = TestNode::start();
    node.start_vm(&spec(102)).await;

    let paused = node.client.pause_vm(102).await.expect("pause");
    assert_eq!(paused.state, VmPowerState::Paused);
    let (status, message) = http_error(node.client.pause_vm(102).await);
    assert_eq!(
        (status, message.as_str()),
        (409, "VM 102 is already paused")
    );
    let running = node.client.resume_vm(102).await.expect("resume");
    assert_eq!(running.state, VmPowerState::Running);

    let stopped = node.client.stop_vm(102).await.expect("stop");
    assert_eq!(stopped.state, VmPowerState::Stopped);
    assert_eq!(stopped.stop_reason.as_deref(), Some("stopped by request"));
    assert!(!stopped.crashed);
    assert_eq!(stopped.pid, None);
    let facts = node.client.status().await.expect("status");
    assert_eq!(facts.vms[0].state, VmPowerState::Stopped);

    node.client
        .delete_vm(102)
        .await
        .expect("delete a stopped VM");
    let (status, message) = http_error(node.client.vm(102).await);
    assert_eq!((status, message.as_str()), (404, "no VM 102 on node n1"));
    assert!(!node.data_dir().join("vms/102").exists());
}

#[tokio::test]
async fn vm_survives_an_agent_killed_with_sigkill_and_is_reattached() {
    let mut node = TestNode::start();
    let pid = node.start_vm(&spec(103)).await.pid.expect("pid");
    assert_eq!(
        process_group(pid),
        pid,
        "kiln-vmm runs in its own process group"
    );

    // An orderly agent stop leaves the VM running too.
    node.agent.terminate();
    assert!(process_exists(pid), "kiln-vmm died with a SIGTERMed agent");
    node.agent = Agent::run(node.dir.path(), node.port);

    node.restart_agent_after_sigkill();

    assert!(process_exists(pid), "kiln-vmm died with the agent");
    let vm = node
        .client
        .vm(103)
        .await
        .expect("VM known to the new agent");
    assert_eq!((vm.state, vm.pid), (VmPowerState::Running, Some(pid)));
    assert!(
        node.agent.log().contains(&format!(
            "re-attached to VM 103 (test-103): kiln-vmm pid {pid}"
        )),
        "{}",
        node.agent.log()
    );
    let mut console = node.console(103).await;
    console.expect(PROMPT).await;
    assert_eq!(
        console.run("echo still here").await,
        vec!["still here".to_owned()]
    );

    // The adopted VM is not the new agent's child, yet its death is still noticed.
    kill_process(pid);
    let vm = node
        .wait_for(103, "stopped", |v| v.state == VmPowerState::Stopped)
        .await;
    assert!(vm.crashed, "{vm:?}");
}

#[tokio::test]
async fn vm_that_ended_while_the_agent_was_down_is_reported_stopped() {
    let mut node = TestNode::start();
    let pid = node.start_vm(&spec(104)).await.pid.expect("pid");
    node.agent.kill();
    kill_process(pid);
    while process_exists(pid) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.agent = Agent::run(node.dir.path(), node.port);

    let vm = node
        .client
        .vm(104)
        .await
        .expect("VM known to the new agent");
    assert_eq!(vm.state, VmPowerState::Stopped);
    assert_eq!(
        vm.stop_reason.as_deref(),
        Some("kiln-vmm exited while the node agent was down")
    );
    assert!(vm.crashed);
    // It can be started again.
    assert_eq!(node.start_vm(&spec(104)).await.state, VmPowerState::Running);
}

#[tokio::test]
async fn killed_kiln_vmm_is_reported_crashed_with_the_signal() {
    let node = TestNode::start();
    let pid = node.start_vm(&spec(105)).await.pid.expect("pid");
    kill_process(pid);
    let vm = node
        .wait_for(105, "stopped", |v| v.state == VmPowerState::Stopped)
        .await;
    assert!(vm.crashed, "{vm:?}");
    assert_eq!(
        vm.stop_reason.as_deref(),
        Some("kiln-vmm was killed (signal 9)")
    );
}

#[tokio::test]
async fn guest_poweroff_is_a_clean_stop() {
    let node = TestNode::start();
    node.start_vm(&spec(106)).await;
    let mut console = node.console(106).await;
    console.expect(PROMPT).await;
    console.send_line("poweroff").await;
    let vm = node
        .wait_for(106, "stopped", |v| v.state == VmPowerState::Stopped)
        .await;
    assert_eq!(vm.stop_reason.as_deref(), Some("guest powered off"));
    assert!(!vm.crashed);
}

#[tokio::test]
async fn shutdown_asks_the_guest_and_reboot_starts_it_again() {
    let node = TestNode::start();
    let first = node.start_vm(&spec(107)).await.pid.expect("pid");
    node.console(107).await.expect(PROMPT).await;

    let rebooted = node.client.reboot_vm(107, 10).await.expect("reboot");
    assert_eq!(rebooted.state, VmPowerState::Running);
    assert_ne!(
        rebooted.pid,
        Some(first),
        "a new kiln-vmm runs the rebooted VM"
    );
    node.console(107).await.expect(PROMPT).await;

    let down = node.client.shutdown_vm(107, 10).await.expect("shutdown");
    assert_eq!(down.state, VmPowerState::Stopped);
    assert_eq!(
        down.stop_reason.as_deref(),
        Some("guest shut down on request")
    );
    assert!(!down.crashed);
}

#[tokio::test]
async fn guest_reset_restarts_the_vm() {
    let node = TestNode::start();
    let first = node.start_vm(&spec(108)).await.pid.expect("pid");
    let mut console = node.console(108).await;
    console.expect(PROMPT).await;
    console.send_line("reboot").await;
    let vm = node
        .wait_for(108, "restarted", |v| {
            v.state == VmPowerState::Running && v.pid.is_some() && v.pid != Some(first)
        })
        .await;
    assert_eq!(vm.stop_reason, None);
    node.console(108).await.expect(PROMPT).await;
}

#[tokio::test]
async fn wrong_requests_get_the_right_status_and_message() {
    let node = TestNode::start();
    let too_small = VmSpec {
        memory_mib: 8,
        ..spec(109)
    };
    let (status, message) = http_error(node.client.start_vm(&too_small).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("memory must be 16 to"), "{message}");

    let unknown = VmSpec {
        image: "no-such-image".into(),
        ..spec(109)
    };
    let (status, message) = http_error(node.client.start_vm(&unknown).await);
    assert_eq!(status, 503, "{message}");
    assert!(
        message.contains("\"no-such-image\"") && message.contains(TEST_GUEST_IMAGE),
        "{message}"
    );

    let (status, message) = http_error(node.client.stop_vm(999).await);
    assert_eq!((status, message.as_str()), (404, "no VM 999 on node n1"));
    assert!(node.client.vms().await.expect("list").is_empty());

    node.start_vm(&spec(109)).await;
    let (status, message) = http_error(node.client.start_vm(&spec(109)).await);
    assert_eq!(
        (status, message.as_str()),
        (409, "VM 109 is already running")
    );

    let refused = node.client.delete_vm(109).await;
    match refused {
        Err(NodeClientError::Http {
            status, message, ..
        }) => {
            assert_eq!(status.as_u16(), 409);
            assert_eq!(message, "VM 109 is running; stop it before deleting it");
        }
        other => panic!("delete of a running VM: {other:?}"),
    }

    // The console of a VM that does not run is an HTTP error, not a dead socket.
    node.client.stop_vm(109).await.expect("stop");
    match node.client.console(109).await {
        Err(NodeClientError::Http { status, .. }) => assert_eq!(status.as_u16(), 409),
        other => panic!("console of a stopped VM: {:?}", other.map(|_| ())),
    }
}

/// Whether this host lets the agent create cgroups (cgroup v1 memory controller, root).
fn cgroups_writable() -> bool {
    let probe =
        Path::new("/sys/fs/cgroup/memory").join(format!("kiln-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

#[tokio::test]
async fn each_vm_runs_in_a_cgroup_of_its_own_that_goes_with_it() {
    if !cgroups_writable() {
        eprintln!("skipped: /sys/fs/cgroup/memory is not writable here (VMs run without cgroups)");
        return;
    }
    let node = TestNode::start();
    let pid = node.start_vm(&spec(120)).await.pid.expect("pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for controller in ["memory", "pids"] {
        let line = cgroups
            .lines()
            .find(|l| l.split(':').nth(1) == Some(controller))
            .unwrap_or_else(|| panic!("no {controller} line in {cgroups}"));
        assert!(line.ends_with("/kiln/n1/vm-120"), "{line}");
    }
    let dir = Path::new("/sys/fs/cgroup/memory/kiln/n1/vm-120");
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("procs");
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    node.client.stop_vm(120).await.expect("stop");
    node.wait_for(120, "stopped", |v| v.state == VmPowerState::Stopped)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} outlived its VM",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
