//! The image store of a real `kiln-node`: Linux image directories imported with
//! `--image-dir`, listed over the node API, broken ones skipped, and a VM below an image's
//! minimum memory refused. No VM boots here (Linux under PVM is too slow), so neither
//! kiln-vmm nor the test guest is needed.

#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::Duration;

use kiln_node_client::wire::{ImageInfo, VmSpec, TEST_GUEST_IMAGE};
use kiln_node_client::{NodeClient, NodeClientError};
use support::{free_port, write_data_dir, Agent, TestCa};

/// Writes an image directory as `make guest-linux` does, with tiny fake files.
fn write_linux_image(root: &Path, name: &str, kernel: &[u8], initrd: &[u8]) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("image dir");
    std::fs::write(dir.join("kernel"), kernel).expect("kernel");
    std::fs::write(dir.join("initrd"), initrd).expect("initrd");
    std::fs::write(dir.join("cmdline"), "console=ttyS0 panic=1\n").expect("cmdline");
    let manifest = serde_json::json!({
        "name": name,
        "kind": "linux",
        "description": "fake Linux for tests",
        "kernel": "kernel",
        "initrd": "initrd",
        "cmdline": "console=ttyS0 panic=1",
        "min_memory_mib": 256,
    });
    std::fs::write(dir.join("image.json"), manifest.to_string()).expect("image.json");
}

/// A node started with `--image-dir <images>`, and a client for it.
struct ImageNode {
    agent: Agent,
    client: NodeClient,
    dir: tempfile::TempDir,
}

impl ImageNode {
    /// `prepare(data_dir, image_dir)` writes images before the agent starts.
    fn start(prepare: impl FnOnce(&Path, &Path)) -> ImageNode {
        let ca = TestCa::new("kiln cluster CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("source-images");
        std::fs::create_dir_all(&images).expect("image dir");
        prepare(dir.path(), &images);
        let port = free_port();
        write_data_dir(dir.path(), "n1", port, &ca.identity("n1"));
        let agent = Agent::run_with_args(
            dir.path(),
            port,
            &["--image-dir".as_ref(), images.as_os_str()],
        );
        let client = NodeClient::new(
            &ca.identity("kiln-server"),
            "n1".parse().expect("node name"),
            &agent.api_url(),
            Duration::from_secs(10),
        )
        .expect("node client");
        ImageNode { agent, client, dir }
    }

    /// The images other than the test guest (present only where `make guest` ran).
    async fn images(&self) -> Vec<ImageInfo> {
        let mut images = self
            .client
            .images()
            .await
            .unwrap_or_else(|e| panic!("list images: {e}\n{}", self.agent.log()));
        images.retain(|i| i.name != TEST_GUEST_IMAGE);
        images
    }
}

#[tokio::test]
async fn image_directory_is_imported_and_listed_as_linux() {
    let node = ImageNode::start(|_, images| {
        write_linux_image(images, "kiln-linux", &[0u8; 1000], &[1u8; 234]);
    });
    let images = node.images().await;
    assert_eq!(
        images,
        [ImageInfo {
            name: "kiln-linux".into(),
            size_bytes: 1234,
            kind: "linux".into(),
            description: "fake Linux for tests".into(),
        }],
        "{}",
        node.agent.log()
    );
    let stored = node.dir.path().join("images/kiln-linux");
    for file in ["image.json", "kernel", "initrd", "cmdline"] {
        assert!(stored.join(file).is_file(), "{file} not imported");
    }
    assert!(
        node.agent.log().contains("image kiln-linux: imported from"),
        "{}",
        node.agent.log()
    );
}

#[tokio::test]
async fn malformed_image_json_is_skipped_and_the_node_still_starts() {
    let node = ImageNode::start(|data_dir, images| {
        write_linux_image(images, "kiln-linux", b"kernel", b"initrd");
        // Broken in the import directory…
        let broken = images.join("broken");
        std::fs::create_dir_all(&broken).expect("mkdir");
        std::fs::write(broken.join("image.json"), "{\"name\": \"broken\", ").expect("write");
        // …and already in the store.
        let stored = data_dir.join("images/stale");
        std::fs::create_dir_all(&stored).expect("mkdir");
        std::fs::write(
            stored.join("image.json"),
            r#"{"name":"stale","kind":"linux","kernel":"kernel","initrd":"initrd"}"#,
        )
        .expect("write");
    });
    let names: Vec<String> = node.images().await.into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["kiln-linux"], "{}", node.agent.log());
    let log = node.agent.log();
    let broken = node.dir.path().join("source-images/broken/image.json");
    assert!(
        log.contains(&format!("{}: not a valid image manifest", broken.display())),
        "{log}"
    );
    let stale = node.dir.path().join("images/stale/image.json");
    assert!(
        log.contains(&format!("{}: kernel file \"kernel\"", stale.display())),
        "{log}"
    );
    assert!(!node.dir.path().join("images/broken").exists());
}

#[tokio::test]
async fn vm_below_the_images_minimum_memory_is_refused() {
    let node = ImageNode::start(|_, images| {
        write_linux_image(images, "kiln-linux", b"kernel", b"initrd");
    });
    let spec = VmSpec {
        vmid: 101,
        name: "small".into(),
        memory_mib: 128,
        vcpus: 1,
        image: "kiln-linux".into(),
        cmdline: None,
        ha: false,
    };
    match node.client.start_vm(&spec).await {
        Err(NodeClientError::Http {
            status, message, ..
        }) => {
            assert_eq!(status.as_u16(), 400, "{message}");
            assert!(
                message.contains("image kiln-linux needs at least 256 MiB"),
                "{message}"
            );
        }
        other => panic!("expected 400, got {other:?}\n{}", node.agent.log()),
    }
    // Refused before anything was spawned or recorded.
    assert!(node.client.vms().await.expect("list VMs").is_empty());
    assert!(!node.dir.path().join("vms/101").exists());
}
