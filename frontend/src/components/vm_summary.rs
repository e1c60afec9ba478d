//! VM → Summary: state, node, uptime, CPU and memory, live from the event stream plus
//! `GET …/status/current` and the VM's configuration (refreshed every few seconds).

use std::time::Duration;

use kiln_api_types::{ClusterResource, VmConfig, VmStatus};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::meter::Meter;
use crate::format;
use crate::vm::VmState;

/// How often the detailed status is fetched again while the panel is open.
const STATUS_REFRESH: Duration = Duration::from_secs(3);

/// The summary of one VM.
#[component]
pub fn VmSummary(
    /// The VM.
    vmid: u32,
    /// Its cluster resource entry (live).
    #[prop(into)]
    live: Signal<Option<ClusterResource>>,
    /// Its state (live).
    #[prop(into)]
    state: Signal<VmState>,
) -> impl IntoView {
    let api = Api::expect();
    let status = RwSignal::new(None::<VmStatus>);
    let config = RwSignal::new(None::<VmConfig>);
    let error = RwSignal::new(None::<String>);
    let node = Memo::new(move |_| live.with(|r| r.as_ref().map(|r| r.node.clone())));

    let fetch = move || {
        let Some(node) = node.get_untracked() else {
            return;
        };
        leptos::task::spawn_local(async move {
            match api.vm_status(&node, vmid).await {
                Ok(s) => {
                    status.set(Some(s));
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load the VM's status: {e}"))),
            }
            if config.with_untracked(Option::is_none) {
                if let Ok(c) = api.vm_config(&node, vmid).await {
                    config.set(Some(c));
                }
            }
        });
    };
    // Effects run in the browser only: fetch when the state or node changes, and poll.
    Effect::new(move || {
        node.track();
        state.track();
        fetch();
    });
    Effect::new(move || {
        if let Ok(handle) = set_interval_with_handle(fetch, STATUS_REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });

    let running = move || state.get().has_process();
    // Live figures from the event stream win; the status call fills in the rest.
    let cpu = Memo::new(move |_| {
        live.with(|r| r.as_ref().and_then(|r| r.cpu))
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.cpu)))
    });
    let cpus = Memo::new(move |_| {
        live.with(|r| r.as_ref().and_then(|r| r.maxcpu))
            .or_else(|| status.with(|s| s.as_ref().map(|s| s.cpus)))
    });
    let memory = Memo::new(move |_| {
        live.with(|r| {
            r.as_ref()
                .and_then(|r| Some((r.mem.unwrap_or(0), r.maxmem?)))
        })
        .or_else(|| status.with(|s| s.as_ref().map(|s| (s.mem, s.maxmem))))
    });
    let uptime = move || {
        running()
            .then(|| {
                live.with(|r| r.as_ref().and_then(|r| r.uptime))
                    .or_else(|| status.with(|s| s.as_ref().map(|s| s.uptime)))
            })
            .flatten()
            .map(format::uptime)
            .unwrap_or_else(|| "–".into())
    };
    let dash = || "–".to_owned();

    view! {
        <div class="vm-summary" data-testid="vm-summary">
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            {move || {
                status
                    .with(|s| s.as_ref().and_then(|s| s.stop_reason.clone()))
                    .filter(|_| !running())
                    .map(|reason| {
                        view! {
                            <div class="notice warning" role="status" data-testid="vm-stop-reason">
                                "Last stop: " {reason}
                            </div>
                        }
                    })
            }}
            <div class="cards">
                <div class="card">
                    <h3>"Status"</h3>
                    <dl class="facts">
                        <dt>"State"</dt>
                        <dd>
                            <span
                                class=move || format!("state-badge {}", state.get().as_str())
                                data-testid="vm-state"
                            >
                                {move || state.get().as_str()}
                            </span>
                        </dd>
                        <dt>"Node"</dt>
                        <dd data-testid="vm-node">{move || node.get().unwrap_or_else(dash)}</dd>
                        <dt>"Uptime"</dt>
                        <dd data-testid="vm-uptime">{uptime}</dd>
                        <dt>"HA"</dt>
                        <dd data-testid="vm-hastate">
                            {move || live.with(|r| r.as_ref().and_then(|r| r.hastate.clone())).unwrap_or_else(|| "not managed".to_owned())}
                        </dd>
                        <dt>"Process"</dt>
                        <dd>
                            {move || {
                                status
                                    .with(|s| s.as_ref().and_then(|s| s.pid))
                                    .filter(|_| running())
                                    .map(|pid| format!("kiln-vmm, PID {pid}"))
                                    .unwrap_or_else(dash)
                            }}
                        </dd>
                        <dt>"Image"</dt>
                        <dd>{move || config.with(|c| c.as_ref().map(|c| c.image.clone())).unwrap_or_else(dash)}</dd>
                        <dt>"Start at boot"</dt>
                        <dd>
                            {move || {
                                config
                                    .with(|c| c.as_ref().map(|c| if c.onboot == 1 { "yes" } else { "no" }))
                                    .unwrap_or("–")
                            }}
                        </dd>
                        <dt>"Description"</dt>
                        <dd>{move || config.with(|c| c.as_ref().map(|c| c.description.clone())).filter(|d| !d.is_empty()).unwrap_or_else(dash)}</dd>
                    </dl>
                </div>
                <div class="card">
                    <h3>"Usage"</h3>
                    <Meter
                        label="CPU usage"
                        fraction=Signal::derive(move || if running() { cpu.get().unwrap_or(0.0) } else { 0.0 })
                        text=Signal::derive(move || match (cpu.get().filter(|_| running()), cpus.get()) {
                            (Some(c), Some(n)) => format!("{} of {n} vCPU(s)", format::percent(c)),
                            (None, Some(n)) => format!("{n} vCPU(s)"),
                            (Some(c), None) => format::percent(c),
                            (None, None) => "–".into(),
                        })
                    />
                    <Meter
                        label="Memory usage"
                        fraction=Signal::derive(move || {
                            memory
                                .get()
                                .filter(|_| running())
                                .map(|(used, total)| format::ratio(used, total))
                                .unwrap_or(0.0)
                        })
                        text=Signal::derive(move || match memory.get() {
                            Some((used, total)) if running() => format!(
                                "{} ({} of {})",
                                format::percent(format::ratio(used, total)),
                                format::bytes(used),
                                format::bytes(total),
                            ),
                            Some((_, total)) => format!("{} configured", format::bytes(total)),
                            None => "–".into(),
                        })
                    />
                </div>
            </div>
        </div>
    }
}
