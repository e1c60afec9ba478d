//! Shared helpers of the kiln-node integration tests: a throw-away cluster CA, data
//! directories written by hand, and real `kiln-node` processes killed on drop.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_node_client::ClusterIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// A certificate authority made for one test.
pub struct TestCa {
    /// The CA certificate (PEM).
    pub pem: String,
    /// The CA certificate (DER).
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `name` (CN and SAN; an IP literal becomes an IP SAN), usable as TLS
    /// server and client certificate, with its key: `(cert_pem, key_pem)`.
    pub fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a PEM certificate signing request as the cluster server would.
    pub fn sign_csr(&self, csr_pem: &str) -> String {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("CSR");
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.signed_by(&self.issuer).expect("signed CSR").pem()
    }

    /// A cluster identity for `name`, issued by this CA.
    pub fn identity(&self, name: &str) -> ClusterIdentity {
        let (cert_pem, key_pem) = self.issue(name);
        ClusterIdentity {
            ca_pem: self.pem.clone(),
            cert_pem,
            key_pem,
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Writes a joined node's data directory by hand.
pub fn write_data_dir(dir: &Path, name: &str, port: u16, identity: &ClusterIdentity) {
    let config = serde_json::json!({
        "name": name,
        "listen": format!("127.0.0.1:{port}"),
        "advertise": format!("https://127.0.0.1:{port}"),
        "server_url": "https://127.0.0.1:1",
    });
    std::fs::write(dir.join("node.json"), config.to_string()).expect("node.json");
    std::fs::write(dir.join("node.key"), &identity.key_pem).expect("node.key");
    std::fs::write(dir.join("node.crt"), &identity.cert_pem).expect("node.crt");
    std::fs::write(dir.join("ca.crt"), &identity.ca_pem).expect("ca.crt");
}

/// A running `kiln-node run`; killed when dropped.
pub struct Agent {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Agent {
    /// Starts an agent named `name` with `identity` in a fresh data directory.
    pub fn start(name: &str, identity: &ClusterIdentity) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        write_data_dir(dir.path(), name, port, identity);
        let mut agent = Agent::run(dir.path(), port);
        agent._dir = Some(dir);
        agent
    }

    /// Starts `kiln-node run` on an existing data directory, listening on `port`.
    pub fn run(data_dir: &Path, port: u16) -> Agent {
        Agent::run_with_args(data_dir, port, &[])
    }

    /// Like [`Agent::run`], with more arguments for `kiln-node run`.
    pub fn run_with_args(data_dir: &Path, port: u16, args: &[&OsStr]) -> Agent {
        let log = data_dir.join("agent.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln-node"));
        // VM tests check with `require_vm_binaries` that these exist; other tests do not care.
        if let Some(guest) = test_guest() {
            command.env("KILN_TEST_GUEST", guest);
        }
        if let Some(vmm) = vmm_binary() {
            command.env("KILN_VMM_BIN", vmm);
        }
        let child = command
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start kiln-node");
        let mut agent = Agent {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: None,
        };
        agent.wait_until_listening();
        agent
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kiln-node exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "kiln-node did not listen on {} in time:\n{}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node API URL.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for kiln-node") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("kiln-node ignored SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the agent with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL kiln-node");
        self.child.wait().expect("reap kiln-node");
    }
}

/// The workspace's target directory of this build (`target/debug`), where kiln-node is.
fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kiln-node"))
        .parent()
        .expect("kiln-node has a directory")
        .to_owned()
}

/// The kiln-vmm binary: `$KILN_VMM_BIN`, else `kiln-vmm` beside the kiln-node under test.
pub fn vmm_binary() -> Option<PathBuf> {
    let path = std::env::var_os("KILN_VMM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| build_dir().join("kiln-vmm"));
    path.is_file().then_some(path)
}

/// The Kiln test guest: `$KILN_TEST_GUEST`, else where `make guest` puts it.
pub fn test_guest() -> Option<PathBuf> {
    let path = std::env::var_os("KILN_TEST_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/guest/x86_64-unknown-none/release/kiln-test-guest")
        });
    path.is_file().then_some(path)
}

/// Fails with what to build when kiln-vmm or the test guest is missing.
pub fn require_vm_binaries() {
    assert!(
        vmm_binary().is_some(),
        "kiln-vmm is not built: run `cargo build -p kiln-vmm` (expected {}; or set KILN_VMM_BIN)",
        build_dir().join("kiln-vmm").display()
    );
    assert!(
        test_guest().is_some(),
        "the Kiln test guest is not built: run `make guest` (or set KILN_TEST_GUEST)"
    );
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops every kiln-vmm under a data directory (they outlive the agent by design),
/// when dropped.
pub struct VmReaper(pub PathBuf);

impl Drop for VmReaper {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.0.join("vms")) else {
            return;
        };
        for entry in entries.flatten() {
            let socket = entry.path().join("control.sock");
            if let Ok(mut control) = kiln_vmm::control::client::ControlClient::connect(&socket) {
                let _ = control.set_timeout(Some(Duration::from_secs(5)));
                let _ = control.stop();
            }
        }
    }
}
