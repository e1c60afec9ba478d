//! The "Create lab" wizard: lab id (its pool), template, node, roster (a CSV file or text,
//! checked line by line as it is read, or an existing group), the per-student quota and the
//! schedule. The server checks everything again; its per-field errors appear by the fields.

use std::collections::BTreeMap;

use kiln_api_types::access::{GroupEntry, PoolEntry};
use kiln_api_types::labs::{LabAccounts, LabCreate};
use kiln_api_types::roster::{describe, parse_roster, LineError};
use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::components::dialog::Dialog;
use crate::events::{node_state, ClusterData};
use crate::format;

/// An example roster, shown as the text area's placeholder.
const EXAMPLE: &str =
    "username,email,firstname,lastname\nada,ada@example.org,Ada,Lovelace\nalan,alan@example.org,Alan,Turing";
/// The default length of a lab, in seconds.
const DEFAULT_LENGTH: i64 = 2 * 3600;

/// What the roster text says: the students, or the wrong lines.
fn roster_summary(text: &str) -> Result<Vec<String>, Vec<LineError>> {
    parse_roster(text.as_bytes()).map(|entries| entries.into_iter().map(|e| e.userid).collect())
}

/// An optional number field: empty is `None`.
fn optional<T: std::str::FromStr>(text: &str, what: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{what}: enter a whole number, or leave it empty"))
}

/// The error line under a field.
#[component]
fn LabFieldError(
    field: &'static str,
    #[prop(into)] message: Signal<Option<String>>,
) -> impl IntoView {
    move || {
        message.get().map(|m| {
            view! {
                <span class="field-error" role="alert" data-testid=format!("lab-error-{field}")>
                    {m}
                </span>
            }
        })
    }
}

/// Reads the chosen file's bytes (browser only).
#[cfg(feature = "hydrate")]
fn read_file(event: leptos::ev::Event, done: impl FnOnce(Vec<u8>) + 'static) {
    use wasm_bindgen::JsCast;
    let Some(input) = event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
    else {
        return;
    };
    let Some(file) = input.files().and_then(|f| f.get(0)) else {
        return;
    };
    leptos::task::spawn_local(async move {
        if let Ok(buffer) = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
            done(js_sys::Uint8Array::new(&buffer).to_vec());
        }
    });
}

