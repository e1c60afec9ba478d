//! `GET /v1/vms/{vmid}/console`: the VM's serial console as a WebSocket.
//!
//! The agent attaches to kiln-vmm's console (with scroll-back replay) *before* upgrading, so a
//! VM that is not running gets an HTTP error, not a socket that closes at once. Then bytes flow
//! both ways: console output as binary frames, any data frame from the client as input. Each
//! WebSocket has its own kiln-vmm console connection, so several clients can watch at once.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{ApiError, AppState};

/// Upgrades to a WebSocket piped to the console of VM `vmid`.
pub async fn console(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let vmid: u32 = raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("VM id {raw:?} is not a number"),
        )
    })?;
    let socket = state.vms.console_socket(vmid)?;
    let stream = crate::vms::control::attach_console(&socket)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("cannot attach to the console of VM {vmid}: {e}; is it still running?"),
            )
        })?;
    Ok(upgrade.on_upgrade(move |ws| pipe(vmid, ws, stream)))
}

/// Copies bytes both ways until either side ends.
async fn pipe(vmid: u32, ws: WebSocket, console: UnixStream) {
    let (mut ws_out, mut ws_in) = ws.split();
    let (mut from_vm, mut to_vm) = console.into_split();
    let output = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_vm.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let frame = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
            if ws_out.send(frame).await.is_err() {
                return;
            }
        }
        // The VM stopped: say so and close.
        let _ = ws_out.send(Message::Close(None)).await;
    };
    let input = async {
        while let Some(Ok(message)) = ws_in.next().await {
            let written = match message {
                Message::Binary(bytes) => to_vm.write_all(&bytes).await,
                Message::Text(text) => to_vm.write_all(text.as_bytes()).await,
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = output => {}
        () = input => {}
    }
    tracing::debug!("console of VM {vmid} closed");
}
