//! Serves the control socket: a thread per connection, JSON lines until a `console_attach`
//! turns the connection into a raw console stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::protocol::{ApiError, ErrorKind, Reply, Request, Response};
use crate::lease::Lease;
use crate::migration::{send, MigrationError};
use crate::state::StopReason;
use crate::vm::{VmError, VmShared};

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Someone already serves this path.
    #[error("control socket {0} is in use by another process; is this VM already running?")]
    InUse(PathBuf),
    /// bind(2) failed.
    #[error("cannot create control socket {path}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Requests being answered right now; the process waits for them before exiting so that a
/// `stop` gets its reply.
#[derive(Default)]
pub struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlightGuard(self)
    }

    /// Wait (at most `timeout`) until no request is being answered.
    pub fn wait_idle(&self, timeout: Duration) {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .idle
            .wait_timeout_while(count, timeout, |c| *c > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        *count -= 1;
        self.0.idle.notify_all();
    }
}

/// The bound socket; removes its path when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Bind `path` (mode 0600). A stale socket file nobody answers on is replaced. The socket
    /// is bound under a temporary name and renamed into place once it listens, so a client
    /// that sees the path can connect at once.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let bind_err = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let mut temp_name = path.as_os_str().to_owned();
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = PathBuf::from(temp_name);
        let _ = std::fs::remove_file(&temp);
        let listener = UnixListener::bind(&temp).map_err(bind_err)?;
        let placed = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&temp);
            return Err(bind_err(e));
        }
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serve connections on a background thread.
    pub fn serve(
        &self,
        vm: Arc<VmShared>,
        in_flight: Arc<InFlight>,
        lease: Arc<Lease>,
    ) -> std::io::Result<()> {
        let listener = self.listener.try_clone()?;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let vm = vm.clone();
                    let in_flight = in_flight.clone();
                    let lease = lease.clone();
                    let _ = std::thread::Builder::new()
                        .name("control-conn".into())
                        .spawn(move || serve_connection(stream, &vm, &in_flight, &lease));
                }
            })?;
        Ok(())
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn error_reply(err: VmError) -> Response {
    let kind = match err {
        VmError::State(_) | VmError::ShutdownWhilePaused => ErrorKind::InvalidState,
        _ => ErrorKind::Internal,
    };
    Response::Error(ApiError {
        kind,
        message: err.to_string(),
    })
}

/// What a connection does after a request.
enum Next {
    /// Send this reply and read the next request.
    Reply(Response),
    /// Switch to the console stream.
    Console {
        /// Replay the scroll-back first.
        replay: bool,
    },
}

fn migration_reply(result: Result<crate::protocol::MigrationStatus, MigrationError>) -> Response {
    match result {
        Ok(status) => Response::Ok(Reply::Migration(Box::new(status))),
        Err(e) => Response::Error(ApiError {
            kind: match e {
                MigrationError::AlreadyRunning | MigrationError::NotRunning(_) => {
                    ErrorKind::InvalidState
                }
                _ => ErrorKind::Internal,
            },
            message: e.to_string(),
        }),
    }
}

/// The reply to a decision at a handover point.
fn decided(result: Result<crate::protocol::MigrationStatus, String>) -> Response {
    match result {
        Ok(status) => Response::Ok(Reply::Migration(Box::new(status))),
        Err(message) => Response::Error(ApiError {
            kind: ErrorKind::InvalidState,
            message,
        }),
    }
}

fn no_migration() -> Response {
    Response::Error(ApiError {
        kind: ErrorKind::InvalidState,
        message: "no migration is in progress on this VM; start one with migrate_send".into(),
    })
}

/// How long `migrate_status` with `wait` blocks at most.
const MIGRATION_WAIT: Duration = Duration::from_secs(3600);

