//! `/cluster/ha/...`: HA resources, rules and status, as Proxmox VE 9.
//!
//! Reading needs `Sys.Audit` on `/`, changing needs `Sys.Modify` on `/`; the CSRF token of
//! changes is checked by the auth middleware.

use axum::extract::{Path, State};
use kiln_api_types::ha::{HaResource, HaRule, HaStatusEntry};
use kiln_api_types::{ClusterResource, NodeState};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ok, ApiError, ApiResult};
use super::params::{pve_bool, Body};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::db::{HaResourceRecord, HaRuleRecord};
use crate::ha::rules::{self, parse_nodes, parse_resources, parse_sid};
use crate::ha::state::{HaState, Requested};
use crate::state::AppState;

const MAX_COUNT: u32 = 10;
const MAX_COMMENT: usize = 4096;

fn can_read(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.userid, "/", Privilege::SysAudit)?)
}

fn can_change(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.userid, "/", Privilege::SysModify)?)
}

fn sid_param(raw: &str) -> Result<(String, u32), ApiError> {
    let vmid = parse_sid(raw).map_err(|m| ApiError::param("sid", m))?;
    Ok((format!("vm:{vmid}"), vmid))
}

fn digest_of(r: &HaResourceRecord) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}",
        r.state, r.max_restart, r.max_relocate, r.failback, r.comment
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..20])
}

fn resource_of(r: &HaResourceRecord) -> HaResource {
    HaResource {
        sid: r.sid.clone(),
        kind: "vm".into(),
        state: r.state.clone(),
        max_restart: r.max_restart,
        max_relocate: r.max_relocate,
        failback: u8::from(r.failback),
        comment: r.comment.clone(),
        digest: digest_of(r),
    }
}

fn check_count(name: &str, v: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if n <= MAX_COUNT => Ok(n),
        Some(n) => Err(ApiError::param(
            name,
            format!("{n} is above the maximum of {MAX_COUNT}"),
        )),
    }
}

fn check_comment(c: Option<String>) -> Result<Option<String>, ApiError> {
    match c {
        Some(c) if c.len() > MAX_COMMENT => Err(ApiError::param(
            "comment",
            format!("at most {MAX_COMMENT} characters"),
        )),
        other => Ok(other),
    }
}

fn check_state(s: Option<&str>) -> Result<Option<Requested>, ApiError> {
    s.map(|s| {
        s.parse::<Requested>()
            .map_err(|m| ApiError::param("state", m))
    })
    .transpose()
}

async fn find_resource(app: &AppState, raw: &str) -> Result<HaResourceRecord, ApiError> {
    let (sid, _) = sid_param(raw)?;
    app.db.ha_resource(&sid).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{sid} is not an HA resource; add it with POST /cluster/ha/resources"
        ))
    })
}

/// `GET /cluster/ha/resources`.
pub async fn list_resources(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<HaResource>> {
    can_read(&user)?;
    Ok(ok(app
        .db
        .ha_resources()
        .await?
        .iter()
        .map(resource_of)
        .collect()))
}

/// `GET /cluster/ha/resources/{sid}`.
pub async fn get_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
) -> ApiResult<HaResource> {
    can_read(&user)?;
    Ok(ok(resource_of(&find_resource(&app, &sid).await?)))
}

/// Body of `POST /cluster/ha/resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateResource {
    /// `vm:<vmid>` (or the bare id).
    pub sid: String,
    /// Requested state (default `started`).
    pub state: Option<String>,
    /// Default 1.
    pub max_restart: Option<u32>,
    /// Default 1.
    pub max_relocate: Option<u32>,
    /// Default 1.
    #[serde(default, deserialize_with = "pve_bool")]
    pub failback: Option<bool>,
    /// Free text.
    pub comment: Option<String>,
    /// `vm` (the only type).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `POST /cluster/ha/resources`: put a VM under HA.
