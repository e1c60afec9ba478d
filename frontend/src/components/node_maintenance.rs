//! Node → Summary's maintenance card: whether HA keeps the node empty, the on/off toggle
//! (`POST /api2/kiln/nodes/{node}/maintenance`), and the HA VMs still on the node while they
//! move away.

use std::time::Duration;

use kiln_api_types::ha::NodeMaintenance;
use kiln_api_types::ClusterResource;
use leptos::prelude::*;

use crate::api::Api;
use crate::events::ClusterData;
use crate::format;

/// How often the state is fetched again (another administrator may switch it).
const REFRESH: Duration = Duration::from_secs(3);

/// What the card says about the VMs on the node, given its maintenance state.
pub fn drain_text(on: bool, vms: &[ClusterResource]) -> String {
    let ha: Vec<String> = vms
        .iter()
        .filter(|v| v.hastate.is_some())
        .filter_map(|v| v.vmid.map(|id| id.to_string()))
        .collect();
    let others = vms.len() - ha.len();
    let stay = match others {
        0 => String::new(),
        1 => " 1 VM not under HA stays here.".to_owned(),
        n => format!(" {n} VMs not under HA stay here."),
    };
    match (on, ha.is_empty()) {
        (true, true) => format!("No HA VM is left on this node.{stay}"),
        (true, false) => format!(
            "HA is moving {} away: VM {}.{stay}",
            if ha.len() == 1 { "1 VM" } else { "these VMs" },
            ha.join(", ")
        ),
        (false, _) => format!(
            "Entering maintenance moves this node's HA VMs ({}) to other nodes and places none here until it ends.",
            ha.len()
        ),
    }
}

/// The card.
#[component]
pub fn NodeMaintenanceCard(
    /// The node.
    node: String,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let state = RwSignal::new(None::<NodeMaintenance>);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let fetch = {
        let node = node.clone();
        move || {
            let node = node.clone();
            leptos::task::spawn_local(async move {
                match api.node_maintenance(&node).await {
                    Ok(m) => state.set(Some(m)),
                    Err(e) => error.set(Some(format!("Could not read the maintenance mode: {e}"))),
                }
            });
        }
    };
    {
        let fetch = fetch.clone();
        Effect::new(move || {
            fetch();
            if let Ok(handle) = set_interval_with_handle(fetch.clone(), REFRESH) {
                on_cleanup(move || handle.clear());
            }
        });
    }
    let on = move || state.with(|s| s.as_ref().is_some_and(|s| s.enable == 1));
    let toggle = {
        let node = node.clone();
        move |_| {
            let node = node.clone();
            let enable = !on();
            busy.set(true);
            error.set(None);
            let fetch = fetch.clone();
            leptos::task::spawn_local(async move {
                match api.set_node_maintenance(&node, enable).await {
                    Ok(()) => fetch(),
                    Err(e) => error.set(Some(format!(
                        "Could not {} maintenance: {e}",
                        if enable { "enter" } else { "leave" }
                    ))),
                }
                busy.set(false);
            });
        }
    };
    let vms = {
        let node = node.clone();
        Memo::new(move |_| data.vms_on(&node))
    };
    let label = move || match state.get() {
        None => "–".to_owned(),
        Some(s) if s.enable == 1 => match s.since {
            Some(t) => format!("on (since {})", format::timestamp(t)),
            None => "on".to_owned(),
        },
        Some(_) => "off".to_owned(),
    };
    view! {
        <div class="card" data-testid="node-maintenance-card">
            <h3>"HA maintenance"</h3>
            <p>
                "Maintenance: "
                <span
                    class=move || format!("state-badge {}", if on() { "maintenance" } else { "online" })
                    data-testid="node-maintenance"
                    data-state=move || if on() { "on" } else { "off" }
                >
                    {label}
                </span>
            </p>
            <p class="hint" data-testid="node-maintenance-drain">
                {move || vms.with(|v| drain_text(on(), v))}
            </p>
            <button
                type="button"
                class="button"
                class:primary=move || on()
                data-testid="node-maintenance-toggle"
                aria-pressed=move || on().to_string()
                disabled=move || busy.get() || state.with(Option::is_none)
                on:click=toggle
            >
                {move || if on() { "Leave maintenance" } else { "Enter maintenance" }}
            </button>
            {move || {
                error
                    .get()
                    .map(|e| view! { <div class="notice error" role="alert" data-testid="node-maintenance-error">{e}</div> })
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(vmid: u32, hastate: Option<&str>) -> ClusterResource {
        ClusterResource {
            id: format!("qemu/{vmid}"),
            kind: "qemu".into(),
            node: "n1".into(),
            status: "running".into(),
            vmid: Some(vmid),
            name: None,
            lock: None,
            cpu: None,
            maxcpu: None,
            mem: None,
            maxmem: None,
            uptime: None,
            hastate: hastate.map(Into::into),
            template: None,
        }
    }

    #[test]
    fn the_drain_is_described_by_what_is_left() {
        let vms = [vm(100, Some("started")), vm(101, None)];
        assert_eq!(
            drain_text(true, &vms),
            "HA is moving 1 VM away: VM 100. 1 VM not under HA stays here."
        );
        assert_eq!(
            drain_text(true, &vms[1..]),
            "No HA VM is left on this node. 1 VM not under HA stays here."
        );
        assert!(drain_text(false, &vms).contains("HA VMs (1)"));
        assert_eq!(drain_text(true, &[]), "No HA VM is left on this node.");
    }
}
