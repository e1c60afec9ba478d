//! What the HA dialogs share: field checks that mirror the server's (so most mistakes are
//! shown before anything is sent), the node-priority list of a node-affinity rule, and the
//! split of the server's per-field errors into the fields the form shows and the rest.

/// Most restarts or relocations a resource may have (the server's limit).
pub const MAX_COUNT: u32 = 10;
/// Highest node priority in a node-affinity rule (the server's limit).
pub const MAX_PRIORITY: u32 = 1000;
/// Requested states of an HA resource, with what each means.
pub const REQUESTED_STATES: [(&str, &str); 4] = [
    ("started", "started: keep it running, recover it elsewhere"),
    ("stopped", "stopped: keep it stopped"),
    (
        "disabled",
        "disabled: stop it and do nothing more (leaves error)",
    ),
    ("ignored", "ignored: HA leaves it alone for now"),
];

/// Checks a restart or relocation count as typed.
pub fn parse_count(text: &str) -> Result<u32, String> {
    crate::vm::parse_in_range(text, 0, MAX_COUNT, "")
}

/// Checks a rule id as the server does: a letter first, then letters, digits, `-`, `_`, `.`.
pub fn check_rule_id(id: &str) -> Result<(), String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("Enter a rule ID, e.g. prefer-n1.".into());
    }
    let ok = id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("Start with a letter; use letters, digits, '-', '_' and '.' (at most 64).".into())
    }
}

/// One node in a node-affinity rule's editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChoice {
    /// The node.
    pub node: String,
    /// Whether the rule names it.
    pub chosen: bool,
    /// Its priority as typed (higher is preferred).
    pub priority: String,
}

/// The editor's rows: every node of the cluster (and any the rule names that the cluster no
/// longer has), marked and prioritised as in `current` (`node[:priority],...`).
pub fn node_choices(cluster_nodes: &[String], current: &str) -> Vec<NodeChoice> {
    let named: Vec<(String, String)> = current
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once(':') {
            Some((n, prio)) => (n.trim().to_owned(), prio.trim().to_owned()),
            None => (p.to_owned(), "0".to_owned()),
        })
        .collect();
    let mut rows: Vec<NodeChoice> = cluster_nodes
        .iter()
        .map(|n| {
            let found = named.iter().find(|(m, _)| m == n);
            NodeChoice {
                node: n.clone(),
                chosen: found.is_some(),
                priority: found.map_or_else(|| "1".to_owned(), |(_, p)| p.clone()),
            }
        })
        .collect();
    for (n, p) in named {
        if !rows.iter().any(|r| r.node == n) {
            rows.push(NodeChoice {
                node: n,
                chosen: true,
                priority: p,
            });
        }
    }
    rows
}

/// The `nodes` parameter (`n1:2,n2:1`) of the chosen rows, or what is wrong with them.
pub fn nodes_param(rows: &[NodeChoice]) -> Result<String, String> {
    let mut parts = Vec::new();
    for r in rows.iter().filter(|r| r.chosen) {
        let prio = crate::vm::parse_in_range(&r.priority, 0, MAX_PRIORITY, "")
            .map_err(|e| format!("Priority of {}: {e}", r.node))?;
        parts.push(format!("{}:{prio}", r.node));
    }
    if parts.is_empty() {
        return Err("Choose at least one node.".into());
    }
    Ok(parts.join(","))
}

/// The `resources` parameter of the chosen sids (in the order given), or what is missing.
pub fn resources_param(chosen: &[String], at_least: usize) -> Result<String, String> {
    if chosen.len() < at_least.max(1) {
        return Err(if at_least <= 1 {
            "Choose at least one HA resource.".into()
        } else {
            format!("Choose at least {at_least} HA resources.")
        });
    }
    Ok(chosen.join(","))
}

pub use crate::components::form::{split_refusal, FieldError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rule_ids_are_checked_as_the_server_does() {
        assert_eq!(parse_count(" 3 "), Ok(3));
        assert!(parse_count("11").unwrap_err().contains("0 to 10"));
        assert!(parse_count("x").is_err());
        assert!(check_rule_id("prefer-n1").is_ok());
        assert!(check_rule_id("").unwrap_err().contains("Enter"));
        assert!(check_rule_id("1st").is_err());
        assert!(check_rule_id("a b").is_err());
        assert!(check_rule_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn node_rows_follow_the_rule_and_list_every_cluster_node() {
        let nodes = vec!["n1".to_owned(), "n2".to_owned(), "n3".to_owned()];
        let rows = node_choices(&nodes, "n3:3, n1 ,gone:2");
        assert_eq!(
            rows.iter()
                .map(|r| (r.node.as_str(), r.chosen, r.priority.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("n1", true, "0"),
                ("n2", false, "1"),
                ("n3", true, "3"),
                ("gone", true, "2")
            ]
        );
        assert_eq!(nodes_param(&rows), Ok("n1:0,n3:3,gone:2".to_owned()));
    }

    #[test]
    fn node_rows_refuse_no_node_and_bad_priorities() {
        let mut rows = node_choices(&["n1".to_owned()], "");
        assert!(!rows[0].chosen);
        assert_eq!(nodes_param(&rows), Err("Choose at least one node.".into()));
        rows[0].chosen = true;
        rows[0].priority = "1001".into();
        assert!(nodes_param(&rows)
            .unwrap_err()
            .starts_with("Priority of n1: Enter a number from 0 to 1000"));
    }

    #[test]
    fn resource_lists_need_enough_members() {
        let two = vec!["vm:100".to_owned(), "vm:101".to_owned()];
        assert_eq!(resources_param(&two, 2), Ok("vm:100,vm:101".into()));
        assert!(resources_param(&two[..1], 2)
            .unwrap_err()
            .contains("at least 2"));
        assert!(resources_param(&[], 1)
            .unwrap_err()
            .contains("at least one"));
    }
}
