//! Byte streams for migration: a Unix socket path or `host:port` (TCP). The protocol works
//! over any `Read + Write`; node-to-node mutual TLS will wrap the same bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

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

/// Connect to a target.
pub fn connect(to: &str) -> std::io::Result<Box<dyn MigrationStream>> {
    if is_tcp(to) {
        let s = TcpStream::connect(to)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Box::new(s))
    } else {
        let s = UnixStream::connect(to)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Box::new(s))
    }
}

/// Where a target listens; a Unix socket file is removed when this is dropped.
pub enum Listener {
    /// Unix socket.
    Unix(UnixListener, PathBuf),
    /// TCP.
    Tcp(TcpListener),
}

impl Listener {
    /// Listen on `addr` (a stale Unix socket file is replaced).
    pub fn bind(addr: &str) -> std::io::Result<Listener> {
        if is_tcp(addr) {
            return Ok(Listener::Tcp(TcpListener::bind(addr)?));
        }
        let path = PathBuf::from(addr);
        if path.exists() && UnixStream::connect(&path).is_err() {
            let _ = std::fs::remove_file(&path);
        }
        Ok(Listener::Unix(UnixListener::bind(&path)?, path))
    }

    /// Accept one source; returns the stream and a description of the peer.
    pub fn accept(&self) -> std::io::Result<(Box<dyn MigrationStream>, String)> {
        match self {
            Listener::Unix(l, path) => {
                let (s, _) = l.accept()?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok((Box::new(s), format!("unix:{}", path.display())))
            }
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok((Box::new(s), peer.to_string()))
            }
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
    fn addresses_choose_the_transport() {
        assert!(is_tcp("127.0.0.1:4000"));
        assert!(is_tcp("[::1]:4000"));
        assert!(!is_tcp("/run/kiln/mig.sock"));
        assert!(!is_tcp("mig.sock"));
    }
}
