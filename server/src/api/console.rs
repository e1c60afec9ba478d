//! `GET /api2/kiln/nodes/{node}/qemu/{vmid}/console`: a VM's serial console as a WebSocket.
//!
//! The server authenticates the browser (session cookie, same-origin check), opens the VM's
//! console on its node over mutual TLS and pipes bytes both ways. The stream ends when either
//! side closes, when the VM stops, or when the session ends.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use kiln_node_client::tokio_tungstenite::tungstenite::Message as NodeMessage;
use kiln_node_client::ConsoleSocket;
use tower_sessions::Session;

use super::error::ApiError;
use super::nodes::known_node;
use super::qemu::find_vm;
use crate::auth::{authorize, session, AuthUser, Privilege};
use crate::state::AppState;
use crate::vms::observe;

/// How often an open console re-checks its session.
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Browsers send `Origin` on WebSocket handshakes and cookies go along cross-site for them:
/// accept only our own origin (cross-site WebSocket hijacking).
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(()); // not a browser
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if origin.to_str().ok() == Some(&format!("https://{host}")) {
        Ok(())
    } else {
        Err(ApiError::Refused(
            "console connections are accepted only from the Kiln web UI's own origin".into(),
        ))
    }
}

/// The console WebSocket handler.
pub async fn console(
    State(app): State<AppState>,
    user: AuthUser,
    session: Session,
    Path((node, vmid)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &format!("/vms/{}", vm.vmid), Privilege::VmConsole)?;
    check_origin(&headers)?;
    if !observe(&app, &vm).is_active() {
        return Err(ApiError::Conflict(format!(
            "VM {} is not running; start it to use its console",
            vm.vmid
        )));
    }
    let rec = known_node(&app, &node).await?;
    let client = app.clients.operation(&rec).map_err(ApiError::Unavailable)?;
    // Connect before upgrading, so that a failure is an HTTP error the UI can show.
    let upstream = client
        .console(vm.vmid)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    // API tokens have no session; a browser's console ends with its session.
    let id = session.id();
    if id.is_none() && user.token.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    tracing::info!(user = %user.userid, vmid = vm.vmid, "console opened");
    Ok(ws.on_upgrade(move |socket| async move {
        let session_ended = async {
            loop {
                tokio::time::sleep(SESSION_CHECK).await;
                if let Some(id) = &id {
                    if !session::still_valid(&app.sessions, id, &app.session_policy).await {
                        return;
                    }
                }
                // The account, the token or the VM.Console privilege may be gone by now.
                let still_allowed = user.refreshed(&app).is_some_and(|u| {
                    authorize(&u, &format!("/vms/{}", vm.vmid), Privilege::VmConsole).is_ok()
                });
                if !still_allowed {
                    return;
                }
            }
        };
        tokio::select! {
            _ = pipe(socket, upstream) => {},
            _ = session_ended => tracing::info!(vmid = vm.vmid, "console closed: session ended"),
        }
    }))
}

async fn pipe(browser: WebSocket, node: ConsoleSocket) {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_node, mut from_node) = node.split();
    let up = async {
        while let Some(Ok(msg)) = from_browser.next().await {
            let out = match msg {
                Message::Binary(b) => NodeMessage::Binary(b),
                Message::Text(t) => NodeMessage::Binary(t.as_bytes().to_vec().into()),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_node.send(out).await.is_err() {
                break;
            }
        }
        let _ = to_node.close().await;
    };
    let down = async {
        while let Some(Ok(msg)) = from_node.next().await {
            let out = match msg {
                NodeMessage::Binary(b) => Message::Binary(b),
                NodeMessage::Text(t) => Message::Binary(t.as_bytes().to_vec().into()),
                NodeMessage::Close(_) => break,
                _ => continue,
            };
            if to_browser.send(out).await.is_err() {
                break;
            }
        }
        let _ = to_browser.close().await;
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}
