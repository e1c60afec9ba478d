//! `GET /api2/kiln/events`: server-sent events with the cluster picture, for the live UI.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use kiln_api_types::ClusterEvent;

use super::cluster::visible_resources;
use super::error::ApiError;
use super::tasks::recent;
use crate::auth::{session, AuthUser};
use crate::state::AppState;

/// At most one event per this period, however often the cluster changes.
const MIN_GAP: Duration = Duration::from_millis(500);

async fn snapshot(app: &AppState, user: &AuthUser) -> Result<ClusterEvent, ApiError> {
    Ok(ClusterEvent {
        resources: visible_resources(app, user, None).await?,
        tasks: recent(app, user, 50).await?,
    })
}

/// The event stream: one snapshot at once, then one after each change.
pub async fn stream(
    State(app): State<AppState>,
    user: AuthUser,
    session: tower_sessions::Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = app.changes.subscribe();
    let id = session.id();
    let stream = async_stream_lite(move |tx| async move {
        loop {
            // The stream outlives the request that opened it: end it with the session, the
            // user's account or the token, and judge each event by the current permissions.
            let valid = match (&user.token, &id) {
                (Some(_), _) => true,
                (None, Some(id)) => {
                    session::still_valid(&app.sessions, id, &app.session_policy).await
                }
                (None, None) => false,
            };
            let Some(current) = user.refreshed(&app).filter(|_| valid) else {
                return;
            };
            match snapshot(&app, &current).await {
                Ok(ev) => {
                    let event = Event::default().json_data(&ev).unwrap_or_default();
                    if tx.send(Ok(event)).await.is_err() {
                        return; // client gone
                    }
                }
                Err(e) => tracing::warn!("cannot build cluster event: {e}"),
            }
            tokio::time::sleep(MIN_GAP).await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream fed by a producer task through a small channel; the task ends when the client
/// disconnects (the receiver is dropped).
fn async_stream_lite<T, F, Fut>(producer: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