pub async fn create_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<CreateResource>,
) -> ApiResult<()> {
    can_change(&user)?;
    if req.kind.as_deref().is_some_and(|k| k != "vm") {
        return Err(ApiError::param("type", "only 'vm' resources exist in Kiln"));
    }
    let (sid, vmid) = sid_param(&req.sid)?;
    if app.db.vm(vmid).await?.is_none() {
        return Err(ApiError::param(
            "sid",
            format!("VM {vmid} does not exist; create it first"),
        ));
    }
    let record = HaResourceRecord {
        sid: sid.clone(),
        vmid,
        state: check_state(req.state.as_deref())?
            .unwrap_or(Requested::Started)
            .as_str()
            .into(),
        max_restart: check_count("max_restart", req.max_restart, 1)?,
        max_relocate: check_count("max_relocate", req.max_relocate, 1)?,
        failback: req.failback.unwrap_or(true),
        comment: check_comment(req.comment)?.unwrap_or_default(),
    };
    if !app.db.insert_ha_resource(&record).await? {
        return Err(ApiError::Conflict(format!(
            "{sid} is already an HA resource; change it with PUT /cluster/ha/resources/{sid}"
        )));
    }
    app.changes.notify();
    Ok(ok(()))
}

/// Body of `PUT /cluster/ha/resources/{sid}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateResource {
    /// Requested state.
    pub state: Option<String>,
    /// Restarts.
    pub max_restart: Option<u32>,
    /// Relocations.
    pub max_relocate: Option<u32>,
    /// Failback.
    #[serde(default, deserialize_with = "pve_bool")]
    pub failback: Option<bool>,
    /// Free text.
    pub comment: Option<String>,
    /// Settings to reset to their defaults (comma-separated).
    pub delete: Option<String>,
    /// Refuse the change if the resource changed since this digest was read.
    pub digest: Option<String>,
}

/// `PUT /cluster/ha/resources/{sid}`.
pub async fn update_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<UpdateResource>,
) -> ApiResult<()> {
    can_change(&user)?;
    let mut r = find_resource(&app, &sid).await?;
    if let Some(d) = &req.digest {
        if *d != digest_of(&r) {
            return Err(ApiError::Conflict(format!(
                "{} was changed by someone else since you read it; read it again",
                r.sid
            )));
        }
    }
    for field in req
        .delete
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        match field {
            "max_restart" => r.max_restart = 1,
            "max_relocate" => r.max_relocate = 1,
            "failback" => r.failback = true,
            "comment" => r.comment.clear(),
            other => {
                return Err(ApiError::param(
                    "delete",
                    format!(
                    "'{other}' cannot be reset; use max_restart, max_relocate, failback or comment"
                ),
                ))
            }
        }
    }
    if let Some(s) = check_state(req.state.as_deref())? {
        r.state = s.as_str().into();
    }
    r.max_restart = check_count("max_restart", req.max_restart, r.max_restart)?;
    r.max_relocate = check_count("max_relocate", req.max_relocate, r.max_relocate)?;
    if let Some(f) = req.failback {
        r.failback = f;
    }
    if let Some(c) = check_comment(req.comment)? {
        r.comment = c;
    }
    app.db.update_ha_resource(&r).await?;
    app.changes.notify();
    Ok(ok(()))
}

/// `DELETE /cluster/ha/resources/{sid}`: the VM leaves HA (it keeps running, unguarded).
pub async fn delete_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
) -> ApiResult<()> {
    can_change(&user)?;
    let r = find_resource(&app, &sid).await?;
    app.db.delete_ha_resource(&r.sid).await?;
    if let Some(vm) = app.db.vm(r.vmid).await? {
        if crate::vms::observe(&app, &vm).is_active() {
            crate::ha::actions::unguard(&app, vm.vmid, &vm.node).await;
        }
    }
    app.changes.notify();
    Ok(ok(()))
}

/// Body of `POST /cluster/ha/resources/{sid}/migrate` and `/relocate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Target node.
    pub node: String,
}

