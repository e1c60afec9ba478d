//! High availability: resources, rules and the HA manager's per-resource state.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// An HA resource as stored (`ha_resources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaResourceRecord {
    /// `vm:<vmid>`.
    pub sid: String,
    /// The VM.
    pub vmid: u32,
    /// Requested state: `started`, `stopped`, `disabled` or `ignored`.
    pub state: String,
    /// Restarts on the same node after a crash.
    pub max_restart: u32,
    /// Moves to another node after the restarts are used up.
    pub max_relocate: u32,
    /// Move back to a higher-priority node when it returns.
    pub failback: bool,
    /// Free text.
    pub comment: String,
}

/// An HA rule as stored (`ha_rules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaRuleRecord {
    /// Rule id.
    pub rule: String,
    /// `node-affinity` or `resource-affinity`.
    pub kind: String,
    /// Comma-separated sids.
    pub resources: String,
    /// Node affinity: `node[:priority],...`.
    pub nodes: String,
    /// Node affinity: only the listed nodes.
    pub strict: bool,
    /// Resource affinity: `positive` or `negative`.
    pub affinity: String,
    /// Switched off.
    pub disable: bool,
    /// Free text.
    pub comment: String,
}

/// The HA manager's state of one resource (`ha_service_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaServiceRecord {
    /// `vm:<vmid>`.
    pub sid: String,
    /// State-machine state (see `crate::ha::state::HaState`).
    pub state: String,
    /// Node that owns the resource.
    pub node: String,
    /// Target of a move or recovery in progress.
    pub target: Option<String>,
    /// Restarts after crashes since it last ran stably.
    pub restarts: u32,
    /// Relocations after crashes since it last ran stably.
    pub relocates: u32,
    /// Why it is in this state, for a human.
    pub reason: Option<String>,
}

fn resource_from_row(r: sqlx::sqlite::SqliteRow) -> HaResourceRecord {
    HaResourceRecord {
        sid: r.get("sid"),
        vmid: r.get::<i64, _>("vmid") as u32,
        state: r.get("state"),
        max_restart: r.get::<i64, _>("max_restart") as u32,
        max_relocate: r.get::<i64, _>("max_relocate") as u32,
        failback: r.get::<i64, _>("failback") != 0,
        comment: r.get("comment"),
    }
}

fn rule_from_row(r: sqlx::sqlite::SqliteRow) -> HaRuleRecord {
    HaRuleRecord {
        rule: r.get("rule"),
        kind: r.get("type"),
        resources: r.get("resources"),
        nodes: r.get("nodes"),
        strict: r.get::<i64, _>("strict") != 0,
        affinity: r.get("affinity"),
        disable: r.get::<i64, _>("disable") != 0,
        comment: r.get("comment"),
    }
}

fn service_from_row(r: sqlx::sqlite::SqliteRow) -> HaServiceRecord {
    HaServiceRecord {
        sid: r.get("sid"),
        state: r.get("state"),
        node: r.get("node"),
        target: r.get("target"),
        restarts: r.get::<i64, _>("restarts") as u32,
        relocates: r.get::<i64, _>("relocates") as u32,
        reason: r.get("reason"),
    }
}

