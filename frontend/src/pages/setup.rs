//! The page a user sees after the password step while its account still asks for something
//! first: a new password (a lab's one-time password, or one an administrator set) or a TOTP
//! second factor the account requires. The server refuses every other call until then; once
//! the step is taken the page asks the server again and the console (or the next step) opens.

use kiln_api_types::SetupStep;
use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::components::password_dialog::PasswordForm;
use crate::components::tfa::TotpEnrolment;
use crate::pages::use_hydrated;
use crate::session::{Auth, UserSession};

/// The setup page for `user` (whose `setup` is set).
#[component]
pub fn SetupPage(
    /// The logged-in user with a step to take.
    user: UserSession,
) -> impl IntoView {
    let auth = Auth::expect();
    let api = Api::new(auth);
    provide_context(api);
    let hydrated = use_hydrated();
    let error = RwSignal::new(None::<String>);
    let step_done = move |()| {
        error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(e) = auth.refresh().await {
                error.set(Some(format!(
                    "The step is done, but the server could not be asked what comes next: {e}. Reload the page."
                )));
            }
        });
    };
    let logout = move |_| {
        leptos::task::spawn_local(async move {
            match api.logout().await {
                Ok(()) | Err(ApiError::Unauthorized(_)) => auth.logged_out(),
                Err(e) => error.set(Some(format!("Logout failed: {e}"))),
            }
        });
    };
    let step = user.setup.unwrap_or(SetupStep::ChangePassword);
    let userid = user.username.clone();
    let (title, why) = match step {
        SetupStep::ChangePassword => (
            "Choose your own password",
            "Your password was given to you (a one-time password, or one an administrator set). \
             Replace it with one only you know to continue.",
        ),
        SetupStep::EnrolTfa => (
            "Add a second factor",
            "Your account requires a second factor: an authenticator app that shows a new code \
             every 30 seconds. Add one to continue; later logins ask for its code.",
        ),
    };
    let testid = match step {
        SetupStep::ChangePassword => "setup-password",
        SetupStep::EnrolTfa => "setup-tfa",
    };
    view! {
        <main class="login-page setup-page" data-testid="setup-page" data-step=testid data-ready=move || hydrated.get().to_string()>
            <section class="login-box setup-box" aria-labelledby="setup-title" data-testid=testid>
                <h1 id="setup-title" class="login-title">
                    <img src="/favicon.svg" alt="" width="32" height="32"/>
                    {title}
                </h1>
                <p class="setup-user">"Logged in as " <strong>{userid.clone()}</strong></p>
                <p>{why}</p>
                {match step {
                    SetupStep::ChangePassword => view! { <PasswordForm userid=userid.clone() on_done=step_done/> }.into_any(),
                    SetupStep::EnrolTfa => view! { <TotpEnrolment userid=userid.clone() on_done=step_done/> }.into_any(),
                }}
                {move || error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="setup-error">{e}</div> })}
                <button type="button" class="button link" data-testid="logout" disabled=move || !hydrated.get() on:click=logout>
                    "Log out"
                </button>
            </section>
        </main>
    }
}
