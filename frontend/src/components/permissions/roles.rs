//! Add or edit a custom role: its privileges, chosen from every privilege there is. Built-in
//! roles are read-only (the server refuses changes to them too).

use kiln_api_types::access::{RoleCreate, RoleEntry, RoleUpdate};
use leptos::prelude::*;

use super::data::PermissionsData;
use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{check_name, split_refusal, FieldError, FieldErrors, TextField};

/// The dialog: a new role when `existing` is `None`.
#[component]
pub fn RoleDialog(
    /// The custom role to edit.
    existing: Option<RoleEntry>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let is_new = existing.is_none();
    let start = existing.clone().unwrap_or_default();
    let title = match &existing {
        Some(r) => format!("Edit role {}", r.roleid),
        None => "Add: role".to_owned(),
    };
    let roleid = RwSignal::new(start.roleid.clone());
    let chosen = RwSignal::new(
        start
            .privs
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let id = roleid.get_untracked().trim().to_owned();
        if let (true, Err(problem)) = (is_new, check_name(&id)) {
            general.set(Some(format!("Check the role ID: {problem}")));
            return;
        }
        let privs = Some(chosen.get_untracked().join(","));
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            let result = if is_new {
                let request = RoleCreate { roleid: id, privs };
                api.post_json::<serde_json::Value, _>("access/roles", &request)
                    .await
            } else {
                let request = RoleUpdate {
                    privs,
                    append: None,
                };
                api.put_json::<serde_json::Value, _>(
                    &format!("access/roles/{}", segment(&id)),
                    &request,
                )
                .await
            };
            match result {
                Ok(_) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) = split_refusal(e, &["roleid", "privs"], "Saving the role");
                    errors.set(fields);
                    general.set(line);
                }
            }
            sending.set(false);
        });
    };
    let boxes = move || {
        data.all_privileges()
            .into_iter()
            .map(|p| {
                let checked = chosen.with_untracked(|c| c.contains(&p));
                let name = p.clone();
                view! {
                    <label class="checkbox">
                        <input
                            type="checkbox"
                            data-testid="role-priv"
                            data-priv=p.clone()
                            prop:checked=checked
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                let name = name.clone();
                                chosen.update(|c| {
                                    c.retain(|x| *x != name);
                                    if on {
                                        c.push(name);
                                    }
                                });
                            }
                        />
                        {p.clone()}
                    </label>
                }
            })
            .collect_view()
    };
    view! {
        <Dialog title=title testid="role-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <TextField label="Role ID" name="roleid" testid="role-id" value=roleid errors check=check_name placeholder="LabHelper" disabled=!is_new/>
                    <span class="form-label">"Privileges"</span>
                    <div class="field">
                        <div class="choices privileges" role="group" aria-label="Privileges">{boxes}</div>
                        <FieldError testid="role-privs-error".to_owned() message=Signal::derive(move || errors.with(|e| e.get("privs").cloned()))/>
                    </div>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="role-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="button primary" data-testid="role-save" disabled=move || sending.get()>
                        {if is_new { "Add" } else { "Save" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