impl Db {
    /// All HA resources, by sid.
    pub async fn ha_resources(&self) -> Result<Vec<HaResourceRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM ha_resources ORDER BY vmid")
            .fetch_all(&self.pool)
            .await
            .ctx("listing HA resources")?;
        Ok(rows.into_iter().map(resource_from_row).collect())
    }

    /// One HA resource.
    pub async fn ha_resource(&self, sid: &str) -> Result<Option<HaResourceRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM ha_resources WHERE sid = ?")
            .bind(sid)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up an HA resource")?;
        Ok(row.map(resource_from_row))
    }

    /// Add an HA resource; `false` if the sid exists (nothing changed then).
    pub async fn insert_ha_resource(&self, r: &HaResourceRecord) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO ha_resources (sid, vmid, state, max_restart, max_relocate, failback, comment, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&r.sid)
        .bind(i64::from(r.vmid))
        .bind(&r.state)
        .bind(i64::from(r.max_restart))
        .bind(i64::from(r.max_relocate))
        .bind(i64::from(r.failback))
        .bind(&r.comment)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("adding an HA resource")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace an HA resource's settings.
    pub async fn update_ha_resource(&self, r: &HaResourceRecord) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE ha_resources SET state = ?, max_restart = ?, max_relocate = ?, failback = ?, comment = ? WHERE sid = ?",
        )
        .bind(&r.state)
        .bind(i64::from(r.max_restart))
        .bind(i64::from(r.max_relocate))
        .bind(i64::from(r.failback))
        .bind(&r.comment)
        .bind(&r.sid)
        .execute(&self.pool)
        .await
        .ctx("changing an HA resource")?;
        Ok(())
    }

    /// Remove an HA resource and the manager's state of it, and purge it from the rules
    /// that name it (as Proxmox's `purge`, its default): a rule left without resources (or a
    /// resource-affinity rule with fewer than two) goes too.
    pub async fn delete_ha_resource(&self, sid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing an HA resource")?;
        let rules = sqlx::query("SELECT rule, type, resources FROM ha_rules")
            .fetch_all(&mut *tx)
            .await
            .ctx("reading the HA rules")?;
        for row in rules {
            let (rule, kind, resources): (String, String, String) =
                (row.get("rule"), row.get("type"), row.get("resources"));
            let Some(rest) = without_resource(&resources, sid) else {
                continue;
            };
            let needed = if kind == "resource-affinity" { 2 } else { 1 };
            if rest.len() < needed {
                sqlx::query("DELETE FROM ha_rules WHERE rule = ?")
                    .bind(&rule)
                    .execute(&mut *tx)
                    .await
                    .ctx("removing an emptied HA rule")?;
            } else {
                sqlx::query("UPDATE ha_rules SET resources = ? WHERE rule = ?")
                    .bind(rest.join(","))
                    .bind(&rule)
                    .execute(&mut *tx)
                    .await
                    .ctx("purging a resource from an HA rule")?;
            }
        }
        let done = sqlx::query("DELETE FROM ha_resources WHERE sid = ?")
            .bind(sid)
            .execute(&mut *tx)
            .await
            .ctx("removing an HA resource")?;
        sqlx::query("DELETE FROM ha_service_state WHERE sid = ?")
            .bind(sid)
            .execute(&mut *tx)
            .await
            .ctx("removing an HA resource's state")?;
        tx.commit().await.ctx("removing an HA resource")?;
        Ok(done.rows_affected() == 1)
    }

    /// All HA rules, by id.
    pub async fn ha_rules(&self) -> Result<Vec<HaRuleRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM ha_rules ORDER BY rule")
            .fetch_all(&self.pool)
            .await
            .ctx("listing HA rules")?;
        Ok(rows.into_iter().map(rule_from_row).collect())
    }

    /// Add an HA rule; `false` if the id exists.
    pub async fn insert_ha_rule(&self, r: &HaRuleRecord) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO ha_rules (rule, type, resources, nodes, strict, affinity, disable, comment, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&r.rule)
        .bind(&r.kind)
        .bind(&r.resources)
        .bind(&r.nodes)
        .bind(i64::from(r.strict))
        .bind(&r.affinity)
        .bind(i64::from(r.disable))
        .bind(&r.comment)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("adding an HA rule")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace an HA rule.
    pub async fn update_ha_rule(&self, r: &HaRuleRecord) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE ha_rules SET resources = ?, nodes = ?, strict = ?, affinity = ?, disable = ?, comment = ? WHERE rule = ?",
        )
        .bind(&r.resources)
        .bind(&r.nodes)
        .bind(i64::from(r.strict))
        .bind(&r.affinity)
        .bind(i64::from(r.disable))
        .bind(&r.comment)
        .bind(&r.rule)
        .execute(&self.pool)
        .await
        .ctx("changing an HA rule")?;
        Ok(())
    }

    /// Remove an HA rule.
    pub async fn delete_ha_rule(&self, rule: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM ha_rules WHERE rule = ?")
            .bind(rule)
            .execute(&self.pool)
            .await
            .ctx("removing an HA rule")?;
        Ok(done.rows_affected() == 1)
    }

    /// The manager's state of every resource.
    pub async fn ha_services(&self) -> Result<Vec<HaServiceRecord>, DbError> {
        let rows = sqlx::query("SELECT * FROM ha_service_state ORDER BY sid")
            .fetch_all(&self.pool)
            .await
            .ctx("reading the HA manager state")?;
        Ok(rows.into_iter().map(service_from_row).collect())
    }

    /// The manager's state of one resource.
    pub async fn ha_service(&self, sid: &str) -> Result<Option<HaServiceRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM ha_service_state WHERE sid = ?")
            .bind(sid)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading the HA manager state")?;
        Ok(row.map(service_from_row))
    }

    /// Store the manager's state of one resource.
    pub async fn save_ha_service(&self, s: &HaServiceRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO ha_service_state (sid, state, node, target, restarts, relocates, reason, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (sid) DO UPDATE SET state = excluded.state, node = excluded.node, \
             target = excluded.target, restarts = excluded.restarts, relocates = excluded.relocates, \
             reason = excluded.reason, updated_at = excluded.updated_at",
        )
        .bind(&s.sid)
        .bind(&s.state)
        .bind(&s.node)
        .bind(&s.target)
        .bind(i64::from(s.restarts))
        .bind(i64::from(s.relocates))
        .bind(&s.reason)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("saving the HA manager state")?;
        Ok(())
    }

    /// Nodes in maintenance.
    pub async fn ha_maintenance_nodes(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT node FROM ha_node_maintenance ORDER BY node")
            .fetch_all(&self.pool)
            .await
            .ctx("listing nodes in maintenance")?;
        Ok(rows.into_iter().map(|r| r.get("node")).collect())
    }

    /// Since when (Unix seconds) `node` is in maintenance; `None` if it is not.
    pub async fn ha_maintenance_since(&self, node: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT since FROM ha_node_maintenance WHERE node = ?")
            .bind(node)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a node's maintenance mode")?;
        Ok(row.map(|r| r.get("since")))
    }

    /// Put `node` in maintenance or take it out.
    pub async fn set_ha_maintenance(&self, node: &str, on: bool) -> Result<(), DbError> {
        let query = if on {
            sqlx::query(
                "INSERT INTO ha_node_maintenance (node, since) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(node)
            .bind(unix_now())
        } else {
            sqlx::query("DELETE FROM ha_node_maintenance WHERE node = ?").bind(node)
        };
        query
            .execute(&self.pool)
            .await
            .ctx("changing a node's maintenance mode")?;
        Ok(())
    }
}

