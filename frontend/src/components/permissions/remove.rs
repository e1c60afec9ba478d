//! Confirmation before a user, group, role, ACL entry or API token is removed.

use kiln_api_types::access::{AclEntryWire, AclUpdate};
use leptos::prelude::*;

use super::data::PermissionsData;
use crate::api::{segment, Api, ApiError};
use crate::components::dialog::RemoveConfirm;

/// What to remove.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal {
    /// A user, with its tokens and ACL entries.
    User(String),
    /// A group (its members stay).
    Group(String),
    /// A custom role.
    Role(String),
    /// One ACL entry.
    Acl(AclEntryWire),
    /// An API token of a user: (user, token name).
    Token(String, String),
}

impl Removal {
    fn title(&self) -> String {
        match self {
            Removal::User(u) => format!("Remove user {u}"),
            Removal::Group(g) => format!("Remove group {g}"),
            Removal::Role(r) => format!("Remove role {r}"),
            Removal::Acl(e) => format!("Remove {} from {}", e.roleid, e.path),
            Removal::Token(u, t) => format!("Revoke token {u}!{t}"),
        }
    }

    fn explanation(&self) -> String {
        match self {
            Removal::User(u) => format!(
                "{u} can no longer log in; its sessions end, and its API tokens and ACL entries are removed."
            ),
            Removal::Group(g) => format!(
                "Group {g} and its ACL entries are removed; its members lose what the group gave them."
            ),
            Removal::Role(r) => format!("Role {r} and the ACL entries that grant it are removed."),
            Removal::Acl(e) => format!(
                "{} {} no longer holds {} on {}{}.",
                e.kind,
                e.ugid,
                e.roleid,
                e.path,
                if e.propagate == 1 { " and below" } else { "" }
            ),
            Removal::Token(u, t) => {
                format!("{u}!{t} stops working at once; programs using it are refused.")
            }
        }
    }

    async fn run(&self, api: Api) -> Result<(), ApiError> {
        match self {
            Removal::User(u) => {
                api.delete::<serde_json::Value>(&format!("access/users/{}", segment(u)))
                    .await?;
            }
            Removal::Group(g) => {
                api.delete::<serde_json::Value>(&format!("access/groups/{}", segment(g)))
                    .await?;
            }
            Removal::Role(r) => {
                api.delete::<serde_json::Value>(&format!("access/roles/{}", segment(r)))
                    .await?;
            }
            Removal::Acl(e) => {
                let mut request = AclUpdate {
                    path: e.path.clone(),
                    roles: e.roleid.clone(),
                    delete: Some(1),
                    ..Default::default()
                };
                match e.kind.as_str() {
                    "group" => request.groups = Some(e.ugid.clone()),
                    "token" => request.tokens = Some(e.ugid.clone()),
                    _ => request.users = Some(e.ugid.clone()),
                }
                api.put_json::<serde_json::Value, _>("access/acl", &request)
                    .await?;
            }
            Removal::Token(u, t) => {
                api.delete::<serde_json::Value>(&format!(
                    "access/users/{}/token/{}",
                    segment(u),
                    segment(t)
                ))
                .await?;
            }
        }
        Ok(())
    }
}

/// The dialog; removes on confirmation, reloads the lists and closes.
#[component]
pub fn RemoveDialog(
    /// What to remove.
    what: Removal,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let (title, explanation) = (what.title(), what.explanation());
    let remove = move || {
        let what = what.clone();
        async move { what.run(api).await.map_err(|e| e.to_string()) }
    };
    view! {
        <RemoveConfirm
            title
            explanation
            testid="perm-remove-dialog"
            prefix="perm-remove"
            remove
            on_done=move |()| data.reload()
            on_close
        />
    }
}
