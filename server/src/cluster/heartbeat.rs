//! The heartbeat loop: asks every node for its facts each period, over mutual TLS, and
//! announces nodes going offline or coming back.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use kiln_api_types::NodeState;
use kiln_node_client::{NodeClient, NodeName};

use crate::db::NodeRecord;
use crate::state::AppState;

/// Cached clients, rebuilt when a node's URL changes.
#[derive(Default)]
struct Clients(HashMap<String, (String, NodeClient)>);

impl Clients {
    fn get(
        &mut self,
        app: &AppState,
        rec: &NodeRecord,
        timeout: Duration,
    ) -> Result<&NodeClient, String> {
        let stale = self
            .0
            .get(&rec.name)
            .is_none_or(|(url, _)| *url != rec.api_url);
        if stale {
            let name: NodeName = rec.name.parse().map_err(|e| format!("{e}"))?;
            let client = NodeClient::new(&app.identity, name, &rec.api_url, timeout)
                .map_err(|e| e.to_string())?;
            self.0
                .insert(rec.name.clone(), (rec.api_url.clone(), client));
        }
        self.0
            .get(&rec.name)
            .map(|(_, c)| c)
            .ok_or_else(|| "client cache lost an entry".to_owned())
    }
}

/// Run forever: one heartbeat round per `period`.
pub async fn run(app: AppState, period: Duration) {
    let mut clients = Clients::default();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A request may take most of a period, never longer than the offline timeout.
    let request_timeout = period
        .max(Duration::from_millis(900))
        .min(app.nodes.timeout());
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
            match clients.get(&app, rec, request_timeout) {
                Ok(c) => {
                    let c = c.clone();
                    calls.push(async move {
                        (
                            rec.name.clone(),
                            c.status().await.map_err(|e| e.to_string()),
                        )
                    });
                }
                Err(e) => app.nodes.record_failure(&rec.name, e),
            }
        }
        for (name, result) in join_all(calls).await {
            match result {
                Ok(facts) if facts.name == name => app.nodes.record_heartbeat(&name, facts),
                Ok(facts) => app
                    .nodes
                    .record_failure(&name, format!("answered as node '{}' instead", facts.name)),
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
        app.changes.notify();
    }
}
