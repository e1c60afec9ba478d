//! The login page: user name, password, realm, and the server's message on failure.

use kiln_api_types::TicketRequest;
use leptos::prelude::*;

use crate::api;
use crate::pages::use_hydrated;
use crate::session::Auth;

/// The only realm Kiln has, as Proxmox names realms.
const REALM: &str = "kiln";

/// Adds the realm to a user name typed without one (`root` → `root@kiln`).
pub fn user_id(name: &str) -> String {
    let name = name.trim();
    if name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}@{REALM}")
    }
}

/// The login form.
#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = Auth::expect();
    let hydrated = use_hydrated();
    let username = RwSignal::new(format!("root@{REALM}"));
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if pending.get_untracked() {
            return;
        }
        let request = TicketRequest {
            username: user_id(&username.get_untracked()),
            password: password.get_untracked(),
        };
        pending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::login(&request).await {
                Ok(ticket) => auth.logged_in(&ticket),
                Err(e) => {
                    error.set(Some(e.to_string()));
                    pending.set(false);
                }
            }
        });
    };

    view! {
        <main class="login-page">
            <form
                class="login-box"
                method="post"
                aria-labelledby="login-title"
                data-testid="login-form"
                data-ready=move || hydrated.get().to_string()
                on:submit=submit
            >
                <h1 id="login-title" class="login-title">
                    <img src="/favicon.svg" alt="" width="32" height="32"/>
                    "Kiln Login"
                </h1>
                {move || auth.ended_reason().map(|reason| view! { <p class="notice" role="status">{reason}</p> })}
                <label for="login-username">"User name"</label>
                <input
                    id="login-username"
                    name="username"
                    type="text"
                    autocomplete="username"
                    required
                    data-testid="login-username"
                    bind:value=username
                />
                <label for="login-password">"Password"</label>
                <input
                    id="login-password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    data-testid="login-password"
                    bind:value=password
                />
                <label for="login-realm">"Realm"</label>
                <select id="login-realm" name="realm" data-testid="login-realm">
                    <option value=REALM selected>"Kiln authentication server"</option>
                </select>
                {move || {
                    error
                        .get()
                        .map(|message| {
                            view! {
                                <div class="error" role="alert" data-testid="login-error">
                                    {message}
                                </div>
                            }
                        })
                }}
                <button
                    type="submit"
                    class="button primary"
                    data-testid="login-submit"
                    disabled=move || !hydrated.get() || pending.get()
                >
                    {move || if pending.get() { "Logging in…" } else { "Login" }}
                </button>
            </form>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_is_added_only_when_missing() {
        assert_eq!(user_id(" root "), "root@kiln");
        assert_eq!(user_id("alice@kiln"), "alice@kiln");
    }
}
