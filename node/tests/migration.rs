//! Live migration between two real node agents: the source agent opens the target with its
//! own node certificate (same test CA), pipes kiln-vmm's migration stream over the upgraded
//! mutual-TLS connection, and the VM moves with its memory intact.
//!
//! Needs `kiln-vmm` (`cargo build -p kiln-vmm`, or `KILN_VMM_BIN`) and the test guest
//! (`make guest`, or `KILN_TEST_GUEST`).

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kiln_node_client::tokio_tungstenite::tungstenite::Message;
use kiln_node_client::wire::{
    MigrateSendRequest, MigrationPhase, VmPowerState, VmRuntime, VmSpec, TEST_GUEST_IMAGE,
};
use kiln_node_client::{ConsoleSocket, NodeClient, NodeClientError};
use support::{free_port, require_vm_binaries, write_data_dir, Agent, TestCa, VmReaper};

const TIMEOUT: Duration = Duration::from_secs(10);
const PROMPT: &str = "kiln> ";

/// One node agent of a two-node test cluster; stops its VMs when dropped.
struct TestNode {
    name: &'static str,
    agent: Agent,
    client: NodeClient,
    _reaper: VmReaper,
    _dir: tempfile::TempDir,
}

impl TestNode {
    fn start(ca: &TestCa, name: &'static str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        write_data_dir(dir.path(), name, port, &ca.identity(name));
        let agent = Agent::run(dir.path(), port);
        let client = NodeClient::new(
            &ca.identity("kiln-server"),
            name.parse().expect("node name"),
            &agent.api_url(),
            TIMEOUT,
        )
        .expect("node client");
        TestNode {
            name,
            agent,
            client,
            _reaper: VmReaper(dir.path().to_owned()),
            _dir: dir,
        }
    }

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
                "VM {vmid} on {} never became {what}: {vm:?}\n{}",
                self.name,
                self.agent.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn console(&self, vmid: u32) -> Console {
        let ws = self.client.console(vmid).await.unwrap_or_else(|e| {
            panic!(
                "console of VM {vmid} on {}: {e}\n{}",
                self.name,
                self.agent.log()
            )
        });
        Console {
            ws,
            seen: Vec::new(),
        }
    }

    fn migrate_request(&self) -> MigrateSendRequest {
        MigrateSendRequest {
            target_node: self.name.to_owned(),
            target_api_url: self.agent.api_url(),
            downtime_ms: 50,
            bwlimit_mib_s: None,
            await_commit: false,
            commit_timeout_ms: 10_000,
        }
    }
}

fn spec(vmid: u32) -> VmSpec {
    VmSpec {
        vmid,
        name: format!("mig-{vmid}"),
        memory_mib: 128,
        vcpus: 1,
        image: TEST_GUEST_IMAGE.to_owned(),
        cmdline: None,
    }
}

/// A console WebSocket, read until patterns appear.
struct Console {
    ws: ConsoleSocket,
    seen: Vec<u8>,
}

impl Console {
    async fn expect(&mut self, pattern: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

    async fn send_line(&mut self, line: &str) {
        self.ws
            .send(Message::Binary(format!("{line}\r").into_bytes().into()))
            .await
            .expect("send to the console");
    }

    /// Runs `command` and returns the rest of the first output line after `marker`.
    async fn line_after(&mut self, command: &str, marker: &str) -> String {
        self.send_line(command).await;
        self.expect(marker).await;
        let rest = self.expect("\r\n").await;
        rest.trim_end().to_owned()
    }
}

/// The `checksum 0x…` word of a guest `mem` line.
fn checksum(line: &str) -> String {
    line.split("checksum ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no checksum in {line:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_moves_to_another_node_with_its_memory() {
    require_vm_binaries();
    let ca = TestCa::new("kiln cluster CA");
    let a = TestNode::start(&ca, "n1");
    let b = TestNode::start(&ca, "n2");

    a.client.start_vm(&spec(101)).await.expect("start on n1");
    let mut console = a.console(101).await;
    console.expect(PROMPT).await;
    let filled = console.line_after("mem fill 64 9", "filled ").await;
    let before = checksum(&filled);
    console.expect(PROMPT).await;

    let status = a
        .client
        .migrate_send(101, &b.migrate_request())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "migrate: {e}\nn1:\n{}\nn2:\n{}",
                a.agent.log(),
                b.agent.log()
            )
        });
    assert_eq!(status.phase, MigrationPhase::Completed, "{status:?}");
    assert!(!status.rounds.is_empty(), "{status:?}");
    assert!(status.downtime_us.is_some(), "{status:?}");
    assert!(status.peer.starts_with("n2 "), "{status:?}");

    let moved = b
        .wait_for(101, "running on n2", |v| v.state == VmPowerState::Running)
        .await;
    assert_eq!(moved.name, "mig-101");
    let left = a
        .wait_for(101, "stopped on n1", |v| v.state == VmPowerState::Stopped)
        .await;
    assert_eq!(left.stop_reason.as_deref(), Some("migrated to n2"));
    assert!(!left.crashed, "{left:?}");

    let mut console = b.console(101).await;
    let verified = console.line_after("mem verify", "verify ").await;
    assert!(verified.starts_with("ok"), "mem verify on n2: {verified:?}");
    assert_eq!(checksum(&verified), before, "{verified:?} vs {filled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_has_the_vm_id_refuses_and_the_vm_stays() {
    require_vm_binaries();
    let ca = TestCa::new("kiln cluster CA");
    let a = TestNode::start(&ca, "n1");
    let b = TestNode::start(&ca, "n2");

    a.client.start_vm(&spec(102)).await.expect("start on n1");
    let mut other = spec(102);
    other.name = "already-here".to_owned();
    b.client.start_vm(&other).await.expect("start on n2");

    let err = a
        .client
        .migrate_send(102, &b.migrate_request())
        .await
        .expect_err("the target has VM 102");
    match &err {
        NodeClientError::Http {
            status, message, ..
        } => {
            assert_eq!(status.as_u16(), 409, "{message}");
            assert!(
                message.contains("VM 102 already exists on node n2"),
                "{message}"
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let vm = a.client.vm(102).await.expect("VM on n1");
    assert_eq!(vm.state, VmPowerState::Running, "{vm:?}");
    let vm = b.client.vm(102).await.expect("VM on n2");
    assert_eq!(vm.name, "already-here");
    assert_eq!(vm.state, VmPowerState::Running, "{vm:?}");
    // The VM still works on n1.
    let mut console = a.console(102).await;
    console.expect(PROMPT).await;
}
