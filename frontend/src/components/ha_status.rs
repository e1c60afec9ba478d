//! Datacenter → Summary's High availability card: every node's lease and every HA resource's state, with the
//! reason the manager gives (waiting for a lease to expire, no allowed node, error…).

use kiln_api_types::ha::HaStatusEntry;
use leptos::prelude::*;

use crate::api::Api;
use crate::events::ClusterData;

/// The HA status card.
#[component]
pub fn HaStatusCard() -> impl IntoView {
    let data = ClusterData::expect();
    let api = Api::expect();
    let entries = RwSignal::new(Vec::<HaStatusEntry>::new());
    let error = RwSignal::new(None::<String>);
    // Reload when a VM's HA state, its node or a node's state changes (the event stream
    // carries those; the manager announces every transition).
    let picture = Memo::new(move |_| {
        data.resources.with(|r| {
            r.iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        r.node.clone(),
                        r.status.clone(),
                        r.hastate.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
    });
    Effect::new(move || {
        picture.with(|_| ());
        leptos::task::spawn_local(async move {
            match api.ha_status().await {
                Ok(list) => {
                    entries.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load the HA status: {e}"))),
            }
        });
    });
    let services = move || {
        entries.with(|e| {
            e.iter()
                .filter(|e| e.kind == "service")
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let nodes = move || {
        entries.with(|e| {
            e.iter()
                .filter(|e| e.kind == "lrm")
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    view! {
        <div class="card wide" data-testid="ha-status">
            <h3>"High availability"</h3>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <Show
                when=move || !services().is_empty()
                fallback=|| view! { <p class="muted">"No HA resources. Add one on the HA tab."</p> }
            >
                <table class="grid" data-testid="ha-resources">
                    <thead>
                        <tr>
                            <th scope="col">"Resource"</th>
                            <th scope="col">"Node"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Requested"</th>
                            <th scope="col">"Reason"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=services
                            key=|e| (e.id.clone(), e.node.clone(), e.status.clone(), e.reason.clone())
                            let:entry
                        >
                            <tr data-testid="ha-resource" data-sid=entry.sid.clone().unwrap_or_default()>
                                <td>{entry.sid.clone().unwrap_or_default()}</td>
                                <td data-testid="ha-resource-node">{entry.node.clone().unwrap_or_default()}</td>
                                <td data-testid="ha-resource-state">{entry.state.clone().unwrap_or_default()}</td>
                                <td>{entry.request_state.clone().unwrap_or_default()}</td>
                                <td>{entry.reason.clone().unwrap_or_default()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
            <table class="grid" data-testid="ha-nodes">
                <thead>
                    <tr>
                        <th scope="col">"Node"</th>
                        <th scope="col">"Lease"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=nodes key=|e| (e.id.clone(), e.status.clone()) let:entry>
                        <tr>
                            <td>{entry.node.clone().unwrap_or_default()}</td>
                            <td>{entry.status.clone()}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </div>
    }
}