fn handle(vm: &Arc<VmShared>, lease: &Lease, request: Request) -> Next {
    let result = match request {
        Request::Lease {
            deadline_monotonic_ns,
        } => {
            lease.set(deadline_monotonic_ns);
            let remaining_ms = deadline_monotonic_ns
                .map(|d| d.saturating_sub(crate::lease::monotonic_now_ns()) / 1_000_000);
            Ok(Reply::Lease {
                deadline_monotonic_ns,
                remaining_ms,
            })
        }
        Request::MigrateSend {
            to,
            downtime_ms,
            bwlimit_mib_s,
            await_commit,
            commit_timeout_ms,
            tls,
        } => {
            return Next::Reply(migration_reply(send::start(
                vm.clone(),
                send::SendOptions {
                    to,
                    downtime_ms,
                    bwlimit_mib_s,
                    await_commit: await_commit
                        .then(|| Duration::from_millis(commit_timeout_ms.max(1))),
                    tls,
                },
            )))
        }
        Request::MigrateHandover => return Next::Reply(decided(vm.migration().request_handover())),
        Request::MigrateCommit => return Next::Reply(decided(vm.migration().request_commit())),
        Request::MigrateFinish => return Next::Reply(decided(vm.migration().request_finish())),
        Request::MigrateTakeback => return Next::Reply(decided(vm.migration().request_takeback())),
        Request::MigrateCancel => return Next::Reply(decided(vm.migration().request_cancel())),
        Request::MigrateStatus { wait, final_only } => {
            let status = if wait && final_only {
                vm.migration().wait_final(MIGRATION_WAIT)
            } else if wait {
                vm.migration().wait_settled(MIGRATION_WAIT)
            } else {
                vm.migration().snapshot()
            };
            return Next::Reply(match status {
                Some(status) => Response::Ok(Reply::Migration(Box::new(status))),
                None => no_migration(),
            });
        }
        Request::ConsoleAttach { replay } => return Next::Console { replay },
        Request::Status => Ok(Reply::Status(vm.status())),
        Request::Pause | Request::Resume if vm.migration().in_progress() => {
            return Next::Reply(Response::Error(ApiError {
                kind: ErrorKind::InvalidState,
                message:
                    "a live migration of this VM is in progress; wait for it to end or cancel it"
                        .into(),
            }))
        }
        Request::Pause => vm.pause().map(Reply::Status),
        Request::Resume => vm.resume().map(Reply::Status),
        Request::Shutdown { timeout_ms } => vm
            .shutdown(Duration::from_millis(timeout_ms))
            .map(|reason| Reply::Stopped { reason }),
        Request::Stop => Ok(Reply::Stopped {
            reason: vm.stop(StopReason::StopRequested),
        }),
        Request::Stats => Ok(Reply::Stats(vm.stats())),
    };
    Next::Reply(result.map_or_else(error_reply, Response::Ok))
}

fn write_response(out: &mut UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

fn serve_connection(stream: UnixStream, vm: &Arc<VmShared>, in_flight: &InFlight, lease: &Lease) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let guard = in_flight.enter();
        let request = match serde_json::from_str::<Request>(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                let response = Response::Error(ApiError {
                    kind: ErrorKind::BadRequest,
                    message: format!("not a valid request ({e}); see kiln_vmm::protocol::Request"),
                });
                if write_response(&mut out, &response).is_err() {
                    return;
                }
                continue;
            }
        };
        match handle(vm, lease, request) {
            Next::Reply(response) => {
                if write_response(&mut out, &response).is_err() {
                    return;
                }
            }
            Next::Console { replay } => {
                drop(guard);
                console_stream(input, out, vm, replay);
                return;
            }
        }
    }
}

/// Raw console bytes both ways until the client closes or the VM stops.
fn console_stream(
    mut input: BufReader<UnixStream>,
    mut out: UnixStream,
    vm: &Arc<VmShared>,
    replay: bool,
) {
    let reader = vm.console().attach(replay);
    let reply = Response::Ok(Reply::ConsoleAttached {
        replay_bytes: reader.replay.len(),
    });
    if write_response(&mut out, &reply).is_err() || out.write_all(&reader.replay).is_err() {
        return;
    }
    let live = reader.live;
    let output = std::thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            let mut buf = Vec::new();
            while let Ok(chunk) = live.recv() {
                buf.clear();
                buf.extend_from_slice(&chunk);
                while let Ok(more) = live.try_recv() {
                    buf.extend_from_slice(&more);
                }
                if out.write_all(&buf).is_err() {
                    break;
                }
            }
            // The VM stopped (or the client went away): end the stream.
            let _ = out.shutdown(std::net::Shutdown::Both);
        });
    if output.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => vm.console_input(&buf[..n]),
        }
    }
}
