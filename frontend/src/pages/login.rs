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

/// Which second factor the user answers the `NeedTFA` challenge with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// The six-digit code of the authenticator app.
    Totp,
    /// One of the single-use recovery keys.
    Recovery,
}

/// The `password` of the second login step, as Proxmox sends it: `totp:<code>` or
/// `recovery:<key>`.
pub fn second_factor_answer(kind: SecondFactor, value: &str) -> String {
    let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    match kind {
        SecondFactor::Totp => format!("totp:{value}"),
        SecondFactor::Recovery => format!("recovery:{value}"),
    }
}

/// The login form: the password step, then (for a user with a second factor) the code step.
#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = Auth::expect();
    let hydrated = use_hydrated();
    let username = RwSignal::new(format!("root@{REALM}"));
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    // The `!tfa!` ticket of a `NeedTFA` answer: the password was right, a code is due.
    let challenge = RwSignal::new(None::<String>);
    let factor = RwSignal::new(SecondFactor::Totp);
    let code = RwSignal::new(String::new());

    let password_request = move || TicketRequest {
        username: user_id(&username.get_untracked()),
        password: password.get_untracked(),
        tfa_challenge: None,
    };
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if pending.get_untracked() {
            return;
        }
        let request = password_request();
        pending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::login(&request).await {
                Ok(ticket) if ticket.need_tfa == Some(1) => {
                    code.set(String::new());
                    challenge.set(Some(ticket.ticket));
                }
                Ok(ticket) => auth.logged_in(&ticket),
                Err(e) => error.set(Some(e.to_string())),
            }
            pending.set(false);
        });
    };
    let submit_code = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let Some(ticket) = challenge.get_untracked() else {
            return;
        };
        if pending.get_untracked() {
            return;
        }
        let request = TicketRequest {
            username: user_id(&username.get_untracked()),
            password: second_factor_answer(factor.get_untracked(), &code.get_untracked()),
            tfa_challenge: Some(ticket),
        };
        pending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::login(&request).await {
                Ok(ticket) => auth.logged_in(&ticket),
                Err(e) => {
                    error.set(Some(e.to_string()));
                    code.set(String::new());
                    // The server uses a challenge up on any answer: ask for a fresh one with
                    // the password the user already gave, so they can simply try again.
                    match api::login(&password_request()).await {
                        Ok(fresh) if fresh.need_tfa == Some(1) => challenge.set(Some(fresh.ticket)),
                        Ok(fresh) => auth.logged_in(&fresh),
                        Err(_) => challenge.set(None),
                    }
                }
            }
            pending.set(false);
        });
    };
    let back = move |_| {
        challenge.set(None);
        error.set(None);
        password.set(String::new());
    };
    let error_view = move || {
        error.get().map(|message| {
            view! {
                <div class="error" role="alert" data-testid="login-error">
                    {message}
                </div>
            }
        })
    };

    view! {
        <main class="login-page">
            <Show
                when=move || challenge.with(Option::is_some)
                fallback=move || {
                    view! {
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
                            {error_view}
                            <button
                                type="submit"
                                class="button primary"
                                data-testid="login-submit"
                                disabled=move || !hydrated.get() || pending.get()
                            >
                                {move || if pending.get() { "Logging in…" } else { "Login" }}
                            </button>
                        </form>
                    }
                }
            >
                <form
                    class="login-box"
                    method="post"
                    aria-labelledby="tfa-title"
                    data-testid="tfa-form"
                    on:submit=submit_code
                >
                    <h1 id="tfa-title" class="login-title">
                        <img src="/favicon.svg" alt="" width="32" height="32"/>
                        "Second factor"
                    </h1>
                    <p>
                        {move || match factor.get() {
                            SecondFactor::Totp => "Enter the code your authenticator app shows for Kiln.",
                            SecondFactor::Recovery => "Enter one of your recovery keys (each works once).",
                        }}
                    </p>
                    <label for="tfa-code">
                        {move || match factor.get() {
                            SecondFactor::Totp => "Code",
                            SecondFactor::Recovery => "Recovery key",
                        }}
                    </label>
                    <input
                        id="tfa-code"
                        name="code"
                        type="text"
                        autocomplete="one-time-code"
                        inputmode=move || match factor.get() {
                            SecondFactor::Totp => "numeric",
                            SecondFactor::Recovery => "text",
                        }
                        required
                        data-testid="tfa-code"
                        bind:value=code
                    />
                    {error_view}
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="tfa-submit"
                        disabled=move || pending.get()
                    >
                        {move || if pending.get() { "Checking…" } else { "Login" }}
                    </button>
                    <button
                        type="button"
                        class="button link"
                        data-testid="tfa-switch"
                        on:click=move |_| {
                            factor.update(|f| {
                                *f = match f {
                                    SecondFactor::Totp => SecondFactor::Recovery,
                                    SecondFactor::Recovery => SecondFactor::Totp,
                                }
                            });
                            code.set(String::new());
                        }
                    >
                        {move || match factor.get() {
                            SecondFactor::Totp => "Use a recovery key instead",
                            SecondFactor::Recovery => "Use the authenticator code instead",
                        }}
                    </button>
                    <button type="button" class="button link" data-testid="tfa-back" on:click=back>
                        "Back to the password"
                    </button>
                </form>
            </Show>
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

    #[test]
    fn second_factor_answers_are_prefixed_as_proxmox_sends_them() {
        assert_eq!(
            second_factor_answer(SecondFactor::Totp, " 123 456 "),
            "totp:123456"
        );
        assert_eq!(
            second_factor_answer(SecondFactor::Recovery, "ab12-cd34-ef56"),
            "recovery:ab12-cd34-ef56"
        );
    }
}
