//! `/cluster/status` and `/cluster/resources`.

use axum::extract::State;
use kiln_api_types::{ClusterResource, ClusterStatusEntry, NodeState};
use serde::Deserialize;

use super::error::{ok, ApiError, ApiResult};
use super::nodes::node_resources;
use super::params::Query;
use crate::auth::{authorize, AuthUser, Privilege};
use crate::state::AppState;

/// `GET /api2/json/cluster/status`.
pub async fn status(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<ClusterStatusEntry>> {
    authorize(&user, "/", Privilege::SysAudit)?;
    let timeout = app.nodes.timeout();
    let nodes = app.db.nodes().await?;
    let mut out = vec![ClusterStatusEntry {
        kind: "cluster".into(),
        id: "cluster".into(),
        name: app.cluster_name.clone(),
        online: None,
        ip: None,
        local: None,
        nodeid: None,
        level: None,
        nodes: Some(nodes.len() as u32),
        quorate: Some(1),
        version: Some(1),
    }];
    for rec in nodes {
        let online = app.nodes.get(&rec.name).state(timeout) == NodeState::Online;
        let ip = reqwest::Url::parse(&rec.api_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        out.push(ClusterStatusEntry {
            kind: "node".into(),
            id: format!("node/{}", rec.name),
            name: rec.name,
            online: Some(u8::from(online)),
            ip,
            local: Some(0),
            nodeid: Some(rec.nodeid),
            level: Some(String::new()),
            nodes: None,
            quorate: None,
            version: None,
        });
    }
    Ok(ok(out))
}

/// Query of `/cluster/resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesQuery {
    /// Only resources of this type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Everything the caller may see, optionally of one type.
pub async fn visible_resources(
    app: &AppState,
    user: &AuthUser,
    kind: Option<&str>,
) -> Result<Vec<ClusterResource>, ApiError> {
    let mut out = Vec::new();
    if kind.is_none() || kind == Some("node") {
        out.extend(node_resources(app).await?.into_iter().filter(|r| {
            authorize(user, &format!("/nodes/{}", r.node), Privilege::SysAudit).is_ok()
        }));
    }
    if kind.is_none() || kind == Some("vm") {
        out.extend(super::qemu::vm_resources(app, user).await?);
        super::ha::annotate(app, &mut out).await?;
    }
    Ok(out)
}

/// `GET /api2/json/cluster/resources` (nodes today; VMs and storage come later).
pub async fn resources(
    State(app): State<AppState>,
    user: AuthUser,
    Query(q): Query<ResourcesQuery>,
) -> ApiResult<Vec<ClusterResource>> {
    let kind = q.kind.as_deref();
    if let Some(k) = kind {
        if !matches!(k, "vm" | "storage" | "node" | "sdn") {
            return Err(ApiError::param(
                "type",
                format!(
                    "value '{k}' does not have a value in the enumeration 'vm, storage, node, sdn'"
                ),
            ));
        }
    }
    Ok(ok(visible_resources(&app, &user, kind).await?))
}
