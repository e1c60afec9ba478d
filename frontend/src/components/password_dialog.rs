//! "Password" in the top bar: change one's own password, confirmed with the current one, as
//! Proxmox asks. The form alone also serves the first login with a one-time password.

use kiln_api_types::access::PasswordChange;
use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::components::dialog::Dialog;

/// Shortest password the server accepts.
const MIN_PASSWORD: usize = 8;

/// What is wrong with a new password and its repetition, if anything.
pub fn check_new_password(password: &str, repeated: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD {
        Some(format!("Use at least {MIN_PASSWORD} characters."))
    } else if password != repeated {
        Some("The two new passwords differ.".into())
    } else {
        None
    }
}

/// The form: current password, the new one twice. `on_done` runs once the server took it.
#[component]
pub fn PasswordForm(
    /// The logged-in user.
    userid: String,
    /// Called after the password was changed.
    #[prop(into)]
    on_done: Callback<()>,
    /// Called by "Cancel" (no such button without it).
    #[prop(optional, into)]
    on_cancel: Option<Callback<()>>,
) -> impl IntoView {
    let api = Api::expect();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeated = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let problem = Memo::new(move |_| {
        let (n, r) = (new.get(), repeated.get());
        (!n.is_empty())
            .then(|| check_new_password(&n, &r))
            .flatten()
    });
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if let Some(p) = check_new_password(&new.get_untracked(), &repeated.get_untracked()) {
            error.set(Some(p));
            return;
        }
        let request = PasswordChange {
            userid: userid.clone(),
            password: new.get_untracked(),
            confirmation_password: current.get_untracked(),
        };
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api
                .put_json::<serde_json::Value, _>("access/password", &request)
                .await
            {
                Ok(_) => on_done.run(()),
                Err(e @ ApiError::Params { .. }) => {
                    let text = e
                        .param("confirmation-password")
                        .or(e.param("password"))
                        .map(str::to_owned)
                        .unwrap_or_else(|| e.to_string());
                    error.set(Some(text));
                }
                Err(e) => error.set(Some(format!("Changing the password failed: {e}"))),
            }
            sending.set(false);
        });
    };
    view! {
        <form class="wizard" data-testid="password-form" on:submit=submit novalidate>
            <div class="form-grid">
                <label for="pw-current">"Current password"</label>
                <input id="pw-current" type="password" autocomplete="current-password" data-testid="password-current" bind:value=current/>
                <label for="pw-new">"New password"</label>
                <input id="pw-new" type="password" autocomplete="new-password" data-testid="password-new" bind:value=new/>
                <label for="pw-repeat">"Repeat it"</label>
                <div class="field">
                    <input id="pw-repeat" type="password" autocomplete="new-password" data-testid="password-repeat" bind:value=repeated/>
                    {move || problem.get().map(|p| view! { <span class="field-error">{p}</span> })}
                </div>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="password-error">{e}</div> })}
            <div class="dialog-buttons">
                {on_cancel.map(|cancel| view! {
                    <button type="button" class="button" on:click=move |_| cancel.run(())>
                        "Cancel"
                    </button>
                })}
                <button type="submit" class="button primary" data-testid="password-submit" disabled=move || sending.get()>
                    "Change"
                </button>
            </div>
        </form>
    }
}

/// The dialog.
#[component]
pub fn PasswordDialog(
    /// The logged-in user.
    userid: String,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let done = RwSignal::new(false);
    view! {
        <Dialog title="Change password".to_owned() testid="password-dialog" on_close>
            <Show
                when=move || !done.get()
                fallback=move || {
                    view! {
                        <p role="status" data-testid="password-changed">"Your password is changed."</p>
                        <div class="dialog-buttons">
                            <button type="button" class="button primary" on:click=move |_| on_close.run(())>
                                "Done"
                            </button>
                        </div>
                    }
                }
            >
                <PasswordForm userid=userid.clone() on_done=move |()| done.set(true) on_cancel=on_close/>
            </Show>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_must_be_long_enough_and_repeated() {
        assert!(check_new_password("short", "short").is_some());
        assert!(check_new_password("long-enough", "long-enougH").is_some());
        assert_eq!(check_new_password("long-enough", "long-enough"), None);
    }
}
