//! The HA manager's view of every node: online, in maintenance, being fenced (its lease may
//! still run) or fenced; the lease left, the HA VMs the lease guards, the last answer.

use kiln_api_types::ha::HaManagerStatus;
use leptos::prelude::*;

use super::data::HaData;

/// One node's line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeLine {
    /// The node.
    pub node: String,
    /// `online`, `maintenance`, `fence` or `fenced`.
    pub state: String,
    /// What the state means.
    pub meaning: &'static str,
    /// Lease left, e.g. `7.4 s`.
    pub lease: String,
    /// HA VMs its lease guards.
    pub guarded: String,
    /// Time since its last answer.
    pub last_answer: String,
}

fn meaning(state: &str) -> &'static str {
    match state {
        "online" => "takes HA resources",
        "maintenance" => "in maintenance: its HA resources move away, nothing is placed here",
        "fence" => "not answering: waiting until its lease has surely expired",
        "fenced" => "lease expired: its HA resources are recovered elsewhere",
        _ => "",
    }
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "–".to_owned(),
        |ms| format!("{:.1} s", ms as f64 / 1000.0),
    )
}

/// The lines of `status`, by node name.
pub fn node_lines(status: &HaManagerStatus) -> Vec<NodeLine> {
    status
        .manager_status
        .node_status
        .iter()
        .map(|(node, state)| {
            let lrm = status.lrm_status.get(node).cloned().unwrap_or_default();
            NodeLine {
                node: node.clone(),
                state: state.clone(),
                meaning: meaning(state),
                lease: seconds(lrm.lease_remaining_ms),
                guarded: lrm
                    .guarded_vms
                    .map_or_else(|| "–".to_owned(), |n| n.to_string()),
                last_answer: lrm.last_answer_ms_ago.map_or_else(
                    || "never".to_owned(),
                    |ms| format!("{} ago", seconds(Some(ms))),
                ),
            }
        })
        .collect()
}

/// The card.
#[component]
pub fn ManagerCard() -> impl IntoView {
    let data = HaData::expect();
    let lines = move || {
        data.manager
            .with(|m| m.as_ref().map(node_lines).unwrap_or_default())
    };
    let timings = move || {
        data.manager.with(|m| {
            m.as_ref().map(|m| {
                format!(
                    "The manager runs in {}. Leases last {} with each heartbeat; a silent node's lease counts as expired {} after its last answer.",
                    m.manager_status.master_node,
                    seconds(Some(m.manager_status.lease_ms)),
                    seconds(Some(m.manager_status.lease_ms + m.manager_status.lease_margin_ms)),
                )
            })
        })
    };
    view! {
        <div class="card wide" data-testid="ha-manager-card">
            <h3>"Manager status"</h3>
            <p class="hint">{timings}</p>
            <table class="grid" data-testid="ha-manager-nodes">
                <thead>
                    <tr>
                        <th scope="col">"Node"</th>
                        <th scope="col">"HA state"</th>
                        <th scope="col">"Lease left"</th>
                        <th scope="col">"Guarded HA VMs"</th>
                        <th scope="col">"Last answer"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=lines key=|l| l.clone() let:l>
                        <tr data-testid="ha-manager-node" data-node=l.node.clone()>
                            <td>{l.node.clone()}</td>
                            <td>
                                <span
                                    class=format!("state-badge {}", l.state)
                                    title=l.meaning
                                    data-testid="ha-manager-node-state"
                                >
                                    {l.state.clone()}
                                </span>
                            </td>
                            <td>{l.lease.clone()}</td>
                            <td>{l.guarded.clone()}</td>
                            <td>{l.last_answer.clone()}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api_types::ha::{LrmStatus, ManagerStatus};

    #[test]
    fn node_lines_show_state_lease_and_last_answer() {
        let mut status = HaManagerStatus {
            manager_status: ManagerStatus {
                master_node: "kiln-server".into(),
                lease_ms: 8000,
                lease_margin_ms: 2000,
                ..ManagerStatus::default()
            },
            ..HaManagerStatus::default()
        };
        status
            .manager_status
            .node_status
            .insert("n1".into(), "maintenance".into());
        status
            .manager_status
            .node_status
            .insert("n2".into(), "fence".into());
        status.lrm_status.insert(
            "n1".into(),
            LrmStatus {
                lease_remaining_ms: Some(7400),
                guarded_vms: Some(0),
                last_answer_ms_ago: Some(300),
            },
        );
        let lines = node_lines(&status);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].node, "n1");
        assert_eq!(lines[0].lease, "7.4 s");
        assert_eq!(lines[0].last_answer, "0.3 s ago");
        assert!(lines[0].meaning.contains("maintenance"));
        assert_eq!(lines[1].lease, "–");
        assert_eq!(lines[1].last_answer, "never");
        assert!(lines[1].meaning.contains("surely expired"));
    }
}
