//! Typed client of the control socket (for the node agent and the tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{ApiError, MigrationStatus, Reply, Request, Response, VmStats, VmStatus};
use crate::state::StopReason;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot connect to the kiln-vmm control socket {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("control socket I/O failed")]
    Io(#[from] std::io::Error),
    /// The VMM closed the connection before replying (it stops right after a stop).
    #[error("kiln-vmm closed the control connection without a reply")]
    Closed,
    /// The reply was not valid JSON of the protocol.
    #[error("kiln-vmm sent a reply this client does not understand: {line}")]
    BadReply {
        /// The line.
        line: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The VMM answered with an error.
    #[error("kiln-vmm refused the request: {}", .0.message)]
    Refused(ApiError),
    /// A reply of another kind than the request calls for.
    #[error("kiln-vmm sent an unexpected reply: {0:?}")]
    UnexpectedReply(Box<Reply>),
}

/// A connection to one VM's control socket.
pub struct ControlClient {
    input: BufReader<UnixStream>,
    out: UnixStream,
}

impl ControlClient {
    /// Connect.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let out = stream.try_clone()?;
        Ok(ControlClient {
            input: BufReader::new(stream),
            out,
        })
    }

    /// Limit how long a reply may take (None: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.out.set_read_timeout(timeout)?;
        Ok(())
    }

    /// Send a request, read its reply.
    pub fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        let mut reply = String::new();
        if self.input.read_line(&mut reply)? == 0 {
            return Err(ClientError::Closed);
        }
        match serde_json::from_str::<Response>(reply.trim()) {
            Ok(Response::Ok(reply)) => Ok(reply),
            Ok(Response::Error(e)) => Err(ClientError::Refused(e)),
            Err(source) => Err(ClientError::BadReply {
                line: reply,
                source,
            }),
        }
    }

    fn expect_status(&mut self, request: &Request) -> Result<VmStatus, ClientError> {
        match self.request(request)? {
            Reply::Status(s) => Ok(s),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    fn expect_stopped(&mut self, request: &Request) -> Result<StopReason, ClientError> {
        match self.request(request)? {
            Reply::Stopped { reason } => Ok(reason),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// `status`.
    pub fn status(&mut self) -> Result<VmStatus, ClientError> {
        self.expect_status(&Request::Status)
    }

    /// `pause`.
    pub fn pause(&mut self) -> Result<VmStatus, ClientError> {
        self.expect_status(&Request::Pause)
    }

    /// `resume`.
    pub fn resume(&mut self) -> Result<VmStatus, ClientError> {
        self.expect_status(&Request::Resume)
    }

    /// `shutdown`.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<StopReason, ClientError> {
        self.expect_stopped(&Request::Shutdown {
            timeout_ms: timeout.as_millis() as u64,
        })
    }

    /// `stop`.
    pub fn stop(&mut self) -> Result<StopReason, ClientError> {
        self.expect_stopped(&Request::Stop)
    }

    /// `stats`.
    pub fn stats(&mut self) -> Result<VmStats, ClientError> {
        match self.request(&Request::Stats)? {
            Reply::Stats(s) => Ok(s),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// `lease`: renew (or with `None` disarm) the HA lease; returns the time left in ms.
    pub fn lease(
        &mut self,
        deadline_monotonic_ns: Option<u64>,
    ) -> Result<Option<u64>, ClientError> {
        match self.request(&Request::Lease {
            deadline_monotonic_ns,
        })? {
            Reply::Lease { remaining_ms, .. } => Ok(remaining_ms),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    fn expect_migration(&mut self, request: &Request) -> Result<MigrationStatus, ClientError> {
        match self.request(request)? {
            Reply::Migration(s) => Ok(*s),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }

    /// `migrate_send`: start a live migration to `to` (committed at once).
    pub fn migrate_send(
        &mut self,
        to: &str,
        downtime_ms: u64,
        bwlimit_mib_s: Option<u64>,
    ) -> Result<MigrationStatus, ClientError> {
        self.migrate_send_with(&Request::MigrateSend {
            to: to.to_string(),
            downtime_ms,
            bwlimit_mib_s,
            await_commit: false,
            commit_timeout_ms: crate::control::protocol::DEFAULT_COMMIT_TIMEOUT_MS,
            tls: None,
        })
    }

    /// `migrate_send` with every option (`request` must be a [`Request::MigrateSend`]).
    pub fn migrate_send_with(&mut self, request: &Request) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(request)
    }

    /// `migrate_handover` (source): hand the paused VM over to the cluster's decision.
    pub fn migrate_handover(&mut self) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateHandover)
    }

    /// `migrate_commit` (target): run the VM that waits for its commit here.
    pub fn migrate_commit(&mut self) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateCommit)
    }

    /// `migrate_finish` (source, handed over): the target runs the VM; exit.
    pub fn migrate_finish(&mut self) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateFinish)
    }

    /// `migrate_takeback` (source, handed over): the target lost the VM; resume it here.
    pub fn migrate_takeback(&mut self) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateTakeback)
    }

    /// `migrate_cancel`.
    pub fn migrate_cancel(&mut self) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateCancel)
    }

    /// `migrate_status`; with `wait`, once the migration has ended or awaits its commit.
    pub fn migrate_status(&mut self, wait: bool) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateStatus {
            wait,
            final_only: false,
        })
    }

    /// `migrate_status` waiting until the migration has ended (`final_only`), or until it
    /// ended or awaits its commit.
    pub fn migrate_wait(&mut self, final_only: bool) -> Result<MigrationStatus, ClientError> {
        self.expect_migration(&Request::MigrateStatus {
            wait: true,
            final_only,
        })
    }

    /// `console_attach`: the connection becomes the console stream.
    pub fn attach_console(mut self, replay: bool) -> Result<ConsoleStream, ClientError> {
        match self.request(&Request::ConsoleAttach { replay })? {
            Reply::ConsoleAttached { replay_bytes } => Ok(ConsoleStream {
                input: self.input,
                out: self.out,
                replay_bytes,
            }),
            other => Err(ClientError::UnexpectedReply(Box::new(other))),
        }
    }
}

/// The console byte stream: read guest output, write guest input.
pub struct ConsoleStream {
    input: BufReader<UnixStream>,
    out: UnixStream,
    /// Scroll-back bytes at the start of the stream.
    pub replay_bytes: usize,
}

impl ConsoleStream {
    /// Limit how long a read may block (None: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.out.set_read_timeout(timeout)
    }
}

impl Read for ConsoleStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for ConsoleStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
