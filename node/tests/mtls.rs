//! The node API answers only cluster members, and `NodeClient` talks only to the node it means.

#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use kiln_node_client::{ClusterIdentity, NodeClient, NodeClientError, NodeName};
use support::{free_port, Agent, TestCa};

const TIMEOUT: Duration = Duration::from_secs(10);

fn name(s: &str) -> NodeName {
    s.parse().expect("valid node name")
}

fn client(identity: &ClusterIdentity, node: &str, agent_url: &str) -> NodeClient {
    NodeClient::new(identity, name(node), agent_url, TIMEOUT).expect("node client")
}

#[tokio::test]
async fn cluster_member_gets_the_node_facts() {
    let ca = TestCa::new("kiln cluster CA");
    let agent = Agent::start("n1", &ca.identity("n1"));
    let server = ca.identity("kiln-server");

    let facts = client(&server, "n1", &agent.api_url())
        .status()
        .await
        .unwrap_or_else(|e| panic!("status failed: {e}\n{}", agent.log()));

    assert_eq!(facts.name, "n1");
    assert!(facts.cpus > 0);
    assert_eq!(facts.api_version, kiln_node_client::wire::API_VERSION);
    assert!(facts.mem_total > 0 && facts.mem_used <= facts.mem_total);
    assert!((0.0..=1.0).contains(&facts.cpu_usage));
    assert!(!facts.kernel.is_empty());
    assert!(
        agent.log().contains("kiln-node n1 listening on 127.0.0.1:"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn client_with_a_certificate_from_another_ca_is_refused() {
    let ca = TestCa::new("kiln cluster CA");
    let mut agent = Agent::start("n1", &ca.identity("n1"));
    let foreign = TestCa::new("kiln cluster CA");
    let (cert_pem, key_pem) = foreign.issue("kiln-server");
    // Trusts the right CA, but authenticates with a foreign certificate.
    let impostor = ClusterIdentity {
        ca_pem: ca.pem.clone(),
        cert_pem,
        key_pem,
    };

    let result = client(&impostor, "n1", &agent.api_url()).status().await;

    assert!(
        matches!(
            result,
            Err(NodeClientError::ClientCertificateRefused { .. })
        ),
        "{result:?}"
    );
    // The refused handshake did not harm the agent.
    assert!(agent.is_running());
    let facts = client(&ca.identity("kiln-server"), "n1", &agent.api_url())
        .status()
        .await;
    assert!(facts.is_ok(), "{facts:?}");
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    let ca = TestCa::new("kiln cluster CA");
    let mut agent = Agent::start("n1", &ca.identity("n1"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone().into()).expect("CA root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve("n1", agent.addr())
        .timeout(TIMEOUT)
        .build()
        .expect("reqwest client");

    let result = anonymous
        .get(format!("https://n1:{}/v1/status", agent.addr().port()))
        .send()
        .await;

    assert!(result.is_err(), "an anonymous client got {result:?}");
    assert!(agent.is_running());
    let facts = client(&ca.identity("kiln-server"), "n1", &agent.api_url())
        .status()
        .await;
    assert!(facts.is_ok(), "{facts:?}");
}

#[tokio::test]
async fn node_client_refuses_a_node_with_a_certificate_from_another_ca() {
    let ca = TestCa::new("kiln cluster CA");
    let foreign = TestCa::new("kiln cluster CA");
    let impostor = Agent::start("n1", &foreign.identity("n1"));

    let err = client(&ca.identity("kiln-server"), "n1", &impostor.api_url())
        .status()
        .await
        .expect_err("a node with a foreign certificate must be refused");

    assert!(
        matches!(err, NodeClientError::UntrustedCertificate { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("presented a certificate not signed by the cluster CA"),
        "{err}"
    );
}

#[tokio::test]
async fn node_client_refuses_a_cluster_node_answering_for_another_name() {
    let ca = TestCa::new("kiln cluster CA");
    let n2 = Agent::start("n2", &ca.identity("n2"));

    let err = client(&ca.identity("kiln-server"), "n1", &n2.api_url())
        .status()
        .await
        .expect_err("n2's certificate must not pass for n1");

    assert!(
        matches!(err, NodeClientError::WrongNodeCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn node_client_reports_an_unreachable_node_with_advice() {
    let ca = TestCa::new("kiln cluster CA");
    let url = format!("https://127.0.0.1:{}", free_port());

    let err = client(&ca.identity("kiln-server"), "n2", &url)
        .status()
        .await
        .expect_err("nothing listens there");

    assert_eq!(
        err.to_string(),
        format!("node n2 at {url} is unreachable: connection refused; is kiln-node running there?")
    );
}

#[tokio::test]
async fn agent_stops_cleanly_on_sigterm() {
    let ca = TestCa::new("kiln cluster CA");
    let mut agent = Agent::start("n1", &ca.identity("n1"));

    let status = agent.terminate();

    assert!(status.success(), "{status}\n{}", agent.log());
    assert!(agent.log().contains("SIGTERM received"), "{}", agent.log());
}

#[test]
fn agent_without_a_joined_data_dir_exits_and_says_how_to_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-node"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run kiln-node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("has not joined a cluster"), "{stderr}");
    assert!(stderr.contains("kiln-node join"), "{stderr}");
}
