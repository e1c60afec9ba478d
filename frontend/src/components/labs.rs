//! The labs an instructor runs (or an auditor sees): a table with each lab's state, schedule
//! and deployment, "Create lab" (the wizard, then the new accounts' passwords), and a link to
//! each lab's dashboard. Shown under Datacenter → Labs, and on the lab home of users who see
//! no nodes.

use kiln_api_types::labs::{LabAccounts, LabEntry};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::lab_accounts::AccountsDialog;
use crate::components::lab_wizard::LabWizard;
use crate::events::ClusterData;
use crate::format;

/// A signal that changes whenever a task starts or ends, or a VM changes state: views that
/// show lab state reload then (labs are not part of the event stream's picture, and a
/// student sees only their own tasks, not the one that ends their lab).
pub fn task_pulse(data: ClusterData) -> Memo<Vec<(String, String)>> {
    Memo::new(move |_| {
        let mut pulse: Vec<(String, String)> = data.tasks.with(|tasks| {
            tasks
                .iter()
                .take(8)
                .map(|t| (t.upid.clone(), t.status.clone()))
                .collect()
        });
        data.resources.with(|all| {
            pulse.extend(
                all.iter()
                    .filter(|r| crate::events::is_vm(r))
                    .map(|r| (r.id.clone(), r.status.clone())),
            )
        });
        pulse
    })
}

/// `start – end` of a lab, in the browser's time zone.
pub fn schedule(lab: &LabEntry) -> String {
    format!(
        "{} – {}",
        format::timestamp(lab.start),
        format::timestamp(lab.end)
    )
}

/// The labs table with "Create lab".
#[component]
pub fn LabsView(
    /// Opens a lab's dashboard.
    #[prop(into)]
    open: Callback<String>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let labs = RwSignal::new(Vec::<LabEntry>::new());
    let error = RwSignal::new(None::<String>);
    let creating = RwSignal::new(false);
    let created = RwSignal::new(None::<LabAccounts>);
    let pulse = task_pulse(data);
    Effect::new(move || {
        pulse.with(|_| ());
        leptos::task::spawn_local(async move {
            match api.labs().await {
                Ok(list) => {
                    labs.set(list.into_iter().filter(|l| l.role != "student").collect());
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load the labs: {e}"))),
            }
        });
    });
    let on_created = move |accounts: LabAccounts| {
        creating.set(false);
        if accounts.accounts.is_empty() {
            open.run(accounts.labid);
        } else {
            created.set(Some(accounts));
        }
    };

    view! {
        <div class="card wide" data-testid="labs-view">
            <div class="summary-head">
                <h3>"Labs"</h3>
                <button
                    type="button"
                    class="button primary"
                    data-testid="lab-create"
                    on:click=move |_| creating.set(true)
                >
                    "Create lab"
                </button>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <Show when=move || labs.with(Vec::is_empty) && error.with(Option::is_none)>
                <p class="tree-empty">
                    "No labs yet. A lab gives every student of a roster a clone of a template, in a pool of their own."
                </p>
            </Show>
            <Show when=move || !labs.with(Vec::is_empty)>
                <table class="grid" data-testid="labs-table">
                    <thead>
                        <tr>
                            <th scope="col">"Lab"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Schedule"</th>
                            <th scope="col">"Students with a VM"</th>
                            <th scope="col">"Template"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || labs.get()
                            key=|l| (l.labid.clone(), l.state.clone(), l.deployed, l.students, l.end)
                            let:lab
                        >
                            <LabRow lab open/>
                        </For>
                    </tbody>
                </table>
            </Show>
        </div>
        <Show when=move || creating.get()>
            <LabWizard on_close=move |()| creating.set(false) on_created/>
        </Show>
        {move || {
            created
                .get()
                .map(|a| {
                    let labid = a.labid.clone();
                    view! {
                        <AccountsDialog
                            labid=a.labid.clone()
                            accounts=a.accounts
                            on_close=move |()| {
                                created.set(None);
                                open.run(labid.clone());
                            }
                        />
                    }
                })
        }}
    }
}

/// One lab in the table.
#[component]
fn LabRow(lab: LabEntry, open: Callback<String>) -> impl IntoView {
    let id = lab.labid.clone();
    view! {
        <tr data-testid="lab-row" data-labid=lab.labid.clone() data-state=lab.state.clone()>
            <td>
                <strong>{lab.labid.clone()}</strong>
                {(!lab.comment.is_empty()).then(|| format!(" — {}", lab.comment))}
            </td>
            <td>{lab.state.clone()}</td>
            <td>{schedule(&lab)}</td>
            <td>{format!("{} of {}", lab.deployed, lab.students)}</td>
            <td>{lab.template.to_string()}</td>
            <td>
                <button
                    type="button"
                    class="button"
                    data-testid="lab-open"
                    on:click=move |_| open.run(id.clone())
                >
                    "Open"
                </button>
            </td>
        </tr>
    }
}
