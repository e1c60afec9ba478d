//! Add or edit a user: id and first password (new users only), name, e-mail, groups, enabled,
//! expiry, whether a second factor is required, comment; for an existing user, optionally a
//! new password (which the user must replace at its next login).

use kiln_api_types::access::{PasswordChange, UserCreate, UserEntry, UserUpdate};
use leptos::prelude::*;

use super::data::PermissionsData;
use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{
    check_email, check_password, check_userid, split_refusal, FieldError, FieldErrors, TextField,
};
use crate::format;

/// Fields the dialog shows (the server's messages for others go to the general line).
const FIELDS: [&str; 10] = [
    "userid",
    "password",
    "firstname",
    "lastname",
    "email",
    "groups",
    "expire",
    "tfa-required",
    "comment",
    "confirmation-password",
];

/// The expiry typed into a `datetime-local` field as Unix seconds (empty = never = 0).
pub fn expiry_param(text: &str) -> Result<i64, String> {
    if text.trim().is_empty() {
        return Ok(0);
    }
    format::parse_datetime_local(text)
        .ok_or_else(|| "Pick a date and time, or leave it empty for never.".into())
}

/// The dialog: a new user when `existing` is `None`.
#[component]
pub fn UserDialog(
    /// The user to edit.
    existing: Option<UserEntry>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let is_new = existing.is_none();
    let start = existing.clone().unwrap_or_default();
    let title = match &existing {
        Some(u) => format!("Edit user {}", u.userid),
        None => "Add: user".to_owned(),
    };
    let userid = RwSignal::new(start.userid.clone());
    let password = RwSignal::new(String::new());
    let repeated = RwSignal::new(String::new());
    let firstname = RwSignal::new(start.firstname.clone());
    let lastname = RwSignal::new(start.lastname.clone());
    let email = RwSignal::new(start.email.clone());
    let comment = RwSignal::new(start.comment.clone());
    let enabled = RwSignal::new(is_new || start.enable == 1);
    let tfa_required = RwSignal::new(start.tfa_required == 1);
    let expire = RwSignal::new(if start.expire == 0 {
        String::new()
    } else {
        format::datetime_local(start.expire)
    });
    let chosen_groups = RwSignal::new(
        start
            .groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    // Editing: a new password set by the caller, confirmed with the caller's own.
    let new_password = RwSignal::new(String::new());
    let confirmation = RwSignal::new(String::new());
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let repeat_problem = Signal::derive(move || {
        let (p, r) = (password.get(), repeated.get());
        (!r.is_empty() && p != r).then(|| "The two passwords differ.".to_owned())
    });
    let expire_problem = Signal::derive(move || {
        expiry_param(&expire.get())
            .err()
            .or_else(|| errors.with(|e| e.get("expire").cloned()))
    });

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let local = [
            is_new
                .then(|| check_userid(&userid.get_untracked()).err())
                .flatten(),
            (is_new && !password.get_untracked().is_empty())
                .then(|| check_password(&password.get_untracked()).err())
                .flatten(),
            check_email(&email.get_untracked()).err(),
            (!is_new && !new_password.get_untracked().is_empty())
                .then(|| check_password(&new_password.get_untracked()).err())
                .flatten(),
            (!is_new
                && !new_password.get_untracked().is_empty()
                && confirmation.get_untracked().is_empty())
            .then(|| "Confirm the new password with your own password.".to_owned()),
            expiry_param(&expire.get_untracked()).err(),
            repeat_problem.get_untracked(),
        ];
        if let Some(problem) = local.into_iter().flatten().next() {
            general.set(Some(format!("Check the form: {problem}")));
            return;
        }
        let expire_secs = expiry_param(&expire.get_untracked()).unwrap_or(0);
        let groups = chosen_groups.get_untracked().join(",");
        let some = |s: String| Some(s.trim().to_owned());
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            let result = if is_new {
                let pw = password.get_untracked();
                let request = UserCreate {
                    userid: userid.get_untracked().trim().to_owned(),
                    password: (!pw.is_empty()).then_some(pw),
                    enable: Some(u8::from(enabled.get_untracked())),
                    expire: Some(expire_secs),
                    firstname: some(firstname.get_untracked()),
                    lastname: some(lastname.get_untracked()),
                    email: some(email.get_untracked()),
                    comment: some(comment.get_untracked()),
                    groups: Some(groups),
                    tfa_required: Some(u8::from(tfa_required.get_untracked())),
                };
                api.post_json::<serde_json::Value, _>("access/users", &request)
                    .await
            } else {
                let request = UserUpdate {
                    enable: Some(u8::from(enabled.get_untracked())),
                    expire: Some(expire_secs),
                    firstname: some(firstname.get_untracked()),
                    lastname: some(lastname.get_untracked()),
                    email: some(email.get_untracked()),
                    comment: some(comment.get_untracked()),
                    groups: Some(groups),
                    append: None,
                    tfa_required: Some(u8::from(tfa_required.get_untracked())),
                };
                let id = userid.get_untracked();
                let saved = api
                    .put_json::<serde_json::Value, _>(
                        &format!("access/users/{}", segment(&id)),
                        &request,
                    )
                    .await;
                let password = new_password.get_untracked();
                match saved {
                    Ok(_) if !password.is_empty() => {
                        let change = PasswordChange {
                            userid: id,
                            password,
                            confirmation_password: confirmation.get_untracked(),
                        };
                        api.put_json::<serde_json::Value, _>("access/password", &change)
                            .await
                    }
                    other => other,
                }
            };
            match result {
                Ok(_) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) = split_refusal(e, &FIELDS, "Saving the user");
                    errors.set(fields);
                    general.set(line);
                }
            }
            sending.set(false);
        });
    };

    let group_boxes = move || {
        data.groups
            .get()
            .into_iter()
            .map(|g| {
                let id = g.groupid.clone();
                let id_for_change = id.clone();
                let checked = chosen_groups.with_untracked(|c| c.contains(&id));
                view! {
                    <label class="checkbox">
                        <input
                            type="checkbox"
                            data-testid="user-group"
                            data-groupid=id.clone()
                            prop:checked=checked
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                let id = id_for_change.clone();
                                chosen_groups.update(|c| {
                                    c.retain(|g| *g != id);
                                    if on {
                                        c.push(id);
                                    }
                                });
                            }
                        />
                        {id.clone()}
                    </label>
                }
            })
            .collect_view()
    };

    view! {
        <Dialog title=title testid="user-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <TextField label="User name" name="userid" testid="user-id" value=userid errors check=check_userid placeholder="ada@kiln" disabled=!is_new/>
                    <Show when=move || is_new>
                        <TextField label="Password" name="password" testid="user-password" value=password errors check=check_password kind="password"/>
                        <label for="user-password-repeat">"Repeat it"</label>
                        <div class="field">
                            <input id="user-password-repeat" type="password" autocomplete="new-password" data-testid="user-password-repeat" bind:value=repeated/>
                            <FieldError testid="user-password-repeat-error".to_owned() message=repeat_problem/>
                        </div>
                    </Show>
                    <TextField label="First name" name="firstname" testid="user-firstname" value=firstname errors/>
                    <TextField label="Last name" name="lastname" testid="user-lastname" value=lastname errors/>
                    <TextField label="E-mail" name="email" testid="user-email" value=email errors check=check_email kind="email"/>
                    <span class="form-label">"Groups"</span>
                    <div class="field">
                        <div class="choices" role="group" aria-label="Groups">{group_boxes}</div>
                        <Show when=move || data.groups.with(Vec::is_empty)>
                            <span class="hint">"No groups yet."</span>
                        </Show>
                        <FieldError testid="user-groups-error".to_owned() message=Signal::derive(move || errors.with(|e| e.get("groups").cloned()))/>
                    </div>
                    <span class="form-label">"Enabled"</span>
                    <label class="checkbox">
                        <input type="checkbox" data-testid="user-enabled" bind:checked=enabled/>
                        "May log in"
                    </label>
                    <label for="user-expire">"Expires"</label>
                    <div class="field">
                        <input id="user-expire" type="datetime-local" data-testid="user-expire" bind:value=expire/>
                        <span class="hint">"Empty: never."</span>
                        <FieldError testid="user-expire-error".to_owned() message=expire_problem/>
                    </div>
                    <span class="form-label">"Second factor"</span>
                    <label class="checkbox">
                        <input type="checkbox" data-testid="user-tfa-required" bind:checked=tfa_required/>
                        "Required: the user must add an authenticator before anything else"
                    </label>
                    <TextField label="Comment" name="comment" testid="user-comment" value=comment errors/>
                    <Show when=move || !is_new>
                        <TextField label="New password" name="password" testid="user-new-password" value=new_password errors check=check_password kind="password" placeholder="unchanged"/>
                        <TextField label="Your password" name="confirmation-password" testid="user-confirmation" value=confirmation errors kind="password"/>
                        <span></span>
                        <span class="hint">"A password you set here must be replaced by the user at the next login."</span>
                    </Show>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="user-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="button primary" data-testid="user-save" disabled=move || sending.get()>
                        {if is_new { "Add" } else { "Save" }}
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
    fn an_empty_expiry_means_never() {
        assert_eq!(expiry_param(""), Ok(0));
        assert!(expiry_param("2030-01-01T10:00").unwrap() > 0);
        assert!(expiry_param("soon").is_err());
    }
}
