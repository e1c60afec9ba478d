//! Byte streams for migration: a Unix socket path or `host:port` (TCP), and between nodes
//! mutual TLS over TCP ([`super::tls`]). The protocol works over any of them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use super::protocol::Token;
use super::tls::{self, MigrateTls};
use super::upgrade;

/// A migration stream: a socket that can be read on one thread while another writes, and
/// shut down from either.
pub trait MigrationStream: Read + Write + Send {
    /// A second handle on the same connection.
    fn try_clone_stream(&self) -> std::io::Result<Box<dyn MigrationStream>>;
    /// Ends the connection both ways (a read blocked on another handle returns).
    fn shutdown_stream(&self);
}

impl MigrationStream for UnixStream {
    fn try_clone_stream(&self) -> std::io::Result<Box<dyn MigrationStream>> {
        Ok(Box::new(self.try_clone()?))
    }

    fn shutdown_stream(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl MigrationStream for TcpStream {
    fn try_clone_stream(&self) -> std::io::Result<Box<dyn MigrationStream>> {
        Ok(Box::new(self.try_clone()?))
    }

    fn shutdown_stream(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// How long one read or write may block before the peer counts as gone.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// `host:port` is TCP; anything with a `/` or without a `:` is a Unix socket path.
fn is_tcp(addr: &str) -> bool {
    !addr.contains('/') && addr.contains(':')
}

/// Connect to a target; with `tls`, over mutual TLS (a `host:port` target only).
pub fn connect(to: &str, tls: Option<&MigrateTls>) -> std::io::Result<Box<dyn MigrationStream>> {
    if is_tcp(to) {
        let s = TcpStream::connect(to)?;
        tcp_options(&s)?;
        Ok(match tls {
            Some(settings) => {
                let mut stream = tls::connect(s, settings)?;
                upgrade::request(
                    &mut stream,
                    &settings.server_name,
                    &Token(settings.token.clone()),
                )
                .map_err(std::io::Error::other)?;
                Box::new(stream)
            }
            None => Box::new(s),
        })
    } else if tls.is_some() {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "mutual TLS needs a host:port target, not a Unix socket",
        ))
    } else {
        let s = UnixStream::connect(to)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Box::new(s))
    }
}

fn tcp_options(s: &TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
}

/// Why no source was accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Nobody connected in time.
    #[error("no source connected within {0:?}")]
    Timeout(Duration),
    /// Accepting failed.
    #[error("cannot accept a connection: {0}")]
    Io(#[from] std::io::Error),
    /// A connection came but failed the TLS handshake or the upgrade (not a cluster member,
    /// wrong protocol, wrong token): the listener goes on waiting for the real source.
    #[error("refused a migration connection from {peer}: {source}")]
    Handshake {
        /// Who connected.
        peer: String,
        /// Why the handshake failed.
        #[source]
        source: std::io::Error,
    },
}

/// Where a target listens; a Unix socket file is removed when this is dropped.
pub enum Listener {
    /// Unix socket.
    Unix(UnixListener, PathBuf),
    /// TCP.
    Tcp(TcpListener),
    /// Mutual TLS over TCP, opened by an HTTP upgrade that must carry the token (if any).
    Tls(TcpListener, Arc<ServerConfig>, Option<Token>),
}

/// What a mutual-TLS listener needs: its configuration and the token sources must present.
pub struct TlsListen {
    /// The server configuration (this node's certificate, the cluster CA for clients).
    pub config: Arc<ServerConfig>,
    /// The one-time token (`None`: any cluster member may migrate here).
    pub token: Option<Token>,
}

impl Listener {
    /// Listen on `addr` (a stale Unix socket file is replaced); with `tls`, a TCP address
    /// whose connections must complete a mutual-TLS handshake.
    pub fn bind(addr: &str, tls: Option<TlsListen>) -> std::io::Result<Listener> {
        if is_tcp(addr) {
            let listener = bind_tcp(addr)?;
            return Ok(match tls {
                Some(TlsListen { config, token }) => Listener::Tls(listener, config, token),
                None => Listener::Tcp(listener),
            });
        }
        if tls.is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "mutual TLS needs a host:port address to listen on, not a Unix socket",
            ));
        }
        let path = PathBuf::from(addr);
        if path.exists() && UnixStream::connect(&path).is_err() {
            let _ = std::fs::remove_file(&path);
        }
        Ok(Listener::Unix(UnixListener::bind(&path)?, path))
    }

    /// The bound TCP address (`host:port`, the port picked by the kernel for port 0).
    pub fn local_addr(&self) -> Option<String> {
        match self {
            Listener::Unix(..) => None,
            Listener::Tcp(l) | Listener::Tls(l, ..) => l.local_addr().ok().map(|a| a.to_string()),
        }
    }

    /// Accept one source before `deadline`; returns the stream and a description of the peer.
    pub fn accept(
        &self,
        deadline: Instant,
    ) -> Result<(Box<dyn MigrationStream>, String), AcceptError> {
        let fd = match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) | Listener::Tls(l, ..) => l.as_raw_fd(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !readable_within(fd, left)? {
            return Err(AcceptError::Timeout(left));
        }
        match self {
            Listener::Unix(l, path) => {
                let (s, _) = l.accept()?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok((Box::new(s), format!("unix:{}", path.display())))
            }
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                tcp_options(&s)?;
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Tls(l, config, token) => {
                let (s, peer) = l.accept()?;
                let peer = peer.to_string();
                // A silent peer must not hold the listener for long.
                s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let stream = tls::accept(s, config.clone())
                    .and_then(|mut stream| {
                        upgrade::accept(&mut stream, token.as_ref())
                            .map_err(std::io::Error::other)?;
                        stream.set_timeouts(IO_TIMEOUT)?;
                        Ok(stream)
                    })
                    .map_err(|source| AcceptError::Handshake {
                        peer: peer.clone(),
                        source,
                    })?;
                Ok((Box::new(stream), format!("{peer} (mutual TLS)")))
            }
        }
    }
}