async fn move_resource(
    app: AppState,
    user: AuthUser,
    sid: String,
    req: MoveRequest,
    live: bool,
) -> ApiResult<()> {
    can_change(&user)?;
    let r = find_resource(&app, &sid).await?;
    if app.db.node(&req.node).await?.is_none() {
        return Err(ApiError::param(
            "node",
            format!("no node '{}' in the cluster", req.node),
        ));
    }
    if app.nodes.get(&req.node).state(app.nodes.timeout()) != NodeState::Online {
        return Err(ApiError::Unavailable(format!(
            "node {} is offline; choose an online node",
            req.node
        )));
    }
    crate::ha::manager::request_move(&app, &r.sid, &req.node, live)
        .await
        .map_err(ApiError::Conflict)?;
    Ok(ok(()))
}

/// `POST /cluster/ha/resources/{sid}/migrate`.
pub async fn migrate(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<()> {
    move_resource(app, user, sid, req, true).await
}

/// `POST /cluster/ha/resources/{sid}/relocate`.
pub async fn relocate(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<()> {
    move_resource(app, user, sid, req, false).await
}

fn rule_of(r: &HaRuleRecord, conflicts: &[rules::Conflict]) -> HaRule {
    let node = r.kind == rules::NODE_AFFINITY;
    HaRule {
        rule: r.rule.clone(),
        kind: r.kind.clone(),
        resources: r.resources.clone(),
        nodes: node.then(|| r.nodes.clone()),
        strict: node.then_some(u8::from(r.strict)),
        affinity: (!node).then(|| r.affinity.clone()),
        disable: u8::from(r.disable),
        comment: r.comment.clone(),
        conflicts: conflicts
            .iter()
            .filter(|c| c.rules.contains(&r.rule))
            .map(|c| c.message.clone())
            .collect(),
    }
}

fn conflicts_of(all: &[HaRuleRecord]) -> Vec<rules::Conflict> {
    rules::conflicts(all).unwrap_or_else(|message| {
        vec![rules::Conflict {
            rules: all.iter().map(|r| r.rule.clone()).collect(),
            message,
        }]
    })
}

/// `GET /cluster/ha/rules`.
pub async fn list_rules(State(app): State<AppState>, user: AuthUser) -> ApiResult<Vec<HaRule>> {
    can_read(&user)?;
    let all = app.db.ha_rules().await?;
    let conflicts = conflicts_of(&all);
    Ok(ok(all.iter().map(|r| rule_of(r, &conflicts)).collect()))
}

/// `GET /cluster/ha/rules/{rule}`.
pub async fn get_rule(
    State(app): State<AppState>,
    user: AuthUser,
    Path(rule): Path<String>,
) -> ApiResult<HaRule> {
    can_read(&user)?;
    let all = app.db.ha_rules().await?;
    let conflicts = conflicts_of(&all);
    all.iter()
        .find(|r| r.rule == rule)
        .map(|r| ok(rule_of(r, &conflicts)))
        .ok_or_else(|| ApiError::NotFound(format!("no HA rule '{rule}'")))
}

/// Body of `POST /cluster/ha/rules` and `PUT /cluster/ha/rules/{rule}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    /// Rule id (create only).
    pub rule: Option<String>,
    /// `node-affinity` or `resource-affinity` (create only; on update it must match).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Comma-separated sids.
    pub resources: Option<String>,
    /// Node affinity: `node[:priority],...`.
    pub nodes: Option<String>,
    /// Node affinity: only these nodes.
    #[serde(default, deserialize_with = "pve_bool")]
    pub strict: Option<bool>,
    /// Resource affinity: `positive` or `negative`.
    pub affinity: Option<String>,
    /// Switched off.
    #[serde(default, deserialize_with = "pve_bool")]
    pub disable: Option<bool>,
    /// Free text.
    pub comment: Option<String>,
}

fn check_rule_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "rule",
            "a rule id starts with a letter and has letters, digits, '-', '_', '.' (at most 64)",
        ))
    }
}

