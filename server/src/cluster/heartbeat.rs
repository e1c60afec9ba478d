//! The heartbeat loop: asks every node for its facts each period, over mutual TLS, and
//! announces nodes going offline or coming back.

use std::time::Duration;

use futures::future::join_all;
use kiln_api_types::NodeState;
use kiln_node_client::wire::HeartbeatRequest;

use crate::state::AppState;

/// Run forever: one heartbeat round per `period`.
pub async fn run(app: AppState, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let nodes = match app.db.nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("heartbeat: cannot list nodes: {e}");
                continue;
            }
        };
        app.nodes
            .retain(&nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>());
        let mut calls = Vec::new();
        for rec in &nodes {
            match app.clients.heartbeat(rec) {
                Ok(c) => {
                    let grant = app.nodes.next_grant(&rec.name);
                    let request = HeartbeatRequest { lease: Some(grant) };
                    calls.push(async move {
                        (
                            rec.name.clone(),
                            grant.id,
                            c.heartbeat(&request).await.map_err(|e| e.to_string()),
                        )
                    });
                }
                Err(e) => app.nodes.record_failure(&rec.name, e),
            }
        }
        for (name, grant, result) in join_all(calls).await {
            match result {
                Ok(answer) if answer.facts.name == name => {
                    app.nodes.record_answer(&name, grant, answer)
                }
                Ok(answer) => app.nodes.record_failure(
                    &name,
                    format!("answered as node '{}' instead", answer.facts.name),
                ),
                Err(e) => app.nodes.record_failure(&name, e),
            }
        }
        for (name, before, now, error) in app.nodes.take_transitions() {
            match (before, now) {
                (_, NodeState::Online) => tracing::info!(node = %name, "node is online"),
                (Some(NodeState::Online), NodeState::Offline) => tracing::warn!(
                    node = %name,
                    "node is offline: no heartbeat for {:?}: {}",
                    app.nodes.timeout(),
                    error.unwrap_or_default()
                ),
                _ => tracing::debug!(node = %name, "node state {now:?}"),
            }
        }
        crate::vms::reconcile::run_once(&app).await;
        crate::vms::onboot::run_once(&app).await;
        crate::ha::manager::run_round(&app).await;
        app.changes.notify();
    }
}