/// `resources` (comma-separated sids) without `sid`; `None` if it was not there.
fn without_resource(resources: &str, sid: &str) -> Option<Vec<String>> {
    let all: Vec<&str> = resources
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    all.contains(&sid).then(|| {
        all.into_iter()
            .filter(|s| *s != sid)
            .map(String::from)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    fn resource() -> HaResourceRecord {
        HaResourceRecord {
            sid: "vm:100".into(),
            vmid: 100,
            state: "started".into(),
            max_restart: 1,
            max_relocate: 1,
            failback: true,
            comment: String::new(),
        }
    }

    #[tokio::test]
    async fn resources_and_manager_state_round_trip_and_go_together() {
        let (db, _dir) = temp_db().await;
        assert!(db.insert_ha_resource(&resource()).await.unwrap());
        assert!(
            !db.insert_ha_resource(&resource()).await.unwrap(),
            "sid taken"
        );
        let mut changed = resource();
        changed.state = "stopped".into();
        changed.max_restart = 3;
        db.update_ha_resource(&changed).await.unwrap();
        assert_eq!(db.ha_resource("vm:100").await.unwrap(), Some(changed));
        let service = HaServiceRecord {
            sid: "vm:100".into(),
            state: "recovery".into(),
            node: "n1".into(),
            target: Some("n2".into()),
            restarts: 1,
            relocates: 0,
            reason: Some("node n1 lost".into()),
        };
        db.save_ha_service(&service).await.unwrap();
        db.save_ha_service(&service).await.unwrap();
        assert_eq!(db.ha_services().await.unwrap(), vec![service]);
        assert!(db.delete_ha_resource("vm:100").await.unwrap());
        assert!(db.ha_services().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_removed_resource_is_purged_from_its_rules() {
        let (db, _dir) = temp_db().await;
        let rule = |id: &str, kind: &str, resources: &str| HaRuleRecord {
            rule: id.into(),
            kind: kind.into(),
            resources: resources.into(),
            nodes: if kind == "node-affinity" {
                "n1".into()
            } else {
                String::new()
            },
            strict: false,
            affinity: if kind == "node-affinity" {
                String::new()
            } else {
                "negative".into()
            },
            disable: false,
            comment: String::new(),
        };
        for r in [
            rule("only-100", "node-affinity", "vm:100"),
            rule("both", "node-affinity", "vm:100,vm:101"),
            rule("apart-pair", "resource-affinity", "vm:100,vm:101"),
            rule("apart-three", "resource-affinity", "vm:100,vm:101,vm:102"),
            rule("other", "node-affinity", "vm:1000"),
        ] {
            assert!(db.insert_ha_rule(&r).await.unwrap());
        }
        db.insert_ha_resource(&resource()).await.unwrap();
        assert!(db.delete_ha_resource("vm:100").await.unwrap());
        let left: Vec<(String, String)> = db
            .ha_rules()
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.rule, r.resources))
            .collect();
        assert_eq!(
            left,
            vec![
                ("apart-three".to_string(), "vm:101,vm:102".to_string()),
                ("both".to_string(), "vm:101".to_string()),
                ("other".to_string(), "vm:1000".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn rules_round_trip() {
        let (db, _dir) = temp_db().await;
        let rule = HaRuleRecord {
            rule: "prefer-n2".into(),
            kind: "node-affinity".into(),
            resources: "vm:100".into(),
            nodes: "n2:2,n3:1".into(),
            strict: true,
            affinity: String::new(),
            disable: false,
            comment: "x".into(),
        };
        assert!(db.insert_ha_rule(&rule).await.unwrap());
        assert_eq!(db.ha_rules().await.unwrap(), vec![rule.clone()]);
        assert!(db.delete_ha_rule("prefer-n2").await.unwrap());
        assert!(!db.delete_ha_rule("prefer-n2").await.unwrap());
    }

    #[tokio::test]
    async fn maintenance_is_switched_on_and_off_per_node() {
        let (db, _dir) = temp_db().await;
        db.set_ha_maintenance("n2", true).await.unwrap();
        db.set_ha_maintenance("n2", true).await.unwrap();
        db.set_ha_maintenance("n1", true).await.unwrap();
        assert_eq!(db.ha_maintenance_nodes().await.unwrap(), vec!["n1", "n2"]);
        db.set_ha_maintenance("n1", false).await.unwrap();
        assert_eq!(db.ha_maintenance_nodes().await.unwrap(), vec!["n2"]);
        assert!(db.ha_maintenance_since("n2").await.unwrap().is_some());
        assert_eq!(db.ha_maintenance_since("n1").await.unwrap(), None);
    }
}