/// Apply `req` to `r` and check the result, alone and together with `others`.
async fn checked_rule(
    app: &AppState,
    mut r: HaRuleRecord,
    req: RuleRequest,
    others: &[HaRuleRecord],
) -> Result<HaRuleRecord, ApiError> {
    if let Some(res) = req.resources {
        let sids = parse_resources(&res).map_err(|m| ApiError::param("resources", m))?;
        for sid in &sids {
            if app.db.ha_resource(sid).await?.is_none() {
                return Err(ApiError::param(
                    "resources",
                    format!("{sid} is not an HA resource; add it first"),
                ));
            }
        }
        r.resources = sids.join(",");
    }
    if r.resources.is_empty() {
        return Err(ApiError::param(
            "resources",
            "property is missing and it is not optional",
        ));
    }
    match r.kind.as_str() {
        rules::NODE_AFFINITY => {
            if req.affinity.is_some() {
                return Err(ApiError::param(
                    "affinity",
                    "only resource-affinity rules take an affinity",
                ));
            }
            if let Some(n) = req.nodes {
                let nodes = parse_nodes(&n).map_err(|m| ApiError::param("nodes", m))?;
                for name in nodes.keys() {
                    if app.db.node(name).await?.is_none() {
                        return Err(ApiError::param(
                            "nodes",
                            format!("no node '{name}' in the cluster"),
                        ));
                    }
                }
                r.nodes = nodes
                    .iter()
                    .map(|(n, p)| format!("{n}:{p}"))
                    .collect::<Vec<_>>()
                    .join(",");
            }
            if r.nodes.is_empty() {
                return Err(ApiError::param(
                    "nodes",
                    "property is missing and it is not optional",
                ));
            }
            if let Some(s) = req.strict {
                r.strict = s;
            }
        }
        rules::RESOURCE_AFFINITY => {
            if req.nodes.is_some() || req.strict.is_some() {
                return Err(ApiError::param(
                    "nodes",
                    "only node-affinity rules take nodes and strict",
                ));
            }
            if let Some(a) = req.affinity {
                if a != "positive" && a != "negative" {
                    return Err(ApiError::param(
                        "affinity",
                        "use positive (keep together) or negative (keep apart)",
                    ));
                }
                r.affinity = a;
            }
            if r.affinity.is_empty() {
                return Err(ApiError::param(
                    "affinity",
                    "property is missing and it is not optional",
                ));
            }
            if r.resources.split(',').count() < 2 {
                return Err(ApiError::param(
                    "resources",
                    "a resource-affinity rule needs at least two resources",
                ));
            }
        }
        other => {
            return Err(ApiError::param(
                "type",
                format!("'{other}' is not a rule type; use node-affinity or resource-affinity"),
            ))
        }
    }
    if let Some(d) = req.disable {
        r.disable = d;
    }
    if let Some(c) = check_comment(req.comment)? {
        r.comment = c;
    }
    let mut all: Vec<HaRuleRecord> = others.to_vec();
    all.push(r.clone());
    let conflicts = rules::conflicts(&all).map_err(|m| ApiError::param("rule", m))?;
    if !conflicts.is_empty() {
        let text: Vec<String> = conflicts.into_iter().map(|c| c.message).collect();
        return Err(ApiError::param("rule", text.join("; ")));
    }
    Ok(r)
}

/// `POST /cluster/ha/rules`.
pub async fn create_rule(
    State(app): State<AppState>,
    user: AuthUser,
    Body(mut req): Body<RuleRequest>,
) -> ApiResult<()> {
    can_change(&user)?;
    let id = req
        .rule
        .take()
        .ok_or_else(|| ApiError::param("rule", "property is missing and it is not optional"))?;
    check_rule_id(&id)?;
    let kind = req
        .kind
        .take()
        .ok_or_else(|| ApiError::param("type", "property is missing and it is not optional"))?;
    let others = app.db.ha_rules().await?;
    if others.iter().any(|r| r.rule == id) {
        return Err(ApiError::Conflict(format!(
            "HA rule '{id}' exists; change it with PUT /cluster/ha/rules/{id}"
        )));
    }
    let blank = HaRuleRecord {
        rule: id,
        kind,
        resources: String::new(),
        nodes: String::new(),
        strict: false,
        affinity: String::new(),
        disable: false,
        comment: String::new(),
    };
    let r = checked_rule(&app, blank, req, &others).await?;
    if !app.db.insert_ha_rule(&r).await? {
        return Err(ApiError::Conflict(format!("HA rule '{}' exists", r.rule)));
    }
    app.changes.notify();
    Ok(ok(()))
}

