//! `/cluster/ha/rules...`: node- and resource-affinity rules, refused when they conflict.

use axum::extract::{Path, State};
use kiln_api_types::ha::HaRule;
use serde::Deserialize;

use super::{can_change, can_read, check_comment};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{pve_bool, Body};
use crate::auth::AuthUser;
use crate::db::HaRuleRecord;
use crate::ha::rules::{self, parse_nodes, parse_resources};
use crate::state::AppState;

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
