//! Datacenter → Summary: cluster health, resource totals, the cluster status list and the
//! "Join node" button.

use kiln_api_types::access::Permissions;
use kiln_api_types::{ClusterResource, ClusterStatusEntry, NodeState};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::datacenter_view::{DatacenterTabs, DcTab};
use crate::components::ha_status::HaStatusCard;
use crate::components::join_dialog::JoinDialog;
use crate::components::meter::Meter;
use crate::components::vm_wizard::CreateVm;
use crate::events::{node_state, ClusterData};
use crate::format;
use crate::session::Auth;

/// Totals over the online nodes, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// Nodes online.
    pub online: usize,
    /// Nodes known to the cluster.
    pub total: usize,
    /// Logical CPUs of the online nodes.
    pub cpus: u32,
    /// CPU usage over those CPUs, 0.0..=1.0.
    pub cpu: f64,
    /// Memory used, bytes.
    pub mem: u64,
    /// Memory in total, bytes.
    pub maxmem: u64,
}

impl Totals {
    /// Adds up the node entries of `resources`.
    pub fn of(resources: &[ClusterResource]) -> Self {
        let mut totals = Totals::default();
        let mut busy_cpus = 0.0;
        for node in resources.iter().filter(|r| crate::events::is_node(r)) {
            totals.total += 1;
            if node_state(node) != NodeState::Online {
                continue;
            }
            totals.online += 1;
            let cpus = node.maxcpu.unwrap_or(0);
            totals.cpus += cpus;
            busy_cpus += node.cpu.unwrap_or(0.0) * f64::from(cpus);
            totals.mem += node.mem.unwrap_or(0);
            totals.maxmem += node.maxmem.unwrap_or(0);
        }
        if totals.cpus > 0 {
            totals.cpu = busy_cpus / f64::from(totals.cpus);
        }
        totals
    }
}

/// Whether `permissions` (of the path `/`) hold `Sys.Audit` there.
pub fn may_audit_root(permissions: &Permissions) -> bool {
    permissions
        .get("/")
        .is_some_and(|privs| privs.contains_key("Sys.Audit"))
}

