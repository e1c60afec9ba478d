//! `kiln-node join` against a stand-in for the server side of the join protocol.

#[allow(dead_code)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use kiln_node_client::wire::{JoinRequest, JoinResponse};
use kiln_node_client::{CertFingerprint, JoinToken, NodeClient};
use support::{free_port, Agent, TestCa};

const SECRET: &str = "00112233445566778899aabbccddeeff";

/// The server side of the join: hands out the CA, signs CSRs presented with the right token.
struct FakeServer {
    ca: TestCa,
    token: String,
    join_requests: AtomicUsize,
}

/// Serves the join endpoints over HTTPS on a loopback port; returns the server URL.
async fn start_fake_server(server: Arc<FakeServer>) -> String {
    let (cert_pem, key_pem) = server.ca.issue("127.0.0.1");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        kiln_node_client::tls::parse_certificates(&cert_pem, "server cert").expect("cert"),
        kiln_node_client::tls::parse_private_key(&key_pem).expect("key"),
    )
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = Router::new()
        .route("/api2/kiln/ca", get(ca))
        .route("/api2/kiln/join", post(join))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                }
            });
        }
    });
    url
}

async fn ca(State(server): State<Arc<FakeServer>>) -> String {
    server.ca.pem.clone()
}

async fn join(
    State(server): State<Arc<FakeServer>>,
    Json(request): Json<JoinRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    server.join_requests.fetch_add(1, Ordering::SeqCst);
    if request.token != server.token {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"data": null, "message": "invalid or expired join token"})),
        );
    }
    let response = JoinResponse {
        cert_pem: server.ca.sign_csr(&request.csr_pem),
        ca_pem: server.ca.pem.clone(),
        upid: "UPID:kiln:nodejoin:test".into(),
    };
    (
        StatusCode::OK,
        Json(serde_json::json!({ "data": response })),
    )
}

fn token_for(ca_der: &[u8], secret: &str) -> String {
    JoinToken {
        id: "0123456789abcdef".into(),
        secret: secret.into(),
        ca_fingerprint: CertFingerprint::of_der(ca_der).0,
    }
    .to_string()
}

async fn fake_cluster() -> (Arc<FakeServer>, String) {
    let ca = TestCa::new("kiln cluster CA");
    let server = Arc::new(FakeServer {
        token: token_for(&ca.der, SECRET),
        ca,
        join_requests: AtomicUsize::new(0),
    });
    let url = start_fake_server(server.clone()).await;
    (server, url)
}

async fn kiln_node_join(data_dir: &Path, server_url: &str, token: &str, port: u16) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln-node"))
        .arg("join")
        .arg(server_url)
        .arg(token)
        .args(["--name", "n5", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await
        .expect("run kiln-node join")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_node_stores_its_identity_and_serves_the_cluster() {
    let (server, url) = fake_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("kiln-node");
    let port = free_port();

    let output = kiln_node_join(&data, &url, &server.token, port).await;

    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(!out.contains(SECRET), "the token secret was printed: {out}");
    assert!(out.contains("joined the cluster as n5"), "{out}");
    let mode = |f: &str| {
        std::fs::metadata(data.join(f))
            .expect("file exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("node.key"), 0o600);
    assert_eq!(
        std::fs::read_to_string(data.join("ca.crt")).expect("ca.crt"),
        server.ca.pem
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("node.json")).expect("json"))
            .expect("node.json is JSON");
    assert_eq!(config["name"], "n5");
    assert_eq!(config["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(config["advertise"], format!("https://127.0.0.1:{port}"));
    assert_eq!(config["server_url"], url.as_str());

    // The certificate the cluster signed is good for serving the node API as n5.
    let agent = Agent::run(&data, port);
    let facts = NodeClient::new(
        &server.ca.identity("kiln-server"),
        "n5".parse().expect("name"),
        &agent.api_url(),
        Duration::from_secs(10),
    )
    .expect("client")
    .status()
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    assert_eq!(facts.name, "n5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refuses_a_server_whose_ca_does_not_match_the_token() {
    let (server, url) = fake_cluster().await;
    let other_ca = TestCa::new("kiln cluster CA");
    let dir = tempfile::tempdir().expect("tempdir");

    let output = kiln_node_join(
        dir.path(),
        &url,
        &token_for(&other_ca.der, SECRET),
        free_port(),
    )
    .await;

    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains(
            "the server's CA does not match the join token: wrong server or man-in-the-middle"
        ),
        "{out}"
    );
    assert_eq!(
        server.join_requests.load(Ordering::SeqCst),
        0,
        "the token was sent"
    );
    assert!(!dir.path().join("node.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reports_the_servers_refusal() {
    let (server, url) = fake_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_secret = token_for(&server.ca.der, "ffeeddccbbaa99887766554433221100");

    let output = kiln_node_join(dir.path(), &url, &wrong_secret, free_port()).await;

    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("invalid or expired join token"), "{out}");
    assert!(!out.contains("ffeeddccbbaa99887766554433221100"), "{out}");
    assert!(!dir.path().join("node.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refuses_a_data_dir_that_already_joined() {
    let (server, url) = fake_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("node.json"), "{}").expect("node.json");

    let output = kiln_node_join(dir.path(), &url, &server.token, free_port()).await;

    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("already holds a joined node"), "{out}");
    assert_eq!(server.join_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_token_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let almost = format!("kiln1.0123456789abcdef.{SECRET}.abc");

    let output = kiln_node_join(dir.path(), "https://127.0.0.1:1", &almost, free_port()).await;

    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("malformed join token"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
}
