//! The home page of users who see no node (students, and instructors without an
//! administrator's view): their labs and VMs, without the cluster's resource tree.

use kiln_api_types::access::PoolEntry;
use kiln_api_types::labs::LabEntry;
use leptos::prelude::*;

use crate::api::Api;
use crate::components::lab_dashboard::LabDashboard;
use crate::components::labs::{task_pulse, LabsView};
use crate::components::student_labs::StudentLabs;
use crate::events::ClusterData;

/// "My labs": the labs attended, and those run (with their dashboards).
#[component]
pub fn LabHome() -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let pulse = task_pulse(data);
    let labs = RwSignal::new(Vec::<LabEntry>::new());
    let teaches = RwSignal::new(false);
    let loaded = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let open = RwSignal::new(None::<String>);
    Effect::new(move || {
        pulse.with(|_| ());
        leptos::task::spawn_local(async move {
            match api.labs().await {
                Ok(list) => {
                    // Pools the user may see: a sign of someone who runs labs.
                    let pools = api.get::<Vec<PoolEntry>>("pools").await.unwrap_or_default();
                    teaches.set(!pools.is_empty() || list.iter().any(|l| l.role != "student"));
                    labs.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load your labs: {e}"))),
            }
            loaded.set(true);
        });
    });
    let attended = Signal::derive(move || {
        labs.with(|l| {
            l.iter()
                .filter(|l| l.role == "student")
                .cloned()
                .collect::<Vec<_>>()
        })
    });

    view! {
        <main class="content lab-home" data-testid="lab-home">
            {move || match open.get() {
                Some(labid) => view! { <LabDashboard labid on_back=move |()| open.set(None)/> }.into_any(),
                None => {
                    view! {
                        <section class="summary">
                            <div class="summary-head">
                                <h2 class="summary-title">"My labs"</h2>
                            </div>
                            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
                            <Show when=move || loaded.get() && attended.with(Vec::is_empty) && !teaches.get()>
                                <p class="tree-empty" data-testid="lab-home-empty">
                                    "You are in no lab yet. Once your instructor deploys one, your VM shows up here."
                                </p>
                            </Show>
                            <StudentLabs labs=attended/>
                            <Show when=move || teaches.get()>
                                <LabsView open=move |labid: String| open.set(Some(labid))/>
                            </Show>
                        </section>
                    }
                        .into_any()
                }
            }}
        </main>
    }
}
