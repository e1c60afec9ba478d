//! Node → Summary: the node's state and figures, live from the event stream plus
//! `GET /nodes/{node}/status` (refreshed every few seconds), and its HA maintenance toggle.

use std::time::Duration;

use kiln_api_types::{NodeState, NodeStatus};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::meter::Meter;
use crate::components::node_maintenance::NodeMaintenanceCard;
use crate::components::vm_wizard::CreateVm;
use crate::events::{node_state, ClusterData};
use crate::format;

/// How often the detailed status is fetched again while the panel is open.
const STATUS_REFRESH: Duration = Duration::from_secs(3);

/// The summary of one node.
#[component]
pub fn NodeSummary(
    /// The node's name.
    node: String,
) -> impl IntoView {
    let data = ClusterData::expect();
    let api = Api::expect();
    let status = RwSignal::new(None::<NodeStatus>);
    let error = RwSignal::new(None::<String>);

    let fetch = {
        let node = node.clone();
        move || {
            let node = node.clone();
            leptos::task::spawn_local(async move {
                match api.node_status(&node).await {
                    Ok(s) => {
                        status.set(Some(s));
                        error.set(None);
                    }
                    // Stale figures of a node that stopped answering would mislead.
                    Err(e) => {
                        status.set(None);
                        error.set(Some(e.to_string()));
                    }
                }
            });
        }
    };
    // Effects run in the browser only: fetch now, then poll until the panel closes.
    Effect::new(move || {
        fetch();
        if let Ok(handle) = set_interval_with_handle(fetch.clone(), STATUS_REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });

    let live = Memo::new({
        let node = node.clone();
        move |_| data.node(&node)
    });
    let state = Memo::new(move |_| {
        live.get()
            .map(|r| node_state(&r))
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.status)))
            .unwrap_or(NodeState::Unknown)
    });
    // Live figures from the event stream win; the status call fills in the rest.
    let cpu = Memo::new(move |_| {
        live.get()
            .and_then(|r| r.cpu)
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.cpu)))
    });
    let cpus = Memo::new(move |_| {
        live.get()
            .and_then(|r| r.maxcpu)
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.cpuinfo.cpus)))
    });
    let memory = Memo::new(move |_| {
        let from_live = live.get().and_then(|r| Some((r.mem?, r.maxmem?)));
        from_live.or_else(|| status.with(|s| s.as_ref().map(|s| (s.memory.used, s.memory.total))))
    });
    let uptime = Memo::new(move |_| {
        live.get()
            .and_then(|r| r.uptime)
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.uptime)))
    });
    let detail = move |pick: fn(&NodeStatus) -> String| {
        move || status.with(|s| s.as_ref().map(pick).unwrap_or_else(|| "–".into()))
    };

    let online = move || state.get() == NodeState::Online;
    let title = format!("Node '{node}'");
    let create_vm = CreateVm::expect();
    let create_on = node.clone();
    // Why the node is not online: the server's explanation when the status call failed
    // (it names the last heartbeat), else the heartbeat age the status reported.
    let offline_detail = move || {
        error.get().unwrap_or_else(|| {
            match status.with(|s| s.as_ref().and_then(|s| s.last_seen_secs)) {
                Some(secs) => format!(
                    "Last heartbeat {}. Start kiln-node on that host to bring it back.",
                    format::ago(secs)
                ),
                None => "No heartbeat received yet. Start kiln-node on that host.".into(),
            }
        })
    };
    let offline_title = {
        let node = node.clone();
        move || format!("Node {node} is {}.", state.get().as_str())
    };
    let status_error = {
        let node = node.clone();
        move || {
            error.get().filter(|_| online()).map(|e| {
                view! {
                    <div class="notice error" role="alert">
                        {format!("Could not load the status of {node}: {e}")}
                    </div>
                }
            })
        }
    };

    view! {
        <section class="summary" data-testid="node-summary" data-node=node.clone()>
            <div class="tabs" role="tablist">
                <span class="tab active" role="tab" aria-selected="true">"Summary"</span>
            </div>
            <div class="summary-head">
                <h2 class="summary-title">{title}</h2>
                <button
                    type="button"
                    class="button primary"
                    data-testid="node-create-vm"
                    disabled=move || !online()
                    on:click=move |_| create_vm.open(Some(create_on.clone()))
                >
                    "Create VM"
                </button>
            </div>
            <Show when=move || !online() && (live.with(Option::is_some) || error.with(Option::is_some))>
                <div class="notice warning" role="status" data-testid="node-offline-notice">
                    <strong>{offline_title.clone()}</strong>
                    " "
                    {offline_detail}
                </div>
            </Show>
            {status_error}
            <div class="cards">
                <div class="card">
                    <h3>"Status"</h3>
                    <dl class="facts">
                        <dt>"State"</dt>
                        <dd>
                            <span
                                class=move || format!("state-badge {}", state.get().as_str())
                                data-testid="node-state"
                            >
                                {move || state.get().as_str()}
                            </span>
                        </dd>
                        <dt>"Uptime"</dt>
                        <dd>{move || uptime.get().map(format::uptime).unwrap_or_else(|| "–".into())}</dd>
                        <dt>"Last seen"</dt>
                        <dd>
                            {move || {
                                status
                                    .with(|s| s.as_ref().and_then(|s| s.last_seen_secs))
                                    .map(format::ago)
                                    .unwrap_or_else(|| "–".into())
                            }}
                        </dd>
                        <dt>"Load average"</dt>
                        <dd>{detail(|s| s.loadavg.join(", "))}</dd>
                        <dt>"KVM"</dt>
                        <dd>{detail(|s| if s.kvm { "yes".into() } else { "no".into() })}</dd>
                        <dt>"Kernel version"</dt>
                        <dd>{detail(|s| s.kversion.clone())}</dd>
                        <dt>"Agent version"</dt>
                        <dd>{detail(|s| s.pveversion.clone())}</dd>
                        <dt>"CPU model"</dt>
                        <dd>{detail(|s| format!("{} ({} socket(s), {} core(s))", s.cpuinfo.model, s.cpuinfo.sockets, s.cpuinfo.cores))}</dd>
                    </dl>
                </div>
                <div class="card">
                    <h3>"Usage"</h3>
                    <Meter
                        label="CPU usage"
                        fraction=Signal::derive(move || cpu.get().unwrap_or(0.0))
                        text=Signal::derive(move || match (cpu.get(), cpus.get()) {
                            (Some(c), Some(n)) => format!("{} of {n} CPU(s)", format::percent(c)),
                            (Some(c), None) => format::percent(c),
                            _ => "–".into(),
                        })
                    />
                    <Meter
                        label="Memory usage"
                        fraction=Signal::derive(move || {
                            memory.get().map(|(used, total)| format::ratio(used, total)).unwrap_or(0.0)
                        })
                        text=Signal::derive(move || match memory.get() {
                            Some((used, total)) => format!(
                                "{} ({} of {})",
                                format::percent(format::ratio(used, total)),
                                format::bytes(used),
                                format::bytes(total),
                            ),
                            None => "–".into(),
                        })
                    />
                </div>
                <NodeMaintenanceCard node=node.clone()/>
            </div>
        </section>
    }
}
