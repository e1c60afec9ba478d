//! Mutual TLS on the migration stream between nodes, spoken by kiln-vmm itself.
//!
//! The source's kiln-vmm connects straight to the target's (no agent relays the bytes): both
//! present their node's certificate, and both accept only a peer whose certificate the
//! cluster CA issued — the source checks the target's for the target node's name. ALPN
//! `kiln-migration/1` keeps the stream apart from the node API on the same certificates.
//! The target's agent also hands both sides a one-time token (see [`super::protocol`]'s
//! `Config`), so a connection belongs to the migration the agents agreed on.
//!
//! [`TlsStream`] is a blocking rustls stream that can be read on one thread while another
//! writes: the TLS state sits behind a mutex that is never held while waiting for the peer to
//! send, only while encrypting, decrypting or writing to the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use kiln_tls::{ClusterIdentity, TlsError};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use serde::{Deserialize, Serialize};

use super::transport::MigrationStream;

/// ALPN protocol of the migration stream.
pub const ALPN: &[u8] = b"kiln-migration/1";
/// Plaintext rustls may buffer before a write blocks on the socket: a whole 1 MiB frame.
const BUFFER_LIMIT: usize = (1 << 20) + (64 << 10);
/// Ciphertext read from the socket at once.
const READ_CHUNK: usize = 256 << 10;

/// Where a node's TLS identity lives (the agent's files, readable by kiln-vmm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    fn identity(&self) -> Result<ClusterIdentity, TlsError> {
        ClusterIdentity::from_files(&self.ca, &self.cert, &self.key)
    }

    /// A client configuration for connecting to a target node's kiln-vmm.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = self.identity()?.client_config_with(bulk_provider())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// A server configuration for a target kiln-vmm: only cluster members may connect.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = self.identity()?.server_config_with(bulk_provider())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// The ring provider with AES-128-GCM first: guest memory is bulk data, and AES-128 costs
/// about a third less per byte than AES-256 (the default first choice) at the same
/// security margin for a one-time session key. TLS 1.3 only.
fn bulk_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// Where and how the source reaches a target node's kiln-vmm.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateTls {
    /// The target node's name; its certificate must be issued for it by the cluster CA.
    pub server_name: String,
    /// The one-time token the target's agent gave for this migration.
    pub token: String,
    /// This (source) node's identity.
    pub identity: TlsFiles,
}

impl std::fmt::Debug for MigrateTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateTls")
            .field("server_name", &self.server_name)
            .field("token", &"<redacted>")
            .field("identity", &self.identity)
            .finish()
    }
}

/// Connects to `addr` (host:port) and completes the handshake as a client.
pub fn connect(tcp: TcpStream, tls: &MigrateTls) -> io::Result<TlsStream> {
    let config = tls.identity.client_config().map_err(io::Error::other)?;
    let name = ServerName::try_from(tls.server_name.clone()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a node name: {e}", tls.server_name),
        )
    })?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    TlsStream::handshake(tcp, conn.into())
}

/// Completes the handshake of an accepted connection as the server.
pub fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    TlsStream::handshake(tcp, conn.into())
}

/// Whether an I/O error came from TLS (handshake, certificates) rather than the network.
pub fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>() || inner.is::<TlsError>())
}

struct Tls {
    conn: Connection,
    /// Ciphertext read from the socket; rustls has taken `pending[taken..]` not yet (it takes
    /// a few KiB per call, so the rest is not moved each time).
    pending: Vec<u8>,
    taken: usize,
}

struct Shared {
    tls: Mutex<Tls>,
    tcp: TcpStream,
}

/// A mutual-TLS migration stream (blocking; see the module documentation).
pub struct TlsStream {
    shared: Arc<Shared>,
    buf: Vec<u8>,
}

impl TlsStream {
    fn handshake(mut tcp: TcpStream, mut conn: Connection) -> io::Result<TlsStream> {
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        // A client learns of a refused certificate only from the server's next record.
        while conn.wants_write() {
            conn.write_tls(&mut tcp)?;
        }
        Ok(TlsStream {
            shared: Arc::new(Shared {
                tls: Mutex::new(Tls {
                    conn,
                    pending: Vec::new(),
                    taken: 0,
                }),
                tcp,
            }),
            buf: vec![0; READ_CHUNK],
        })
    }

    /// Read and write timeouts on the socket.
    pub fn set_timeouts(&self, timeout: std::time::Duration) -> io::Result<()> {
        self.shared.tcp.set_read_timeout(Some(timeout))?;
        self.shared.tcp.set_write_timeout(Some(timeout))
    }

    fn lock(&self) -> MutexGuard<'_, Tls> {
        self.shared.tls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes whatever rustls has ready to the socket (blocking).
    fn flush_tls(tls: &mut Tls, mut tcp: &TcpStream) -> io::Result<()> {
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tcp)?;
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut tls = self.lock();
                match tls.conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if tls.taken < tls.pending.len() {
                    let Tls {
                        conn,
                        pending,
                        taken,
                    } = &mut *tls;
                    *taken += conn.read_tls(&mut &pending[*taken..])?;
                    if *taken == pending.len() {
                        pending.clear();
                        *taken = 0;
                    }
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Alerts and key updates answer at once.
                    Self::flush_tls(&mut tls, &self.shared.tcp)?;
                    continue;
                }
            }
            // Wait for the peer without holding the lock, so a writer is never held up.
            let n = (&self.shared.tcp).read(&mut self.buf)?;
            let mut tls = self.lock();
            if n == 0 {
                // End of stream: rustls tells a clean close from a cut one.
                tls.conn.read_tls(&mut io::empty())?;
                tls.conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return match tls.conn.reader().read(out) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    other => other,
                };
            }
            tls.pending.extend_from_slice(&self.buf[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut tls = self.lock();
        let n = tls.conn.writer().write(data)?;
        Self::flush_tls(&mut tls, &self.shared.tcp)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut tls = self.lock();
        Self::flush_tls(&mut tls, &self.shared.tcp)?;
        (&self.shared.tcp).flush()
    }
}

impl MigrationStream for TlsStream {
    fn try_clone_stream(&self) -> io::Result<Box<dyn MigrationStream>> {
        Ok(Box::new(TlsStream {
            shared: self.shared.clone(),
            buf: vec![0; READ_CHUNK],
        }))
    }

    fn shutdown_stream(&self) {
        let _ = self.shared.tcp.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let tls = MigrateTls {
            server_name: "n2".into(),
            token: "s3cret-token".into(),
            identity: TlsFiles {
                ca: "/ca".into(),
                cert: "/cert".into(),
                key: "/key".into(),
            },
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("n2"), "{shown}");
    }
}