/// The datacenter summary.
#[component]
pub fn DatacenterSummary(
    /// The Datacenter tab (the summary is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let data = ClusterData::expect();
    let auth = Auth::expect();
    let api = Api::expect();
    let totals = Memo::new(move |_| data.resources.with(|r| Totals::of(r)));
    let offline: Memo<Vec<String>> = Memo::new(move |_| {
        data.nodes()
            .into_iter()
            .filter(|r| node_state(r) != NodeState::Online)
            .map(|r| r.node)
            .collect()
    });
    let joining = RwSignal::new(false);
    let create_vm = CreateVm::expect();

    // The cluster status list changes when nodes come, go or change state: reload it then.
    let status = RwSignal::new(Vec::<ClusterStatusEntry>::new());
    let status_error = RwSignal::new(None::<String>);
    let membership = Memo::new(move |_| {
        data.nodes()
            .into_iter()
            .map(|r| (r.node, r.status))
            .collect::<Vec<_>>()
    });
    // The cluster status and the HA status need Sys.Audit on `/` (as in Proxmox): ask once
    // what the user holds there, and show those cards only to those who may read them.
    let audits_root = RwSignal::new(None::<bool>);
    Effect::new(move || {
        leptos::task::spawn_local(async move {
            let held = api
                .get::<Permissions>("access/permissions?path=%2F")
                .await
                .map(|p| may_audit_root(&p))
                .unwrap_or(false);
            audits_root.set(Some(held));
        });
    });
    Effect::new(move || {
        // Read, not just `track()`: a memo nobody has read never computes, so it would never
        // see its own sources change.
        membership.with(|_| ());
        if audits_root.get() != Some(true) {
            return;
        }
        leptos::task::spawn_local(async move {
            match api.cluster_status().await {
                Ok(entries) => {
                    status.set(entries);
                    status_error.set(None);
                }
                Err(e) => status_error.set(Some(format!("Could not load the cluster status: {e}"))),
            }
        });
    });

    view! {
        <section class="summary" data-testid="datacenter-summary">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">
                    "Datacenter"
                    {move || {
                        let name = auth.cluster_name();
                        (!name.is_empty()).then(|| format!(" ({name})"))
                    }}
                </h2>
                <div class="head-actions">
                <button
                    type="button"
                    class="button"
                    data-testid="datacenter-create-vm"
                    on:click=move |_| create_vm.open(None)
                >
                    "Create VM"
                </button>
                <button
                    type="button"
                    class="button primary"
                    data-testid="join-node"
                    on:click=move |_| joining.set(true)
                >
                    "Join node"
                </button>
                </div>
            </div>
            <div class="cards">
                <div class="card">
                    <h3>"Health"</h3>
                    <p class="big-figure" data-testid="nodes-online">
                        {move || format!("{} / {}", totals.get().online, totals.get().total)}
                        <span class="figure-label">" nodes online"</span>
                    </p>
                    <Show when=move || !offline.with(Vec::is_empty)>
                        <p class="notice warning" role="status">
                            "Offline: " {move || offline.get().join(", ")}
                        </p>
                    </Show>
                </div>
                <div class="card">
                    <h3>"Resources (online nodes)"</h3>
                    <Meter
                        label="CPU"
                        fraction=Signal::derive(move || totals.get().cpu)
                        text=Signal::derive(move || {
                            let t = totals.get();
                            format!("{} of {} CPU(s)", format::percent(t.cpu), t.cpus)
                        })
                    />
                    <Meter
                        label="Memory"
                        fraction=Signal::derive(move || {
                            let t = totals.get();
                            format::ratio(t.mem, t.maxmem)
                        })
                        text=Signal::derive(move || {
                            let t = totals.get();
                            format!("{} of {}", format::bytes(t.mem), format::bytes(t.maxmem))
                        })
                    />
                </div>
            </div>
            <Show when=move || audits_root.get() == Some(true)>
            <div class="card wide">
                <h3>"Cluster status"</h3>
                {move || status_error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
                <table class="grid" data-testid="cluster-status">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Type"</th>
                            <th scope="col">"ID"</th>
                            <th scope="col">"Online"</th>
                            <th scope="col">"Address"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || status.get() key=|e| (e.id.clone(), e.online) let:entry>
                            <tr>
                                <td>{entry.name.clone()}</td>
                                <td>{entry.kind.clone()}</td>
                                <td>{entry.id.clone()}</td>
                                <td>
                                    {match (entry.kind.as_str(), entry.online) {
                                        ("cluster", _) => {
                                            format!("{} node(s), quorate", entry.nodes.unwrap_or(0))
                                        }
                                        (_, Some(1)) => "yes".to_owned(),
                                        _ => "no".to_owned(),
                                    }}
                                </td>
                                <td>{entry.ip.clone().unwrap_or_default()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
            <HaStatusCard/>
            </Show>
            <Show when=move || joining.get()>
                <JoinDialog on_close=move |()| joining.set(false)/>
            </Show>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_cards_need_sys_audit_on_the_root() {
        let mut p = Permissions::new();
        assert!(!may_audit_root(&p));
        p.insert("/".into(), [("VM.Audit".to_owned(), 1)].into());
        assert!(!may_audit_root(&p));
        p.insert("/".into(), [("Sys.Audit".to_owned(), 0)].into());
        assert!(may_audit_root(&p));
    }

    fn node(
        name: &str,
        status: &str,
        cpu: f64,
        maxcpu: u32,
        mem: u64,
        maxmem: u64,
    ) -> ClusterResource {
        ClusterResource {
            id: format!("node/{name}"),
            kind: "node".into(),
            node: name.into(),
            status: status.into(),
            vmid: None,
            name: None,
            lock: None,
            cpu: Some(cpu),
            maxcpu: Some(maxcpu),
            mem: Some(mem),
            maxmem: Some(maxmem),
            uptime: None,
            hastate: None,
            template: None,
        }
    }

    #[test]
    fn totals_count_only_online_nodes_and_weight_cpu_by_cores() {
        let totals = Totals::of(&[
            node("n1", "online", 0.5, 2, 1, 4),
            node("n2", "online", 0.0, 6, 1, 4),
            node("n3", "offline", 1.0, 8, 9, 9),
        ]);
        assert_eq!((totals.online, totals.total, totals.cpus), (2, 3, 8));
        assert!((totals.cpu - 0.125).abs() < 1e-9);
        assert_eq!((totals.mem, totals.maxmem), (2, 8));
    }
}
