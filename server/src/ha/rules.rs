//! HA rules (as in Proxmox VE 9): node affinity (which nodes, with priorities, strict or not)
//! and resource affinity (keep together / keep apart), parsed from their stored form and
//! checked for conflicts before they apply.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::HaRuleRecord;

/// `node-affinity`.
pub const NODE_AFFINITY: &str = "node-affinity";
/// `resource-affinity`.
pub const RESOURCE_AFFINITY: &str = "resource-affinity";

/// A node-affinity rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAffinity {
    /// Rule id.
    pub rule: String,
    /// Its resources.
    pub resources: Vec<String>,
    /// Nodes with their priority (higher is preferred).
    pub nodes: BTreeMap<String, u32>,
    /// Only these nodes; otherwise they are preferred and any node may be used.
    pub strict: bool,
}

/// A resource-affinity rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAffinity {
    /// Rule id.
    pub rule: String,
    /// Its resources.
    pub resources: Vec<String>,
    /// `positive`: keep together; `negative`: keep apart.
    pub together: bool,
}

/// The enabled rules, parsed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Node-affinity rules.
    pub node: Vec<NodeAffinity>,
    /// Resource-affinity rules.
    pub resource: Vec<ResourceAffinity>,
}

/// The VM id of a sid `vm:<vmid>` (Proxmox also accepts a bare id).
pub fn parse_sid(sid: &str) -> Result<u32, String> {
    let id = sid.strip_prefix("vm:").unwrap_or(sid);
    id.parse::<u32>()
        .ok()
        .filter(|v| (crate::vms::MIN_VMID..=crate::vms::MAX_VMID).contains(v))
        .ok_or_else(|| format!("'{sid}' is not an HA resource id; use vm:<vmid>, e.g. vm:100"))
}

/// A comma-separated list of sids, normalised to `vm:<vmid>`, without duplicates.
pub fn parse_resources(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let sid = format!("vm:{}", parse_sid(part)?);
        if !out.contains(&sid) {
            out.push(sid);
        }
    }
    if out.is_empty() {
        return Err("name at least one resource, e.g. vm:100,vm:101".into());
    }
    Ok(out)
}

/// `node[:priority],...` (priority 0 when not given).
pub fn parse_nodes(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, prio) = match part.split_once(':') {
            Some((n, p)) => (
                n,
                p.parse::<u32>().map_err(|_| {
                    format!("priority '{p}' of node {n} is not a number from 0 to 1000")
                })?,
            ),
            None => (part, 0),
        };
        if prio > 1000 {
            return Err(format!("priority {prio} of node {name} is above 1000"));
        }
        name.parse::<kiln_node_client::NodeName>()
            .map_err(|e| format!("'{name}' is not a node name: {e}"))?;
        if out.insert(name.to_owned(), prio).is_some() {
            return Err(format!("node {name} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("name at least one node, e.g. n1:2,n2:1".into());
    }
    Ok(out)
}

impl Rules {
    /// Parse the enabled rules.
    pub fn parse(records: &[HaRuleRecord]) -> Result<Rules, String> {
        let mut rules = Rules::default();
        for r in records.iter().filter(|r| !r.disable) {
            let resources =
                parse_resources(&r.resources).map_err(|e| format!("rule {}: {e}", r.rule))?;
            match r.kind.as_str() {
                NODE_AFFINITY => rules.node.push(NodeAffinity {
                    rule: r.rule.clone(),
                    resources,
                    nodes: parse_nodes(&r.nodes).map_err(|e| format!("rule {}: {e}", r.rule))?,
                    strict: r.strict,
                }),
                RESOURCE_AFFINITY => rules.resource.push(ResourceAffinity {
                    rule: r.rule.clone(),
                    resources,
                    together: match r.affinity.as_str() {
                        "positive" => true,
                        "negative" => false,
                        other => {
                            return Err(format!(
                                "rule {}: affinity '{other}' is neither positive nor negative",
                                r.rule
                            ))
                        }
                    },
                }),
                other => return Err(format!("rule {}: unknown type '{other}'", r.rule)),
            }
        }
        Ok(rules)
    }

    /// The node-affinity rule of `sid`, if any.
    pub fn node_affinity(&self, sid: &str) -> Option<&NodeAffinity> {
        self.node
            .iter()
            .find(|r| r.resources.iter().any(|s| s == sid))
    }

    /// Resources `sid` must be kept apart from (or together with, `together`).
    pub fn peers(&self, sid: &str, together: bool) -> BTreeSet<String> {
        self.resource
            .iter()
            .filter(|r| r.together == together && r.resources.iter().any(|s| s == sid))
            .flat_map(|r| r.resources.iter().filter(|s| *s != sid).cloned())
            .collect()
    }
}

/// A conflict between rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The rules involved.
    pub rules: Vec<String>,
    /// What is wrong and what to change.
    pub message: String,
}

