//! The node's data directory and its configuration (`node.json`).
//!
//! ```text
//! <data-dir>/node.json   NodeConfig, written last by `join`: its presence means "joined"
//! <data-dir>/node.key    the node's private key (mode 0600)
//! <data-dir>/node.crt    the node's certificate, signed by the cluster CA
//! <data-dir>/ca.crt      the cluster CA certificate
//! ```

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kiln_node_client::{ClusterIdentity, NodeName, TlsError};
use serde::{Deserialize, Serialize};

/// File name of the node configuration.
pub const CONFIG_FILE: &str = "node.json";
/// File name of the node's private key.
pub const KEY_FILE: &str = "node.key";
/// File name of the node's certificate.
pub const CERT_FILE: &str = "node.crt";
/// File name of the cluster CA certificate.
pub const CA_FILE: &str = kiln_node_client::tls::CA_FILE;

/// What a joined node remembers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The node's name (CN and DNS SAN of its certificate).
    pub name: NodeName,
    /// Address the node API listens on.
    pub listen: SocketAddr,
    /// URL the server reaches the node API at.
    pub advertise: String,
    /// URL of the Kiln server the node joined.
    pub server_url: String,
}

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The node has not joined a cluster yet.
    #[error("{} holds no {CONFIG_FILE}: this node has not joined a cluster; run `kiln-node join <SERVER_URL> <TOKEN> --name <NAME> --listen <ADDR> --data-dir {}` first", dir.display(), dir.display())]
    NotJoined {
        /// The data directory.
        dir: PathBuf,
    },
    /// The node has already joined a cluster.
    #[error("{} already holds a joined node ({CONFIG_FILE}); to join again, stop kiln-node, remove that directory (or choose another --data-dir) and use a new join token", dir.display())]
    AlreadyJoined {
        /// The data directory.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read", "write" or "create".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `node.json` is not a valid configuration.
    #[error("{} is not a valid node configuration: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The certificates or key cannot be loaded.
    #[error("the node's TLS files in {} are unusable: {source}", dir.display())]
    Tls {
        /// The data directory.
        dir: PathBuf,
        /// The TLS problem.
        #[source]
        source: TlsError,
    },
}

/// The node's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (not touched until used).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether the node has joined a cluster (`node.json` exists).
    pub fn is_joined(&self) -> bool {
        self.file(CONFIG_FILE).exists()
    }

    /// Refuses if the node has joined already; otherwise creates the directory (mode 0700).
    pub fn prepare_for_join(&self) -> Result<(), ConfigError> {
        if self.is_joined() {
            return Err(ConfigError::AlreadyJoined {
                dir: self.root.clone(),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| ConfigError::Io {
                action: "create",
                path: self.root.clone(),
                source,
            })
    }

    /// Reads `node.json`.
    pub fn load_config(&self) -> Result<NodeConfig, ConfigError> {
        let path = self.file(CONFIG_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ConfigError::NotJoined {
                    dir: self.root.clone(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| ConfigError::Invalid { path, source })
    }

    /// Writes `node.json`.
    pub fn save_config(&self, config: &NodeConfig) -> Result<(), ConfigError> {
        let mut json =
            serde_json::to_string_pretty(config).map_err(|source| ConfigError::Invalid {
                path: self.file(CONFIG_FILE),
                source,
            })?;
        json.push('\n');
        self.write_file(CONFIG_FILE, json.as_bytes(), 0o644)
    }

    /// Writes the node's private key, readable by the owner only.
    pub fn save_key(&self, key_pem: &str) -> Result<(), ConfigError> {
        self.write_file(KEY_FILE, key_pem.as_bytes(), 0o600)
    }

    /// Writes the node's certificate and the cluster CA certificate.
    pub fn save_certificates(&self, cert_pem: &str, ca_pem: &str) -> Result<(), ConfigError> {
        self.write_file(CERT_FILE, cert_pem.as_bytes(), 0o644)?;
        self.write_file(CA_FILE, ca_pem.as_bytes(), 0o644)
    }

    /// Loads the node's TLS identity (CA, certificate, key).
    pub fn load_identity(&self) -> Result<ClusterIdentity, ConfigError> {
        ClusterIdentity::from_dir(&self.root, CERT_FILE, KEY_FILE).map_err(|source| {
            ConfigError::Tls {
                dir: self.root.clone(),
                source,
            }
        })
    }

    /// Writes a file with `mode` (also when it exists already, e.g. from a failed join).
    fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), ConfigError> {
        let path = self.file(name);
        let io_err = |source| ConfigError::Io {
            action: "write",
            path: path.clone(),
            source,
        };
        // Remove first so that the mode of a file left behind cannot widen access.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_err)?;
        file.write_all(contents).map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> NodeConfig {
        NodeConfig {
            name: "n1".parse().expect("valid name"),
            listen: "127.0.0.1:8007".parse().expect("valid address"),
            advertise: "https://127.0.0.1:8007".into(),
            server_url: "https://127.0.0.1:8006".into(),
        }
    }

    #[test]
    fn config_round_trips_through_node_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        assert!(!data.is_joined());
        data.save_config(&sample()).expect("save");
        assert!(data.is_joined());
        assert_eq!(data.load_config().expect("load"), sample());
    }

    #[test]
    fn missing_config_says_how_to_join() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = DataDir::new(dir.path())
            .load_config()
            .expect_err("not joined");
        assert!(matches!(err, ConfigError::NotJoined { .. }));
        assert!(err.to_string().contains("kiln-node join"), "{err}");
    }

    #[test]
    fn config_with_invalid_node_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        let json = serde_json::to_string(&sample())
            .expect("json")
            .replace("\"n1\"", "\"Bad_Name\"");
        std::fs::write(dir.path().join(CONFIG_FILE), json).expect("write");
        assert!(matches!(
            data.load_config(),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn joined_data_dir_refuses_a_second_join() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path().join("sub"));
        data.prepare_for_join().expect("fresh dir");
        data.save_config(&sample()).expect("save");
        let err = data.prepare_for_join().expect_err("already joined");
        assert!(err.to_string().contains("remove that directory"), "{err}");
    }

    #[test]
    fn private_key_is_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        // A key left world-readable by an earlier attempt must not stay so.
        std::fs::write(dir.path().join(KEY_FILE), "old").expect("write");
        data.save_key("KEY").expect("save key");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
