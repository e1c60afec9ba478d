//! The lists Datacenter → Permissions shows (what the caller may see), loaded together and
//! reloaded after every change a dialog makes.

use kiln_api_types::access::{AclEntryWire, GroupEntry, RoleEntry, UserEntry};
use leptos::prelude::*;

use crate::api::{Api, ApiError};

/// Users, groups, roles and ACL entries, shared by the view and its dialogs (context).
#[derive(Clone, Copy)]
pub struct PermissionsData {
    /// `GET /access/users`.
    pub users: RwSignal<Vec<UserEntry>>,
    /// `GET /access/groups`.
    pub groups: RwSignal<Vec<GroupEntry>>,
    /// `GET /access/roles`.
    pub roles: RwSignal<Vec<RoleEntry>>,
    /// `GET /access/acl`.
    pub acl: RwSignal<Vec<AclEntryWire>>,
    /// Why the last load failed.
    pub error: RwSignal<Option<String>>,
    api: Api,
}

impl PermissionsData {
    /// Creates the lists, provides them as context and starts loading them.
    pub fn provide(api: Api) -> Self {
        let data = PermissionsData {
            users: RwSignal::new(vec![]),
            groups: RwSignal::new(vec![]),
            roles: RwSignal::new(vec![]),
            acl: RwSignal::new(vec![]),
            error: RwSignal::new(None),
            api,
        };
        provide_context(data);
        data
    }

    /// The lists provided by [`PermissionsData::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// Loads every list again.
    pub fn reload(self) {
        leptos::task::spawn_local(async move {
            let api = self.api;
            let loaded = async {
                self.users.set(api.get("access/users").await?);
                self.groups.set(api.get("access/groups").await?);
                self.roles.set(api.get("access/roles").await?);
                self.acl.set(api.get("access/acl").await?);
                Ok::<_, ApiError>(())
            };
            match loaded.await {
                Ok(()) => self.error.set(None),
                Err(e) => self
                    .error
                    .set(Some(format!("Could not load the permissions: {e}"))),
            }
        });
    }

    /// Every privilege there is (the `Administrator` role holds them all).
    pub fn all_privileges(&self) -> Vec<String> {
        let mut privs: Vec<String> = self.roles.with(|roles| {
            roles
                .iter()
                .filter(|r| r.special == 1)
                .flat_map(|r| r.privs.split(',').map(str::trim).map(str::to_owned))
                .filter(|p| !p.is_empty())
                .collect()
        });
        privs.sort();
        privs.dedup();
        privs
    }
}
