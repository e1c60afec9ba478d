//! Async access to a kiln-vmm control socket: requests through the blocking
//! [`ControlClient`] on the blocking pool, and console attachment on a tokio `UnixStream`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_vmm::control::client::{ClientError, ControlClient};
use kiln_vmm::protocol::{ApiError, ErrorKind, Reply, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest reply line accepted before the console stream starts.
const MAX_REPLY_LINE: usize = 64 * 1024;

/// Runs `call` on a fresh connection to `socket`, waiting at most `timeout` for each reply.
pub async fn request<T, F>(socket: &Path, timeout: Duration, call: F) -> Result<T, ClientError>
where
    T: Send + 'static,
    F: FnOnce(&mut ControlClient) -> Result<T, ClientError> + Send + 'static,
{
    let socket: PathBuf = socket.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut client = ControlClient::connect(&socket)?;
        client.set_timeout(Some(timeout))?;
        call(&mut client)
    })
    .await
    .unwrap_or_else(|e| Err(ClientError::Io(std::io::Error::other(e))))
}

/// Whether kiln-vmm refused a request because of the VM's state (e.g. shutdown while paused).
pub fn refused_for_state(err: &ClientError) -> Option<&str> {
    match err {
        ClientError::Refused(ApiError {
            kind: ErrorKind::InvalidState,
            message,
        }) => Some(message),
        _ => None,
    }
}

/// Attaches to the console of the VM at `socket` with scroll-back replay; the stream then
/// carries raw console bytes both ways.
pub async fn attach_console(socket: &Path) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(&Request::ConsoleAttach { replay: true })
        .map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    // Read the reply byte by byte: console bytes follow it at once and must stay unread.
    let mut reply = Vec::new();
    loop {
        let byte = stream.read_u8().await?;
        if byte == b'\n' {
            break;
        }
        if reply.len() >= MAX_REPLY_LINE {
            return Err(std::io::Error::other("kiln-vmm sent an over-long reply"));
        }
        reply.push(byte);
    }
    match serde_json::from_slice::<Response>(&reply) {
        Ok(Response::Ok(Reply::ConsoleAttached { .. })) => Ok(stream),
        Ok(Response::Error(e)) => Err(std::io::Error::other(e.message)),
        Ok(Response::Ok(other)) => Err(std::io::Error::other(format!(
            "kiln-vmm answered console_attach with {other:?}"
        ))),
        Err(e) => Err(std::io::Error::other(format!(
            "kiln-vmm sent a reply this agent does not understand: {e}"
        ))),
    }
}
