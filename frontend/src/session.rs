//! Who is logged in: the session as the server saw it when the page was requested, updated by
//! the login and logout the user does in this page.
//!
//! The server function [`current_session`] is read through a [`Resource`], so the server-side
//! render and the hydrated page agree on "logged in or not"; [`Auth`] then layers the browser's
//! own login/logout on top without another round trip.

use kiln_api_types::{SessionInfo, SetupStep, Ticket};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;

/// Returns the session the server attached to this request (anonymous when not logged in).
#[server(endpoint = "session", input = GetUrl)]
pub async fn current_session() -> Result<SessionInfo, ServerFnError> {
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| ServerFnError::new("the request context is missing"))?;
    parts
        .extensions
        .get::<SessionInfo>()
        .cloned()
        .ok_or_else(|| {
            ServerFnError::new("the server attached no session information to the request")
        })
}

/// A logged-in user as the UI needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    /// User id with realm, e.g. `root@kiln`.
    pub username: String,
    /// Sent as header `CSRFPreventionToken` on every state-changing request.
    pub csrf_token: String,
    /// A step the user must take before the console opens (the server refuses everything
    /// else until then).
    pub setup: Option<SetupStep>,
}

impl From<&Ticket> for UserSession {
    fn from(ticket: &Ticket) -> Self {
        UserSession {
            username: ticket.username.clone(),
            csrf_token: ticket.csrf_prevention_token.clone(),
            setup: ticket.setup,
        }
    }
}

impl UserSession {
    /// The logged-in user the server reported, if any.
    fn from_info(info: SessionInfo) -> Option<Self> {
        info.username.map(|username| UserSession {
            username,
            csrf_token: info.csrf_token,
            setup: info.setup,
        })
    }
}

/// The session as the server reported it on page load.
pub type SessionResource = Resource<Result<SessionInfo, ServerFnError>>;

/// The authentication state of the page, shared through context (see [`Auth::provide`]).
///
/// Read it only below a `<Suspense>` that awaited [`Auth::loaded`], so the server render and
/// the hydration see the same value.
#[derive(Clone, Copy)]
pub struct Auth {
    initial: SessionResource,
    /// Set by login and logout in this page; wins over `initial` once set.
    changed: RwSignal<Option<Option<UserSession>>>,
    /// Why the user was sent back to the login page, if it was not their own logout.
    ended_reason: RwSignal<Option<String>>,
}

impl Auth {
    /// Creates the state, starts loading the session and provides it as context.
    pub fn provide() -> Self {
        let auth = Auth {
            initial: Resource::new(|| (), |_| current_session()),
            changed: RwSignal::new(None),
            ended_reason: RwSignal::new(None),
        };
        provide_context(auth);
        auth
    }

    /// The state provided by [`Auth::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// The server's answer; await it inside a `Suspend` before rendering by session.
    pub fn loaded(&self) -> SessionResource {
        self.initial
    }

    /// The logged-in user, or `None` on the login page (reactive).
    pub fn user(&self) -> Option<UserSession> {
        if let Some(changed) = self.changed.get() {
            return changed;
        }
        UserSession::from_info(self.initial.get()?.ok()?)
    }

    /// The CSRF token of the current session, without tracking (for requests).
    pub fn csrf_token(&self) -> Option<String> {
        self.changed
            .get_untracked()
            .map(|user| user.map(|u| u.csrf_token))
            .unwrap_or_else(|| {
                self.initial
                    .get_untracked()
                    .and_then(Result::ok)
                    .filter(|info| info.username.is_some())
                    .map(|info| info.csrf_token)
            })
    }

    /// The cluster's name for the top bar (empty until the server told it).
    pub fn cluster_name(&self) -> String {
        self.initial
            .get()
            .and_then(Result::ok)
            .map(|info| info.cluster_name)
            .unwrap_or_default()
    }

    /// Why the session could not be read, if the server failed to tell.
    pub fn load_error(&self) -> Option<String> {
        match self.initial.get()? {
            Ok(_) => None,
            Err(e) => Some(format!("Could not read the session from the server: {e}")),
        }
    }

    /// Records a successful login.
    pub fn logged_in(&self, ticket: &Ticket) {
        self.ended_reason.set(None);
        self.changed.set(Some(Some(UserSession::from(ticket))));
    }

    /// Asks the server again what the session may do (after a login step was taken): the
    /// console opens once no step is left. Errors leave the state as it was.
    pub async fn refresh(&self) -> Result<(), ServerFnError> {
        let info = current_session().await?;
        self.changed.set(Some(UserSession::from_info(info)));
        Ok(())
    }

    /// Records the user's own logout.
    pub fn logged_out(&self) {
        self.ended_reason.set(None);
        self.changed.set(Some(None));
    }

    /// Records that the server no longer accepts the session (an API call answered 401).
    pub fn expired(&self) {
        if self.changed.get_untracked() == Some(None) {
            return;
        }
        self.ended_reason
            .set(Some("Your session has ended. Please log in again.".into()));
        self.changed.set(Some(None));
    }

    /// Why the user is back on the login page, when it was not their own logout (reactive).
    pub fn ended_reason(&self) -> Option<String> {
        self.ended_reason.get()
    }
}