/// Binds `host:port`, or the first free port of `host:low-high` (a firewall-friendly range,
/// as Proxmox's 60000-60050).
fn bind_tcp(addr: &str) -> std::io::Result<TcpListener> {
    let Some((host, ports)) = addr.rsplit_once(':') else {
        return TcpListener::bind(addr);
    };
    let Some((low, high)) = ports.split_once('-') else {
        return TcpListener::bind(addr);
    };
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{ports:?} is not a port range such as 60000-60050"),
        )
    };
    let (low, high): (u16, u16) = (
        low.parse().map_err(|_| bad())?,
        high.parse().map_err(|_| bad())?,
    );
    if low > high {
        return Err(bad());
    }
    for port in low..=high {
        match TcpListener::bind(format!("{host}:{port}")) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            other => return other,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port of {low}-{high} on {host} is in use (too many migrations at once?)"),
    ))
}

/// How long a TLS client may take for its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `fd` is readable (a listener: a connection waits) or `timeout` passes.
fn readable_within(fd: std::os::fd::RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `pfd` is one valid pollfd on this stack frame, and the count says one.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_range_takes_the_first_free_port() {
        let first = bind_tcp("127.0.0.1:0").expect("bind");
        let taken = first.local_addr().expect("addr").port();
        let Some(next) = taken.checked_add(1) else {
            return;
        };
        let l = bind_tcp(&format!("127.0.0.1:{taken}-{next}"));
        // The next port may be someone else's too; then the range is honestly full.
        match l {
            Ok(l) => assert_eq!(l.local_addr().expect("addr").port(), next),
            Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
        }
        let e = bind_tcp("127.0.0.1:9-8").expect_err("reversed");
        assert!(e.to_string().contains("port range"), "{e}");
        assert!(bind_tcp("127.0.0.1:x-9").is_err());
    }

    #[test]
    fn addresses_choose_the_transport() {
        assert!(is_tcp("127.0.0.1:4000"));
        assert!(is_tcp("[::1]:4000"));
        assert!(!is_tcp("/run/kiln/mig.sock"));
        assert!(!is_tcp("mig.sock"));
    }
}