/// Conflicts between rules. Empty if the rules can all apply.
pub fn conflicts(records: &[HaRuleRecord]) -> Result<Vec<Conflict>, String> {
    let rules = Rules::parse(records)?;
    let mut out = Vec::new();
    let mut node_rule_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &rules.node {
        for sid in &r.resources {
            if let Some(other) = node_rule_of.insert(sid, &r.rule) {
                out.push(Conflict {
                    rules: vec![other.to_owned(), r.rule.clone()],
                    message: format!(
                        "{sid} is in node-affinity rules {other} and {}; a resource may be in one node-affinity rule only",
                        r.rule
                    ),
                });
            }
        }
    }
    for together in rules.resource.iter().filter(|r| r.together) {
        for apart in rules.resource.iter().filter(|r| !r.together) {
            let both: Vec<&String> = together
                .resources
                .iter()
                .filter(|s| apart.resources.contains(s))
                .collect();
            if both.len() >= 2 {
                out.push(Conflict {
                    rules: vec![together.rule.clone(), apart.rule.clone()],
                    message: format!(
                        "rules {} (keep together) and {} (keep apart) both hold {}; remove them from one of the rules",
                        together.rule,
                        apart.rule,
                        both.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        // Together, but strictly bound to node sets with no node in common.
        let strict: Vec<&NodeAffinity> = together
            .resources
            .iter()
            .filter_map(|sid| rules.node_affinity(sid))
            .filter(|r| r.strict)
            .collect();
        for (i, a) in strict.iter().enumerate() {
            for b in &strict[i + 1..] {
                if a.rule != b.rule && a.nodes.keys().all(|n| !b.nodes.contains_key(n)) {
                    out.push(Conflict {
                        rules: vec![together.rule.clone(), a.rule.clone(), b.rule.clone()],
                        message: format!(
                            "rule {} keeps resources together, but strict node-affinity rules {} and {} share no node",
                            together.rule, a.rule, b.rule
                        ),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, kind: &str, resources: &str, nodes: &str, affinity: &str) -> HaRuleRecord {
        HaRuleRecord {
            rule: id.into(),
            kind: kind.into(),
            resources: resources.into(),
            nodes: nodes.into(),
            strict: true,
            affinity: affinity.into(),
            disable: false,
            comment: String::new(),
        }
    }

    #[test]
    fn sids_and_node_lists_parse_with_clear_errors() {
        assert_eq!(parse_sid("vm:100"), Ok(100));
        assert_eq!(parse_sid("101"), Ok(101));
        assert!(parse_sid("ct:100").unwrap_err().contains("vm:<vmid>"));
        assert!(parse_sid("vm:99").is_err());
        assert_eq!(
            parse_resources("vm:100, 101,vm:100").unwrap(),
            vec!["vm:100", "vm:101"]
        );
        let nodes = parse_nodes("n1:2,n2").unwrap();
        assert_eq!(nodes.get("n1"), Some(&2));
        assert_eq!(nodes.get("n2"), Some(&0));
        assert!(parse_nodes("n1:x").unwrap_err().contains("priority"));
        assert!(parse_nodes("n1,n1:3").unwrap_err().contains("twice"));
        assert!(parse_nodes("").unwrap_err().contains("at least one"));
    }

    #[test]
    fn conflicting_rules_are_named() {
        let ok = [
            rule("a", NODE_AFFINITY, "vm:100", "n1:2,n2:1", ""),
            rule("b", RESOURCE_AFFINITY, "vm:100,vm:101", "", "negative"),
        ];
        assert!(conflicts(&ok).unwrap().is_empty());

        let twice = [
            rule("a", NODE_AFFINITY, "vm:100", "n1", ""),
            rule("b", NODE_AFFINITY, "vm:100,vm:102", "n2", ""),
        ];
        let c = conflicts(&twice).unwrap();
        assert_eq!(c.len(), 1);
        assert!(
            c[0].message
                .contains("vm:100 is in node-affinity rules a and b"),
            "{c:?}"
        );
        assert_eq!(c[0].rules, vec!["a", "b"]);

        let both = [
            rule("t", RESOURCE_AFFINITY, "vm:100,vm:101", "", "positive"),
            rule(
                "p",
                RESOURCE_AFFINITY,
                "vm:101,vm:100,vm:102",
                "",
                "negative",
            ),
        ];
        let c = conflicts(&both).unwrap();
        assert!(
            c[0].message
                .contains("t (keep together) and p (keep apart)"),
            "{c:?}"
        );

        let disjoint = [
            rule("t", RESOURCE_AFFINITY, "vm:100,vm:101", "", "positive"),
            rule("x", NODE_AFFINITY, "vm:100", "n1", ""),
            rule("y", NODE_AFFINITY, "vm:101", "n2", ""),
        ];
        let c = conflicts(&disjoint).unwrap();
        assert!(c[0].message.contains("share no node"), "{c:?}");
    }

    #[test]
    fn peers_and_affinity_are_found_per_resource() {
        let rules = Rules::parse(&[
            rule("a", NODE_AFFINITY, "vm:100", "n1:2", ""),
            rule(
                "b",
                RESOURCE_AFFINITY,
                "vm:100,vm:101,vm:102",
                "",
                "negative",
            ),
        ])
        .unwrap();
        assert_eq!(
            rules.node_affinity("vm:100").map(|r| r.rule.as_str()),
            Some("a")
        );
        assert!(rules.node_affinity("vm:101").is_none());
        assert_eq!(
            rules.peers("vm:101", false).into_iter().collect::<Vec<_>>(),
            vec!["vm:100", "vm:102"]
        );
        assert!(rules.peers("vm:101", true).is_empty());
    }
}
