//! Where an HA resource goes: by node-affinity priority, then by free memory and load (a
//! CRS-like score), never beyond a node's capacity, keeping apart what must stay apart.
//! Pure: the manager builds the [`Candidate`]s from the latest heartbeats.

use std::collections::BTreeSet;

use super::rules::NodeAffinity;

/// A node that could take a resource now (online, holding a valid lease).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// Memory not assigned to running VMs, MiB (after overcommit).
    pub free_mib: u64,
    /// CPU usage, 0.0..=1.0.
    pub load: f64,
}

/// What one resource needs.
#[derive(Debug, Clone, Default)]
pub struct Need<'a> {
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Its node-affinity rule.
    pub affinity: Option<&'a NodeAffinity>,
    /// Nodes running resources it must be kept apart from.
    pub apart: BTreeSet<String>,
    /// Nodes running resources it must be kept together with.
    pub together: BTreeSet<String>,
    /// Nodes not to use (e.g. where it just crashed too often).
    pub exclude: BTreeSet<String>,
}

/// The priority of `node` for a resource with `affinity`: its listed priority; unlisted nodes
/// rank below every listed one (and are not allowed at all under a strict rule).
pub fn priority(affinity: Option<&NodeAffinity>, node: &str) -> Option<i64> {
    match affinity {
        None => Some(0),
        Some(rule) => match rule.nodes.get(node) {
            Some(p) => Some(i64::from(*p)),
            None if rule.strict => None,
            None => Some(-1),
        },
    }
}

/// The best node for `need`, or why there is none (a sentence for the resource's status).
pub fn choose(candidates: &[Candidate], need: &Need<'_>) -> Result<String, String> {
    let mut refused: Vec<String> = Vec::new();
    let mut fitting: Vec<(&Candidate, i64)> = Vec::new();
    for c in candidates {
        let why = if need.exclude.contains(&c.node) {
            Some("excluded after failures there".to_owned())
        } else if need.apart.contains(&c.node) {
            Some("runs a resource this one must be kept apart from".to_owned())
        } else if c.free_mib < need.memory_mib {
            Some(format!(
                "only {} MiB free, {} MiB needed",
                c.free_mib, need.memory_mib
            ))
        } else {
            None
        };
        match (why, priority(need.affinity, &c.node)) {
            (Some(why), _) => refused.push(format!("{}: {why}", c.node)),
            (None, None) => refused.push(format!(
                "{}: not in strict node-affinity rule {}",
                c.node,
                need.affinity.map_or("", |r| r.rule.as_str())
            )),
            (None, Some(p)) => fitting.push((c, p)),
        }
    }
    fitting.sort_by(|(a, pa), (b, pb)| {
        let together = |c: &Candidate| need.together.contains(&c.node);
        together(b)
            .cmp(&together(a))
            .then(pb.cmp(pa))
            .then(b.free_mib.cmp(&a.free_mib))
            .then(a.load.total_cmp(&b.load))
            .then(a.node.cmp(&b.node))
    });
    if let Some((best, _)) = fitting.first() {
        return Ok(best.node.clone());
    }
    let mut reason = match need.affinity.filter(|r| r.strict) {
        Some(rule) => format!(
            "no allowed node can take it (strict node-affinity rule {} allows {})",
            rule.rule,
            rule.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None => "no node can take it".to_owned(),
    };
    if refused.is_empty() {
        reason.push_str("; no node is online with a valid HA lease");
    } else {
        reason.push_str(&format!("; {}", refused.join("; ")));
    }
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn c(node: &str, free_mib: u64, load: f64) -> Candidate {
        Candidate {
            node: node.into(),
            free_mib,
            load,
        }
    }

    fn affinity(nodes: &[(&str, u32)], strict: bool) -> NodeAffinity {
        NodeAffinity {
            rule: "r".into(),
            resources: vec!["vm:100".into()],
            nodes: nodes
                .iter()
                .map(|(n, p)| (n.to_string(), *p))
                .collect::<BTreeMap<_, _>>(),
            strict,
        }
    }

    #[test]
    fn priority_wins_then_free_memory_then_load() {
        let nodes = [c("n1", 100, 0.0), c("n2", 500, 0.9), c("n3", 500, 0.1)];
        let need = Need {
            memory_mib: 64,
            ..Need::default()
        };
        assert_eq!(
            choose(&nodes, &need).unwrap(),
            "n3",
            "most free, then least load"
        );
        let rule = affinity(&[("n1", 3), ("n2", 1)], false);
        let need = Need {
            memory_mib: 64,
            affinity: Some(&rule),
            ..Need::default()
        };
        assert_eq!(choose(&nodes, &need).unwrap(), "n1", "highest priority");
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let nodes = [c("n1", 32, 0.0), c("n2", 128, 0.5)];
        let rule = affinity(&[("n1", 3)], false);
        let need = Need {
            memory_mib: 64,
            affinity: Some(&rule),
            ..Need::default()
        };
        assert_eq!(choose(&nodes, &need).unwrap(), "n2");
        let need = Need {
            memory_mib: 256,
            ..Need::default()
        };
        let err = choose(&nodes, &need).unwrap_err();
        assert!(
            err.contains("n2: only 128 MiB free, 256 MiB needed"),
            "{err}"
        );
    }

    #[test]
    fn strict_affinity_without_an_allowed_node_says_so() {
        let nodes = [c("n2", 512, 0.0)];
        let rule = affinity(&[("n1", 1)], true);
        let need = Need {
            memory_mib: 64,
            affinity: Some(&rule),
            ..Need::default()
        };
        let err = choose(&nodes, &need).unwrap_err();
        assert!(
            err.starts_with("no allowed node can take it (strict node-affinity rule r allows n1)"),
            "{err}"
        );
        assert!(
            err.contains("n2: not in strict node-affinity rule r"),
            "{err}"
        );
        assert!(choose(&[], &need)
            .unwrap_err()
            .contains("no node is online"));
    }

    #[test]
    fn apart_and_together_are_respected() {
        let nodes = [c("n1", 512, 0.0), c("n2", 256, 0.0)];
        let need = Need {
            memory_mib: 64,
            apart: BTreeSet::from(["n1".to_owned()]),
            ..Need::default()
        };
        assert_eq!(choose(&nodes, &need).unwrap(), "n2");
        let need = Need {
            memory_mib: 64,
            together: BTreeSet::from(["n2".to_owned()]),
            ..Need::default()
        };
        assert_eq!(choose(&nodes, &need).unwrap(), "n2");
    }
}
