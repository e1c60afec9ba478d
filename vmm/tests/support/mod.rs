//! Starts the real `kiln-vmm` binary with the Kiln test guest and talks to it through its
//! control socket, as the node agent does.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kiln_vmm::control::client::{ConsoleStream, ControlClient};

/// The test guest ELF: `$KILN_TEST_GUEST`, or where `make guest` puts it.
pub fn guest_image() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_TEST_GUEST") {
        return PathBuf::from(p);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest/x86_64-unknown-none/release/kiln-test-guest");
    assert!(
        path.exists(),
        "the Kiln test guest is not built: run `make guest` in the repository root \
         (expected {}; or set KILN_TEST_GUEST)",
        path.display()
    );
    path
}

/// The kiln-vmm binary under test.
pub fn vmm_binary() -> &'static str {
    env!("CARGO_BIN_EXE_kiln-vmm")
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kiln-vmm-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running kiln-vmm with the test guest.
pub struct TestVm {
    pub child: Child,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl TestVm {
    /// Start a VM and wait for its control socket.
    pub fn start(vcpus: u8, memory_mib: u64) -> TestVm {
        let image = guest_image();
        TestVm::start_with(&[
            "--kernel".as_ref(),
            image.as_os_str(),
            "--memory-mib".as_ref(),
            memory_mib.to_string().as_ref(),
            "--vcpus".as_ref(),
            vcpus.to_string().as_ref(),
        ])
    }

    /// Start kiln-vmm with `args` (plus its control socket) and wait for the socket.
    pub fn start_with(args: &[&std::ffi::OsStr]) -> TestVm {
        let dir = TempDir::new("vm");
        let socket = dir.path().join("control.sock");
        let child = Command::new(vmm_binary())
            .args(args)
            .arg("--control-socket")
            .arg(&socket)
            .stdout(Stdio::null())
            // KILN_TEST_STDERR=inherit shows kiln-vmm's messages while debugging a test.
            .stderr(if std::env::var_os("KILN_TEST_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .expect("spawn kiln-vmm");
        let mut vm = TestVm {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vm.socket.exists() {
            if let Ok(Some(status)) = vm.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = vm.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("kiln-vmm exited ({status}) before creating its socket: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "kiln-vmm did not create its control socket"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        vm
    }

    /// A control connection.
    pub fn control(&self) -> ControlClient {
        let client = ControlClient::connect(&self.socket).expect("connect to the control socket");
        client
            .set_timeout(Some(Duration::from_secs(20)))
            .expect("set timeout");
        client
    }

    /// Attach to the console (with scroll-back) and wait for the first prompt.
    pub fn console(&self) -> GuestConsole {
        let mut console = self.attach_console();
        console.expect(PROMPT, Duration::from_secs(20));
        console
    }

    /// Attach to the console with scroll-back replay; reads nothing yet.
    pub fn attach_console(&self) -> GuestConsole {
        let stream = self.control().attach_console(true).expect("attach console");
        GuestConsole {
            stream,
            seen: Vec::new(),
        }
    }

    /// Wait for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kiln-vmm did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process wrote to stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The shell prompt of the test guest.
pub const PROMPT: &str = "kiln> ";

/// The guest's serial console through the control socket.
pub struct GuestConsole {
    stream: ConsoleStream,
    seen: Vec<u8>,
}

impl GuestConsole {
    /// Read until `pattern` appears; return everything up to and including it.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(pos) = find(&self.seen, pattern.as_bytes()) {
                let end = pos + pattern.len();
                let out: Vec<u8> = self.seen.drain(..end).collect();
                return String::from_utf8_lossy(&out).into_owned();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {pattern:?}; console so far: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.stream
                .set_read_timeout(Some(deadline - now))
                .expect("set read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "console closed while waiting for {pattern:?}; got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("console read failed: {e}"),
            }
        }
    }

    /// Type a line.
    pub fn send_line(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r").as_bytes())
            .expect("write to console");
    }

    /// Run a shell command; return its output lines (without the echoed command and prompt).
    pub fn run(&mut self, command: &str) -> Vec<String> {
        self.send_line(command);
        let out = self.expect(PROMPT, Duration::from_secs(60));
        out.lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty() && l != command && !l.starts_with(PROMPT))
            .collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Run kiln-vmm with `args` to completion (for startup errors).
pub fn run_vmm(args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(vmm_binary())
        .args(args)
        .output()
        .expect("run kiln-vmm");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