#[cfg(not(feature = "hydrate"))]
fn read_file(_event: leptos::ev::Event, _done: impl FnOnce(Vec<u8>) + 'static) {}

/// The wizard dialog.
#[component]
pub fn LabWizard(
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
    /// Called with the new lab's accounts once it is created.
    #[prop(into)]
    on_created: Callback<LabAccounts>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let now = format::now_secs();

    let labid = RwSignal::new(String::new());
    let template = RwSignal::new(String::new());
    let node = RwSignal::new(String::new());
    let use_group = RwSignal::new(false);
    let csv = RwSignal::new(String::new());
    let file_errors = RwSignal::new(None::<String>);
    let group = RwSignal::new(String::new());
    let vcpus = RwSignal::new(String::new());
    let memory = RwSignal::new(String::new());
    let start = RwSignal::new(format::datetime_local(now));
    let end = RwSignal::new(format::datetime_local(now + DEFAULT_LENGTH));
    let delete_after = RwSignal::new(String::new());
    let comment = RwSignal::new(String::new());
    let pools = RwSignal::new(Vec::<PoolEntry>::new());
    let groups = RwSignal::new(Vec::<GroupEntry>::new());
    let server_errors = RwSignal::new(BTreeMap::<String, String>::new());
    let general_error = RwSignal::new(None::<String>);
    let submitting = RwSignal::new(false);

    let templates = Memo::new(move |_| {
        data.resources.with(|all| {
            let mut list: Vec<_> = all
                .iter()
                .filter(|r| r.template == Some(1) && r.vmid.is_some())
                .cloned()
                .collect();
            list.sort_by_key(|r| r.vmid);
            list
        })
    });
    let online = Memo::new(move |_| {
        data.nodes()
            .into_iter()
            .filter(|r| node_state(r) == kiln_api_types::NodeState::Online)
            .map(|r| r.node)
            .collect::<Vec<_>>()
    });
    // Proposals: the first template, its size as the quota, the pools without a lab.
    Effect::new(move || {
        let list = templates.get();
        if template.with_untracked(String::is_empty) {
            if let Some(t) = list.first() {
                template.set(t.vmid.map(|v| v.to_string()).unwrap_or_default());
                vcpus.set(t.maxcpu.unwrap_or(1).to_string());
                memory.set((t.maxmem.unwrap_or(0) / (1024 * 1024)).to_string());
            }
        }
    });
    Effect::new(move || {
        leptos::task::spawn_local(async move {
            if let Ok(list) = api.get::<Vec<PoolEntry>>("pools").await {
                let labs = api.labs().await.unwrap_or_default();
                let free: Vec<PoolEntry> = list
                    .into_iter()
                    .filter(|p| p.parent.is_none() && !labs.iter().any(|l| l.labid == p.poolid))
                    .collect();
                // The wizard may be closed by now: `try_`.
                if labid.try_with_untracked(String::is_empty) == Some(true) {
                    if let Some(p) = free.first() {
                        labid.set(p.poolid.clone());
                    }
                }
                pools.set(free);
            }
            if let Ok(list) = api.get::<Vec<GroupEntry>>("access/groups").await {
                groups.set(list);
            }
        });
    });

    let roster = Memo::new(move |_| csv.with(|t| roster_summary(t)));
    let server_error = move |field: &'static str| server_errors.with(|e| e.get(field).cloned());
    let edited = move |field: &'static str| {
        server_errors.update(|e| {
            e.remove(field);
        });
    };
    let csv_error = Memo::new(move |_| {
        if use_group.get() {
            return None;
        }
        file_errors
            .get()
            .or_else(|| match roster.get() {
                Err(lines) if !csv.with(String::is_empty) => Some(describe(&lines)),
                _ => None,
            })
            .or_else(|| server_error("csv"))
    });
    let end_error = Memo::new(move |_| {
        match (
            format::parse_datetime_local(&start.get()),
            format::parse_datetime_local(&end.get()),
        ) {
            (None, _) => Some("Enter the start as a date and time.".to_owned()),
            (_, None) => Some("Enter the end as a date and time.".to_owned()),
            (Some(s), Some(e)) if e <= s => Some("The end must come after the start.".to_owned()),
            _ => server_error("end"),
        }
    });

    // Reads finish in any order: only the newest file counts.
    let reads = StoredValue::new(0u32);
    let on_file = move |event: leptos::ev::Event| {
        reads.update_value(|n| *n += 1);
        let this = reads.get_value();
        read_file(event, move |bytes| {
            if reads.try_get_value() != Some(this) {
                return;
            }
            edited("csv");
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    file_errors.set(None);
                    csv.set(text.to_owned());
                }
                Err(_) => {
                    let lines = parse_roster(&bytes).err().unwrap_or_default();
                    file_errors.set(Some(describe(&lines)));
                    csv.set(String::new());
                }
            }
        });
    };

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if submitting.get_untracked() {
            return;
        }
        let parsed = (|| {
            let template = template
                .get_untracked()
                .parse::<u32>()
                .map_err(|_| "Choose a template.".to_owned())?;
            let start = format::parse_datetime_local(&start.get_untracked())
                .ok_or("Enter the start as a date and time.")?;
            let end = format::parse_datetime_local(&end.get_untracked())
                .ok_or("Enter the end as a date and time.")?;
            let (group, csv) = if use_group.get_untracked() {
                (Some(group.get_untracked()), None)
            } else {
                if roster.with_untracked(Result::is_err)
                    || file_errors.with_untracked(Option::is_some)
                {
                    return Err(
                        "Correct the roster first: see the lines listed under it.".to_owned()
                    );
                }
                (None, Some(csv.get_untracked()))
            };
            let node = Some(node.get_untracked()).filter(|n| !n.is_empty());
            let comment = Some(comment.get_untracked()).filter(|c| !c.is_empty());
            Ok::<_, String>(LabCreate {
                labid: labid.get_untracked().trim().to_owned(),
                template,
                node,
                group,
                csv,
                max_vms: None,
                max_vcpus: optional(&vcpus.get_untracked(), "vCPUs")?,
                max_memory: optional(&memory.get_untracked(), "Memory")?,
                start: Some(start),
                end,
                delete_after: optional(&delete_after.get_untracked(), "Delete after")?,
                comment,
            })
        })();
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                general_error.set(Some(e));
                return;
            }
        };
        submitting.set(true);
        general_error.set(None);
        leptos::task::spawn_local(async move {
            match api.create_lab(&request).await {
                Ok(accounts) => on_created.run(accounts),
                Err(ApiError::Params { message, errors }) => {
                    general_error.set(Some(format!("{message}: see the marked fields.")));
                    server_errors.set(errors);
                    submitting.set(false);
                }
                Err(e) => {
                    general_error.set(Some(format!("Creating the lab failed: {e}")));
                    submitting.set(false);
                }
            }
        });
    };

    view! {
        <Dialog title="Create: Lab".to_owned() testid="lab-wizard" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <label for="lab-id">"Lab (its pool)"</label>
                    <div class="field">
                        <input
                            id="lab-id"
                            type="text"
                            list="lab-pools"
                            autocomplete="off"
                            data-testid="lab-wizard-id"
                            prop:value=move || labid.get()
                            on:input=move |ev| {
                                edited("labid");
                                labid.set(event_target_value(&ev));
                            }
                        />
                        <datalist id="lab-pools">
                            <For each=move || pools.get() key=|p| p.poolid.clone() let:p>
                                <option value=p.poolid.clone()>{p.comment.clone()}</option>
                            </For>
                        </datalist>
                        <span class="hint">
                            "The lab lives in the pool of this name (created if missing); each student gets a pool below it."
                        </span>
                        <LabFieldError field="labid" message=Signal::derive(move || server_error("labid"))/>
                    </div>

                    <label for="lab-template">"Template"</label>
                    <div class="field">
                        <select
                            id="lab-template"
                            data-testid="lab-wizard-template"
                            prop:value=move || template.get()
                            on:change=move |ev| {
                                edited("template");
                                template.set(event_target_value(&ev));
                            }
                        >
                            <For each=move || templates.get() key=|t| t.vmid let:t>
                                <option value=t.vmid.map(|v| v.to_string()).unwrap_or_default()>
                                    {format!(
                                        "{} ({}) on {}",
                                        t.vmid.unwrap_or_default(),
                                        t.name.clone().unwrap_or_default(),
                                        t.node
                                    )}
                                </option>
                            </For>
                        </select>
                        <Show when=move || templates.with(Vec::is_empty)>
                            <span class="hint">
                                "No template you may clone: make a stopped VM a template (VM → Template), or ask an administrator for PVETemplateUser on one."
                            </span>
                        </Show>
                        <LabFieldError field="template" message=Signal::derive(move || server_error("template"))/>
                    </div>

                    <label for="lab-node">"Node"</label>
                    <div class="field">
                        <select
                            id="lab-node"
                            data-testid="lab-wizard-node"
                            prop:value=move || node.get()
                            on:change=move |ev| {
                                edited("node");
                                node.set(event_target_value(&ev));
                            }
                        >
                            <option value="">"The template's node"</option>
                            <For each=move || online.get() key=|n| n.clone() let:n>
                                <option value=n.clone()>{n.clone()}</option>
                            </For>
                        </select>
                        <LabFieldError field="node" message=Signal::derive(move || server_error("node"))/>
                    </div>

                    <span class="form-label">"Roster"</span>
                    <div class="field">
                        <label class="checkbox">
                            <input
                                type="radio"
                                name="lab-roster"
                                data-testid="lab-wizard-roster-csv"
                                prop:checked=move || !use_group.get()
                                on:change=move |_| use_group.set(false)
                            />
                            "New accounts from a CSV (one-time passwords)"
                        </label>
                        <label class="checkbox">
                            <input
                                type="radio"
                                name="lab-roster"
                                data-testid="lab-wizard-roster-group"
                                prop:checked=move || use_group.get()
                                on:change=move |_| use_group.set(true)
                            />
                            "An existing group"
                        </label>
                        <LabFieldError field="group" message=Signal::derive(move || server_error("group"))/>
                    </div>

                    <Show
                        when=move || !use_group.get()
                        fallback=move || {
                            view! {
                                <label for="lab-group">"Group"</label>
                                <div class="field">
                                    <select
                                        id="lab-group"
                                        data-testid="lab-wizard-group"
                                        prop:value=move || group.get()
                                        on:change=move |ev| group.set(event_target_value(&ev))
                                    >
                                        <option value="">"Choose a group"</option>
                                        <For each=move || groups.get() key=|g| g.groupid.clone() let:g>
                                            <option value=g.groupid.clone()>
                                                {format!("{} ({})", g.groupid, g.users)}
                                            </option>
                                        </For>
                                    </select>
                                </div>
                            }
                        }
                    >
                        <label for="lab-csv">"Students (CSV)"</label>
                        <div class="field">
                            <input
                                type="file"
                                accept=".csv,text/csv,text/plain"
                                data-testid="lab-wizard-file"
                                on:change=on_file
                            />
                            <textarea
                                id="lab-csv"
                                rows="6"
                                placeholder=EXAMPLE
                                data-testid="lab-wizard-csv"
                                prop:value=move || csv.get()
                                on:input=move |ev| {
                                    edited("csv");
                                    file_errors.set(None);
                                    csv.set(event_target_value(&ev));
                                }
                            ></textarea>
                            <span class="hint" data-testid="lab-wizard-csv-preview">
                                {move || match roster.get() {
                                    Ok(ids) => format!("{} student(s): {}", ids.len(), ids.join(", ")),
                                    Err(_) => "Columns: username, email, firstname, lastname (username or email needed).".to_owned(),
                                }}
                            </span>
                            {move || {
                                csv_error
                                    .get()
                                    .map(|text| {
                                        view! {
                                            <ul class="field-error roster-errors" role="alert" data-testid="lab-error-csv">
                                                {text
                                                    .lines()
                                                    .map(|l| view! { <li>{l.to_owned()}</li> })
                                                    .collect_view()}
                                            </ul>
                                        }
                                    })
                            }}
                        </div>
                    </Show>

                    <label for="lab-vcpus">"vCPUs per student"</label>
                    <div class="field">
                        <input
                            id="lab-vcpus"
                            type="number"
                            min="0"
                            data-testid="lab-wizard-vcpus"
                            prop:value=move || vcpus.get()
                            on:input=move |ev| {
                                edited("max-vcpus");
                                vcpus.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">"Running vCPUs each student's pool may use (empty or 0: no limit)."</span>
                        <LabFieldError field="max-vcpus" message=Signal::derive(move || server_error("max-vcpus"))/>
                    </div>

                    <label for="lab-memory">"Memory per student (MiB)"</label>
                    <div class="field">
                        <input
                            id="lab-memory"
                            type="number"
                            min="0"
                            data-testid="lab-wizard-memory"
                            prop:value=move || memory.get()
                            on:input=move |ev| {
                                edited("max-memory");
                                memory.set(event_target_value(&ev));
                            }
                        />
                        <LabFieldError field="max-memory" message=Signal::derive(move || server_error("max-memory"))/>
                    </div>

                    <label for="lab-start">"Start"</label>
                    <div class="field">
                        <input
                            id="lab-start"
                            type="datetime-local"
                            data-testid="lab-wizard-start"
                            prop:value=move || start.get()
                            on:input=move |ev| start.set(event_target_value(&ev))
                        />
                    </div>

                    <label for="lab-end">"End"</label>
                    <div class="field">
                        <input
                            id="lab-end"
                            type="datetime-local"
                            data-testid="lab-wizard-end"
                            prop:value=move || end.get()
                            on:input=move |ev| {
                                edited("end");
                                end.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">"The students' VMs are stopped at the end."</span>
                        <LabFieldError field="end" message=end_error/>
                    </div>

                    <label for="lab-delete-after">"Remove after (days)"</label>
                    <div class="field">
                        <input
                            id="lab-delete-after"
                            type="number"
                            min="0"
                            data-testid="lab-wizard-delete-after"
                            prop:value=move || delete_after.get()
                            on:input=move |ev| {
                                edited("delete-after");
                                delete_after.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">"Tear the lab down this many days after its end (empty: keep it)."</span>
                        <LabFieldError field="delete-after" message=Signal::derive(move || server_error("delete-after"))/>
                    </div>

                    <label for="lab-comment">"Comment"</label>
                    <input
                        id="lab-comment"
                        type="text"
                        data-testid="lab-wizard-comment"
                        prop:value=move || comment.get()
                        on:input=move |ev| comment.set(event_target_value(&ev))
                    />
                </div>
                {move || {
                    general_error
                        .get()
                        .map(|e| view! { <div class="notice error" role="alert" data-testid="lab-wizard-error">{e}</div> })
                }}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="lab-wizard-submit"
                        disabled=move || submitting.get()
                    >
                        {move || if submitting.get() { "Creating…" } else { "Create" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roster_preview_lists_students_or_lines() {
        assert_eq!(
            roster_summary("username\nada\nbob\n"),
            Ok(vec!["ada@kiln".to_owned(), "bob@kiln".to_owned()])
        );
        let err = roster_summary("username\nada\nada\n").unwrap_err();
        assert_eq!(err[0].line, 3);
        assert_eq!(optional::<u32>(" 4 ", "vCPUs"), Ok(Some(4)));
        assert_eq!(optional::<u32>("", "vCPUs"), Ok(None));
        assert!(optional::<u32>("x", "vCPUs").is_err());
    }
}
