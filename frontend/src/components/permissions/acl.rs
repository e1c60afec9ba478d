//! Grant a role on a path to a user, a group or an API token (with or without propagation).

use kiln_api_types::access::AclUpdate;
use leptos::prelude::*;

use super::data::PermissionsData;
use crate::api::Api;
use crate::components::dialog::Dialog;
use crate::components::form::{check_acl_path, split_refusal, FieldError, FieldErrors, TextField};

/// Fields the dialog shows.
const FIELDS: [&str; 6] = ["path", "roles", "users", "groups", "tokens", "propagate"];

/// The parameter that names who gets the role, for an entry type.
pub fn who_param(kind: &str) -> &'static str {
    match kind {
        "group" => "groups",
        "token" => "tokens",
        _ => "users",
    }
}

/// The dialog.
#[component]
pub fn AclDialog(
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let path = RwSignal::new("/".to_owned());
    let kind = RwSignal::new("user".to_owned());
    let who = RwSignal::new(String::new());
    let role = RwSignal::new(String::new());
    let propagate = RwSignal::new(true);
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    // Who can be chosen for the entry type.
    let candidates = Memo::new(move |_| match kind.get().as_str() {
        "group" => data
            .groups
            .with(|g| g.iter().map(|g| g.groupid.clone()).collect()),
        "token" => data.users.with(|u| {
            u.iter()
                .flat_map(|u| {
                    u.tokens
                        .iter()
                        .map(move |t| format!("{}!{}", u.userid, t.tokenid))
                })
                .collect()
        }),
        _ => data
            .users
            .with(|u| u.iter().map(|u| u.userid.clone()).collect::<Vec<_>>()),
    });
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let local = [
            check_acl_path(&path.get_untracked()).err(),
            who.get_untracked()
                .is_empty()
                .then(|| "Choose who gets the role.".to_owned()),
            role.get_untracked()
                .is_empty()
                .then(|| "Choose a role.".to_owned()),
        ];
        if let Some(problem) = local.into_iter().flatten().next() {
            general.set(Some(problem));
            return;
        }
        let mut request = AclUpdate {
            path: path.get_untracked().trim().to_owned(),
            roles: role.get_untracked(),
            propagate: Some(u8::from(propagate.get_untracked())),
            ..Default::default()
        };
        let whom = Some(who.get_untracked());
        match who_param(&kind.get_untracked()) {
            "groups" => request.groups = whom,
            "tokens" => request.tokens = whom,
            _ => request.users = whom,
        }
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            match api
                .put_json::<serde_json::Value, _>("access/acl", &request)
                .await
            {
                Ok(_) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) = split_refusal(e, &FIELDS, "Granting the role");
                    errors.set(fields);
                    general.set(line);
                }
            }
            sending.set(false);
        });
    };
    let who_error = Signal::derive(move || {
        let param = who_param(&kind.get());
        errors.with(|e| e.get(param).cloned())
    });
    view! {
        <Dialog title="Add: permission".to_owned() testid="acl-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <TextField label="Path" name="path" testid="acl-path" value=path errors check=check_acl_path placeholder="/vms/100"/>
                    <label for="acl-type">"For a"</label>
                    <select
                        id="acl-type"
                        data-testid="acl-type"
                        on:change=move |ev| {
                            kind.set(event_target_value(&ev));
                            who.set(String::new());
                        }
                    >
                        <option value="user" selected>"user"</option>
                        <option value="group">"group"</option>
                        <option value="token">"API token"</option>
                    </select>
                    <label for="acl-who">"Who"</label>
                    <div class="field">
                        <select id="acl-who" data-testid="acl-who" prop:value=move || who.get() on:change=move |ev| who.set(event_target_value(&ev))>
                            <option value="">"— choose —"</option>
                            {move || candidates.get().into_iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                        </select>
                        <FieldError testid="acl-who-error".to_owned() message=who_error/>
                    </div>
                    <label for="acl-role">"Role"</label>
                    <div class="field">
                        <select id="acl-role" data-testid="acl-role" prop:value=move || role.get() on:change=move |ev| role.set(event_target_value(&ev))>
                            <option value="">"— choose —"</option>
                            {move || data.roles.get().into_iter().map(|r| view! { <option value=r.roleid.clone()>{r.roleid.clone()}</option> }).collect_view()}
                        </select>
                        <FieldError testid="acl-role-error".to_owned() message=Signal::derive(move || errors.with(|e| e.get("roles").cloned()))/>
                    </div>
                    <span class="form-label">"Propagate"</span>
                    <label class="checkbox">
                        <input type="checkbox" data-testid="acl-propagate" bind:checked=propagate/>
                        "Also below the path"
                    </label>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="acl-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="button primary" data-testid="acl-save" disabled=move || sending.get()>"Add"</button>
                </div>
            </form>
        </Dialog>
    }
}