/// `PUT /cluster/ha/rules/{rule}`.
pub async fn update_rule(
    State(app): State<AppState>,
    user: AuthUser,
    Path(rule): Path<String>,
    Body(mut req): Body<RuleRequest>,
) -> ApiResult<()> {
    can_change(&user)?;
    let all = app.db.ha_rules().await?;
    let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.rule == rule);
    let current = mine
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no HA rule '{rule}'")))?;
    if req.kind.take().is_some_and(|k| k != current.kind) {
        return Err(ApiError::param(
            "type",
            format!(
                "rule {rule} is a {} rule; its type cannot change",
                current.kind
            ),
        ));
    }
    if req.rule.take().is_some_and(|r| r != rule) {
        return Err(ApiError::param("rule", "a rule cannot be renamed"));
    }
    let r = checked_rule(&app, current, req, &others).await?;
    app.db.update_ha_rule(&r).await?;
    app.changes.notify();
    Ok(ok(()))
}

/// `DELETE /cluster/ha/rules/{rule}`.
pub async fn delete_rule(
    State(app): State<AppState>,
    user: AuthUser,
    Path(rule): Path<String>,
) -> ApiResult<()> {
    can_change(&user)?;
    if !app.db.delete_ha_rule(&rule).await? {
        return Err(ApiError::NotFound(format!("no HA rule '{rule}'")));
    }
    app.changes.notify();
    Ok(ok(()))
}

/// Body of `POST /api2/kiln/nodes/{node}/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// 1: enter maintenance, 0: leave it.
    #[serde(default, deserialize_with = "pve_bool")]
    pub enable: Option<bool>,
}

/// `POST /api2/kiln/nodes/{node}/maintenance` (Kiln extension; Proxmox's
/// `ha-manager crm-command node-maintenance enable|disable`): HA moves the node's resources
/// away and places nothing there until it leaves maintenance.
pub async fn maintenance(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
    Body(req): Body<MaintenanceRequest>,
) -> ApiResult<()> {
    authorize(
        &user.userid,
        &format!("/nodes/{node}"),
        Privilege::SysModify,
    )?;
    if app.db.node(&node).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no node '{node}' in the cluster"
        )));
    }
    let enable = req
        .enable
        .ok_or_else(|| ApiError::param("enable", "property is missing and it is not optional"))?;
    app.db.set_ha_maintenance(&node, enable).await?;
    tracing::info!(
        node = %node,
        "node {} maintenance",
        if enable { "enters" } else { "leaves" }
    );
    app.changes.notify();
    Ok(ok(()))
}

fn lease_left(app: &AppState, node: &str) -> Option<u64> {
    app.nodes.get(node).lease.and_then(|l| l.remaining_ms)
}

