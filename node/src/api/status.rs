//! `GET /v1/status`: the heartbeat.

use axum::extract::State;
use axum::Json;
use kiln_node_client::wire::NodeFacts;

use super::AppState;

/// The latest sampled facts with the VMs as they are now; never touches `/proc` itself.
pub async fn status(State(state): State<AppState>) -> Json<NodeFacts> {
    let mut facts = state.facts.borrow().clone();
    facts.vms = state.vms.list();
    Json(facts)
}
