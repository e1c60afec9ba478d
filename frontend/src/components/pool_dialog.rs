//! Add or edit a pool (comment and quotas: most VMs, most vCPUs and memory of its running VMs),
//! or remove one after confirmation.

use kiln_api_types::access::{PoolCreate, PoolEntry, PoolUpdate};
use leptos::prelude::*;

use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{
    check_name, parse_optional_number, split_refusal, FieldErrors, TextField,
};

/// Fields the dialog shows.
const FIELDS: [&str; 5] = ["poolid", "comment", "max-vms", "max-vcpus", "max-memory"];

fn check_count(s: &str) -> Result<(), String> {
    parse_optional_number(s, 1, 1_000_000).map(|_| ())
}

fn check_memory(s: &str) -> Result<(), String> {
    parse_optional_number(s, 16, 1 << 30).map(|_| ())
}

/// A limit as the API takes it: empty (no limit) is 0.
fn limit(text: &str) -> u64 {
    parse_optional_number(text, 0, u64::MAX)
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn shown(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// What the pool dialog does.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEditing {
    /// A new pool.
    New,
    /// Change a pool's comment and quotas.
    Edit(PoolEntry),
    /// Remove a pool.
    Remove(String),
}

/// The dialog; `on_done` runs after a change (to reload the pools).
#[component]
pub fn PoolDialog(
    /// What to do.
    what: PoolEditing,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
    /// Called after the change.
    #[prop(into)]
    on_done: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let finish = move |result: Result<serde_json::Value, crate::api::ApiError>, what: &str| {
        match result {
            Ok(_) => {
                on_done.run(());
                on_close.run(());
            }
            Err(e) => {
                let (fields, line) = split_refusal(e, &FIELDS, what);
                errors.set(fields);
                general.set(line);
            }
        }
        sending.set(false);
    };
    if let PoolEditing::Remove(poolid) = what {
        let id = poolid.clone();
        let confirm = move |_| {
            let id = id.clone();
            sending.set(true);
            leptos::task::spawn_local(async move {
                let result = api.delete(&format!("pools/{}", segment(&id))).await;
                finish(result, "Removing the pool");
            });
        };
        return view! {
            <Dialog title=format!("Remove pool {poolid}") testid="pool-remove-dialog" on_close>
                <p>{format!("Pool {poolid} and its ACL entries are removed; a pool with VMs cannot be removed.")}</p>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="pool-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="button" class="button danger" data-testid="pool-remove-confirm" disabled=move || sending.get() on:click=confirm>
                        "Remove"
                    </button>
                </div>
            </Dialog>
        }
        .into_any();
    }
    let existing = match &what {
        PoolEditing::Edit(p) => Some(p.clone()),
        _ => None,
    };
    let is_new = existing.is_none();
    let start = existing.clone().unwrap_or_default();
    let title = match &existing {
        Some(p) => format!("Edit pool {}", p.poolid),
        None => "Add: pool".to_owned(),
    };
    let poolid = RwSignal::new(start.poolid.clone());
    let comment = RwSignal::new(start.comment.clone());
    let max_vms = RwSignal::new(shown(start.quota.max_vms.map(u64::from)));
    let max_vcpus = RwSignal::new(shown(start.quota.max_vcpus.map(u64::from)));
    let max_memory = RwSignal::new(shown(start.quota.max_memory));
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let id = poolid.get_untracked().trim().to_owned();
        let local = [
            is_new.then(|| check_name(&id).err()).flatten(),
            check_count(&max_vms.get_untracked()).err(),
            check_count(&max_vcpus.get_untracked()).err(),
            check_memory(&max_memory.get_untracked()).err(),
        ];
        if let Some(problem) = local.into_iter().flatten().next() {
            general.set(Some(format!("Check the form: {problem}")));
            return;
        }
        let (vms, vcpus, memory) = (
            u32::try_from(limit(&max_vms.get_untracked())).unwrap_or(u32::MAX),
            u32::try_from(limit(&max_vcpus.get_untracked())).unwrap_or(u32::MAX),
            limit(&max_memory.get_untracked()),
        );
        let text = Some(comment.get_untracked());
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            if is_new {
                let request = PoolCreate {
                    poolid: id,
                    comment: text,
                    max_vms: Some(vms),
                    max_vcpus: Some(vcpus),
                    max_memory: Some(memory),
                };
                finish(api.post_json("pools", &request).await, "Creating the pool");
            } else {
                let request = PoolUpdate {
                    comment: text,
                    max_vms: Some(vms),
                    max_vcpus: Some(vcpus),
                    max_memory: Some(memory),
                    ..Default::default()
                };
                let path = format!("pools/{}", segment(&id));
                finish(api.put_json(&path, &request).await, "Saving the pool");
            }
        });
    };
    view! {
        <Dialog title=title testid="pool-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <TextField label="Pool ID" name="poolid" testid="pool-id" value=poolid errors check=check_name placeholder="lab1" disabled=!is_new/>
                    <TextField label="Comment" name="comment" testid="pool-comment" value=comment errors/>
                    <TextField label="Most VMs" name="max-vms" testid="pool-max-vms" value=max_vms errors check=check_count kind="number" placeholder="no limit"/>
                    <TextField label="Most running vCPUs" name="max-vcpus" testid="pool-max-vcpus" value=max_vcpus errors check=check_count kind="number" placeholder="no limit"/>
                    <TextField label="Most running memory (MiB)" name="max-memory" testid="pool-max-memory" value=max_memory errors check=check_memory kind="number" placeholder="no limit"/>
                </div>
                <p class="hint">"Empty: no limit. Quotas count the pool's VMs, and the vCPUs and memory of its running VMs."</p>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="pool-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="button primary" data-testid="pool-save" disabled=move || sending.get()>
                        {if is_new { "Add" } else { "Save" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_limits_are_none_and_sent_as_zero() {
        assert_eq!(limit(""), 0);
        assert_eq!(limit(" 4 "), 4);
        assert!(check_count("0").is_err());
        assert!(check_count("").is_ok());
        assert!(check_memory("8").is_err());
        assert!(check_memory("1024").is_ok());
        assert_eq!(shown(None), "");
        assert_eq!(shown(Some(2)), "2");
    }
}