/// `GET /cluster/ha/status/current`: quorum, manager, every node's lease and every
/// resource's state, as Proxmox's list.
pub async fn status_current(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<HaStatusEntry>> {
    can_read(&user)?;
    let blank = |id: String, kind: &str, status: String| HaStatusEntry {
        id,
        kind: kind.into(),
        node: None,
        status,
        sid: None,
        state: None,
        request_state: None,
        reason: None,
        max_restart: None,
        max_relocate: None,
        lease_remaining_ms: None,
        quorate: None,
    };
    let mut out = vec![
        HaStatusEntry {
            quorate: Some(1),
            ..blank("quorum".into(), "quorum", "OK".into())
        },
        blank(
            "master".into(),
            "master",
            "kiln-server (the HA manager runs in the console server)".into(),
        ),
    ];
    let maintenance = app.db.ha_maintenance_nodes().await?;
    for n in app.db.nodes().await? {
        let state = app.nodes.get(&n.name).state(app.nodes.timeout());
        let left = lease_left(&app, &n.name);
        let status = match (state, left) {
            (NodeState::Online, _) if maintenance.contains(&n.name) => "maintenance mode".into(),
            (NodeState::Online, Some(ms)) if ms > 0 => format!("active (lease {} ms left)", ms),
            (NodeState::Online, _) => "waiting for a lease".into(),
            _ if app.nodes.lease_surely_expired(&n.name) => {
                "offline, lease expired (fenced)".into()
            }
            _ => "offline, lease may still run (fencing)".into(),
        };
        out.push(HaStatusEntry {
            node: Some(n.name.clone()),
            lease_remaining_ms: left,
            ..blank(format!("lrm:{}", n.name), "lrm", status)
        });
    }
    let services = app.db.ha_services().await?;
    let vms = app.db.vms().await?;
    for r in app.db.ha_resources().await? {
        let svc = services.iter().find(|s| s.sid == r.sid);
        let node = vms
            .iter()
            .find(|v| v.vmid == r.vmid)
            .map(|v| v.node.clone());
        let state = svc.map_or("queued".to_owned(), |s| s.state.clone());
        out.push(HaStatusEntry {
            node,
            sid: Some(r.sid.clone()),
            state: Some(state.clone()),
            request_state: Some(r.state.clone()),
            reason: svc.and_then(|s| s.reason.clone()),
            max_restart: Some(r.max_restart),
            max_relocate: Some(r.max_relocate),
            ..blank(format!("service:{}", r.sid), "service", state)
        });
    }
    Ok(ok(out))
}

/// `GET /cluster/ha/status/manager_status`: the manager's full state.
pub async fn manager_status(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<serde_json::Value> {
    can_read(&user)?;
    let policy = app.nodes.lease_policy();
    let mut node_status = serde_json::Map::new();
    let mut lrm_status = serde_json::Map::new();
    let maintenance = app.db.ha_maintenance_nodes().await?;
    for n in app.db.nodes().await? {
        let online = app.nodes.get(&n.name).state(app.nodes.timeout()) == NodeState::Online;
        let word = if online && maintenance.contains(&n.name) {
            "maintenance"
        } else if online {
            "online"
        } else if app.nodes.lease_surely_expired(&n.name) {
            "fenced"
        } else {
            "fence"
        };
        node_status.insert(n.name.clone(), word.into());
        let rt = app.nodes.get(&n.name);
        lrm_status.insert(
            n.name.clone(),
            serde_json::json!({
                "lease_remaining_ms": rt.lease.and_then(|l| l.remaining_ms),
                "guarded_vms": rt.lease.map(|l| l.guarded_vms),
                "last_answer_ms_ago": rt.last_seen.map(|t| t.elapsed().as_millis() as u64),
            }),
        );
    }
    let mut service_status = serde_json::Map::new();
    for s in app.db.ha_services().await? {
        service_status.insert(
            s.sid.clone(),
            serde_json::json!({
                "state": s.state,
                "node": s.node,
                "target": s.target,
                "restarts": s.restarts,
                "relocates": s.relocates,
                "reason": s.reason,
            }),
        );
    }
    Ok(ok(serde_json::json!({
        "manager_status": {
            "master_node": "kiln-server",
            "node_status": node_status,
            "service_status": service_status,
            "lease_ms": policy.lease.as_millis() as u64,
            "lease_margin_ms": policy.margin.as_millis() as u64,
        },
        "lrm_status": lrm_status,
        "quorum": { "quorate": "1" },
    })))
}

/// Set `hastate` on the VMs of `resources` that are HA resources.
pub async fn annotate(app: &AppState, resources: &mut [ClusterResource]) -> Result<(), ApiError> {
    let ha = app.db.ha_resources().await?;
    if ha.is_empty() {
        return Ok(());
    }
    let services = app.db.ha_services().await?;
    for r in resources.iter_mut().filter(|r| r.kind == "qemu") {
        let Some(vmid) = r.vmid else { continue };
        if let Some(res) = ha.iter().find(|h| h.vmid == vmid) {
            let state = services
                .iter()
                .find(|s| s.sid == res.sid)
                .and_then(|s| s.state.parse::<HaState>().ok())
                .map_or("queued", HaState::as_str);
            r.hastate = Some(state.into());
        }
    }
    Ok(())
}
