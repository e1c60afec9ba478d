//! Add or edit an HA resource: the VM (when adding), requested state, max_restart,
//! max_relocate, failback and comment. Checked as the user types; the server's refusal of a
//! field shows under that field, and nothing typed is lost.

use std::collections::BTreeMap;

use kiln_api_types::ha::{HaResource, HaResourceCreate, HaResourceUpdate};
use leptos::prelude::*;

use super::data::HaData;
use super::form::{parse_count, split_refusal, FieldError, REQUESTED_STATES};
use crate::api::Api;
use crate::components::dialog::Dialog;
use crate::events::ClusterData;

/// Fields the dialog shows (the server's errors for others go to the general line).
const FIELDS: [&str; 6] = [
    "sid",
    "state",
    "max_restart",
    "max_relocate",
    "failback",
    "comment",
];

fn error_id(field: &str) -> String {
    format!("ha-resource-error-{field}")
}

/// The dialog: a new resource when `existing` is `None`.
#[component]
pub fn ResourceDialog(
    /// The resource to edit (with the digest it was read with).
    existing: Option<HaResource>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = HaData::expect();
    let cluster = ClusterData::expect();
    let editing = existing.clone();
    let title = match &existing {
        Some(r) => format!("Edit HA resource {}", r.sid),
        None => "Add: HA resource".to_owned(),
    };

    // VMs not yet under HA, to choose from when adding.
    let candidates = Memo::new(move |_| {
        let taken = data.sids();
        cluster.resources.with(|all| {
            let mut vms: Vec<(u32, String, String)> = all
                .iter()
                .filter(|r| crate::events::is_vm(r))
                .filter_map(|r| Some((r.vmid?, r.name.clone().unwrap_or_default(), r.node.clone())))
                .filter(|(id, _, _)| !taken.contains(&format!("vm:{id}")))
                .collect();
            vms.sort();
            vms
        })
    });
    let vm = RwSignal::new(
        candidates
            .get_untracked()
            .first()
            .map(|(id, _, _)| id.to_string())
            .unwrap_or_default(),
    );
    let start = existing.clone();
    let state = RwSignal::new(
        start
            .as_ref()
            .map_or("started".to_owned(), |r| r.state.clone()),
    );
    let max_restart = RwSignal::new(start.as_ref().map_or(1, |r| r.max_restart).to_string());
    let max_relocate = RwSignal::new(start.as_ref().map_or(1, |r| r.max_relocate).to_string());
    let failback = RwSignal::new(start.as_ref().is_none_or(|r| r.failback == 1));
    let comment = RwSignal::new(
        start
            .as_ref()
            .map(|r| r.comment.clone())
            .unwrap_or_default(),
    );
    let server_errors = RwSignal::new(BTreeMap::<String, String>::new());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);

    let server_error = move |field: &str| server_errors.with(|e| e.get(field).cloned());
    let edited = move |field: &'static str| {
        server_errors.update(|e| {
            e.remove(field);
        });
    };
    let sid_error = Memo::new(move |_| {
        if editing.is_none() && vm.with(String::is_empty) {
            Some("There is no VM left to add: every VM is under HA already.".to_owned())
        } else {
            server_error("sid")
        }
    });
    let restart_error = Memo::new(move |_| {
        parse_count(&max_restart.get())
            .err()
            .or_else(|| server_error("max_restart"))
    });
    let relocate_error = Memo::new(move |_| {
        parse_count(&max_relocate.get())
            .err()
            .or_else(|| server_error("max_relocate"))
    });
    let valid = move || {
        sid_error.with(Option::is_none)
            && parse_count(&max_restart.get()).is_ok()
            && parse_count(&max_relocate.get()).is_ok()
    };

    let existing_for_submit = existing.clone();
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if !valid() || sending.get_untracked() {
            return;
        }
        let (Ok(restart), Ok(relocate)) = (
            parse_count(&max_restart.get_untracked()),
            parse_count(&max_relocate.get_untracked()),
        ) else {
            return;
        };
        let existing = existing_for_submit.clone();
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            let result = match &existing {
                Some(r) => {
                    let request = HaResourceUpdate {
                        state: Some(state.get_untracked()),
                        max_restart: Some(restart),
                        max_relocate: Some(relocate),
                        failback: Some(u8::from(failback.get_untracked())),
                        comment: Some(comment.get_untracked()),
                        digest: Some(r.digest.clone()),
                        ..HaResourceUpdate::default()
                    };
                    api.update_ha_resource(&r.sid, &request).await
                }
                None => {
                    let request = HaResourceCreate {
                        sid: format!("vm:{}", vm.get_untracked()),
                        state: Some(state.get_untracked()),
                        max_restart: Some(restart),
                        max_relocate: Some(relocate),
                        failback: Some(u8::from(failback.get_untracked())),
                        comment: Some(comment.get_untracked()).filter(|c| !c.is_empty()),
                    };
                    api.create_ha_resource(&request).await
                }
            };
            match result {
                Ok(()) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) = split_refusal(e, &FIELDS, "Saving the HA resource");
                    server_errors.set(fields);
                    general.set(line);
                    sending.set(false);
                }
            }
        });
    };

    let vm_field = match existing.clone() {
        Some(r) => view! { <span data-testid="ha-resource-sid">{r.sid}</span> }.into_any(),
        None => view! {
            <select
                id="ha-resource-vm"
                data-testid="ha-resource-vm"
                prop:value=move || vm.get()
                on:change=move |ev| {
                    edited("sid");
                    vm.set(event_target_value(&ev));
                }
            >
                <For each=move || candidates.get() key=|c| c.0 let:c>
                    <option value=c.0.to_string()>
                        {if c.1.is_empty() {
                            format!("VM {} on {}", c.0, c.2)
                        } else {
                            format!("VM {} ({}) on {}", c.0, c.1, c.2)
                        }}
                    </option>
                </For>
            </select>
        }
        .into_any(),
    };

    view! {
        <Dialog title=title testid="ha-resource-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <label for="ha-resource-vm">"VM"</label>
                    <div class="field">
                        {vm_field}
                        <FieldError testid=error_id("sid") message=sid_error/>
                    </div>

                    <label for="ha-resource-state">"Requested state"</label>
                    <div class="field">
                        <select
                            id="ha-resource-state"
                            data-testid="ha-resource-state"
                            prop:value=move || state.get()
                            on:change=move |ev| {
                                edited("state");
                                state.set(event_target_value(&ev));
                            }
                        >
                            {REQUESTED_STATES
                                .iter()
                                .map(|&(value, label)| {
                                    view! {
                                        <option value=value selected=move || state.get() == value>
                                            {label}
                                        </option>
                                    }
                                })
                                .collect_view()}
                        </select>
                        <FieldError
                            testid=error_id("state")
                            message=Signal::derive(move || server_error("state"))
                        />
                    </div>

                    <label for="ha-resource-max-restart">"Max. restart"</label>
                    <div class="field">
                        <input
                            id="ha-resource-max-restart"
                            type="number"
                            min="0"
                            max="10"
                            data-testid="ha-resource-max-restart"
                            prop:value=move || max_restart.get()
                            on:input=move |ev| {
                                edited("max_restart");
                                max_restart.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">"Restarts on the same node after a crash, 0 to 10."</span>
                        <FieldError testid=error_id("max_restart") message=restart_error/>
                    </div>

                    <label for="ha-resource-max-relocate">"Max. relocate"</label>
                    <div class="field">
                        <input
                            id="ha-resource-max-relocate"
                            type="number"
                            min="0"
                            max="10"
                            data-testid="ha-resource-max-relocate"
                            prop:value=move || max_relocate.get()
                            on:input=move |ev| {
                                edited("max_relocate");
                                max_relocate.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">"Moves to another node once the restarts are used up, 0 to 10."</span>
                        <FieldError testid=error_id("max_relocate") message=relocate_error/>
                    </div>

                    <span class="form-label">"Failback"</span>
                    <div class="field">
                        <label class="checkbox">
                            <input
                                type="checkbox"
                                data-testid="ha-resource-failback"
                                prop:checked=move || failback.get()
                                on:change=move |ev| {
                                    edited("failback");
                                    failback.set(event_target_checked(&ev));
                                }
                            />
                            "Move back to a node of higher priority when it returns"
                        </label>
                        <FieldError
                            testid=error_id("failback")
                            message=Signal::derive(move || server_error("failback"))
                        />
                    </div>

                    <label for="ha-resource-comment">"Comment"</label>
                    <div class="field">
                        <input
                            id="ha-resource-comment"
                            type="text"
                            autocomplete="off"
                            data-testid="ha-resource-comment"
                            prop:value=move || comment.get()
                            on:input=move |ev| {
                                edited("comment");
                                comment.set(event_target_value(&ev));
                            }
                        />
                        <FieldError
                            testid=error_id("comment")
                            message=Signal::derive(move || server_error("comment"))
                        />
                    </div>
                </div>
                {move || {
                    general
                        .get()
                        .map(|e| view! { <div class="notice error" role="alert" data-testid="ha-resource-error">{e}</div> })
                }}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="ha-resource-submit"
                        disabled=move || sending.get() || !valid()
                    >
                        {if existing.is_some() { "Save" } else { "Add" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
