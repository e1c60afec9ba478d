//! `/nodes`: the node list and node status, from the heartbeat data.

use axum::extract::{Path, State};
use kiln_api_types::{ClusterResource, CpuInfo, MemoryInfo, NodeListEntry, NodeState, NodeStatus};
use kiln_node_client::{CertFingerprint, NodeName};

use super::error::{ok, ApiError, ApiResult};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::cluster::NodeRuntime;
use crate::db::NodeRecord;
use crate::state::AppState;

/// Check a node name from a URL and that the node is part of the cluster.
pub async fn known_node(app: &AppState, node: &str) -> Result<NodeRecord, ApiError> {
    node.parse::<NodeName>()
        .map_err(|e| ApiError::param("node", e.to_string()))?;
    app.db.node(node).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "node '{node}' does not exist in this cluster; GET /api2/json/nodes lists the nodes"
        ))
    })
}

fn fingerprint_colon(hex: &str) -> String {
    let mut bytes = [0u8; 32];
    match hex::decode_to_slice(hex, &mut bytes) {
        Ok(()) => CertFingerprint(bytes).to_colon_hex(),
        Err(_) => String::new(),
    }
}

/// The `/cluster/resources` entry of a node.
pub fn node_resource(rec: &NodeRecord, rt: &NodeRuntime, state: NodeState) -> ClusterResource {
    let facts = rt.facts.as_ref().filter(|_| state == NodeState::Online);
    ClusterResource {
        id: format!("node/{}", rec.name),
        kind: "node".into(),
        node: rec.name.clone(),
        status: state.as_str().into(),
        cpu: facts.map(|f| f.cpu_usage),
        maxcpu: rt.facts.as_ref().map(|f| f.cpus),
        mem: facts.map(|f| f.mem_used),
        maxmem: rt.facts.as_ref().map(|f| f.mem_total),
        uptime: facts.map(|f| f.uptime_secs),
        vmid: None,
        name: None,
        lock: None,
        hastate: None,
        template: None,
    }
}

/// All nodes as cluster resources, by name.
pub async fn node_resources(app: &AppState) -> Result<Vec<ClusterResource>, ApiError> {
    let timeout = app.nodes.timeout();
    Ok(app
        .db
        .nodes()
        .await?
        .iter()
        .map(|rec| {
            let rt = app.nodes.get(&rec.name);
            node_resource(rec, &rt, rt.state(timeout))
        })
        .collect())
}

/// `GET /api2/json/nodes`.
pub async fn list(State(app): State<AppState>, user: AuthUser) -> ApiResult<Vec<NodeListEntry>> {
    let timeout = app.nodes.timeout();
    let mut out = Vec::new();
    for rec in app.db.nodes().await? {
        if authorize(&user, &format!("/nodes/{}", rec.name), Privilege::SysAudit).is_err() {
            continue;
        }
        let rt = app.nodes.get(&rec.name);
        let state = rt.state(timeout);
        let res = node_resource(&rec, &rt, state);
        out.push(NodeListEntry {
            node: rec.name.clone(),
            status: state,
            cpu: res.cpu,
            maxcpu: res.maxcpu,
            mem: res.mem,
            maxmem: res.maxmem,
            uptime: res.uptime,
            ssl_fingerprint: fingerprint_colon(&rec.cert_fingerprint),
            level: String::new(),
            id: res.id,
            kind: "node".into(),
        });
    }
    Ok(ok(out))
}

/// `GET /api2/json/nodes/{node}/status`.
pub async fn status(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
) -> ApiResult<NodeStatus> {
    authorize(&user, &format!("/nodes/{node}"), Privilege::SysAudit)?;
    let rec = known_node(&app, &node).await?;
    let rt = app.nodes.get(&rec.name);
    let state = rt.state(app.nodes.timeout());
    let last_seen_secs = rt.last_seen.map(|t| t.elapsed().as_secs());
    let facts = match (&rt.facts, state) {
        (Some(f), NodeState::Online) => f,
        _ => {
            let since = match last_seen_secs {
                Some(s) => format!("last heartbeat {s} s ago"),
                None => "no heartbeat since the server started".into(),
            };
            let why = rt.last_error.map(|e| format!(": {e}")).unwrap_or_default();
            return Err(ApiError::Unavailable(format!(
                "node {node} is offline ({since}){why}; start kiln-node there or check the network"
            )));
        }
    };
    let cores = (facts.cpus / facts.cpu_sockets.max(1)).max(1);
    Ok(ok(NodeStatus {
        cpu: facts.cpu_usage,
        cpuinfo: CpuInfo {
            cpus: facts.cpus,
            model: facts.cpu_model.clone(),
            sockets: facts.cpu_sockets,
            cores,
        },
        memory: MemoryInfo {
            total: facts.mem_total,
            used: facts.mem_used,
            free: facts.mem_total.saturating_sub(facts.mem_used),
        },
        loadavg: facts.loadavg.map(|l| format!("{l:.2}")),
        uptime: facts.uptime_secs,
        kversion: facts.kernel.clone(),
        pveversion: format!("kiln-node/{}", facts.agent_version),
        kvm: facts.kvm,
        status: state,
        last_seen_secs,
    }))
}
