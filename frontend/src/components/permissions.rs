//! Datacenter → Permissions: users, groups and ACL entries (what the caller may see).

use kiln_api_types::access::{AclEntryWire, GroupEntry, UserEntry};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::datacenter_view::{DatacenterTabs, DcTab};

/// The permissions overview.
#[component]
pub fn PermissionsView(
    /// The Datacenter tab (this view is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let api = Api::expect();
    let users = RwSignal::new(Vec::<UserEntry>::new());
    let groups = RwSignal::new(Vec::<GroupEntry>::new());
    let acl = RwSignal::new(Vec::<AclEntryWire>::new());
    let error = RwSignal::new(None::<String>);
    Effect::new(move || {
        leptos::task::spawn_local(async move {
            let loaded = async {
                users.set(api.get("access/users").await?);
                groups.set(api.get("access/groups").await?);
                acl.set(api.get("access/acl").await?);
                Ok::<_, crate::api::ApiError>(())
            };
            if let Err(e) = loaded.await {
                error.set(Some(format!("Could not load the permissions: {e}")));
            }
        });
    });
    let yes_no = |b: bool| if b { "yes" } else { "no" };

    view! {
        <section class="summary" data-testid="permissions-view">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">"Permissions"</h2>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <div class="card wide">
                <h3>"Users"</h3>
                <table class="grid" data-testid="users-table">
                    <thead>
                        <tr>
                            <th scope="col">"User"</th>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Enabled"</th>
                            <th scope="col">"Expires"</th>
                            <th scope="col">"Groups"</th>
                            <th scope="col">"API tokens"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || users.get() key=|u| u.userid.clone() let:u>
                            <tr data-testid="user-row" data-userid=u.userid.clone()>
                                <td>{u.userid.clone()}</td>
                                <td>{format!("{} {}", u.firstname, u.lastname).trim().to_owned()}</td>
                                <td>{yes_no(u.enable == 1)}</td>
                                <td>
                                    {if u.expire == 0 {
                                        "never".to_owned()
                                    } else {
                                        crate::format::timestamp(u.expire)
                                    }}
                                </td>
                                <td>{u.groups.clone()}</td>
                                <td>{u.tokens.len().to_string()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
            <div class="card wide">
                <h3>"Groups"</h3>
                <table class="grid" data-testid="groups-table">
                    <thead>
                        <tr>
                            <th scope="col">"Group"</th>
                            <th scope="col">"Members"</th>
                            <th scope="col">"Comment"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || groups.get() key=|g| g.groupid.clone() let:g>
                            <tr>
                                <td>{g.groupid.clone()}</td>
                                <td>{g.users.clone()}</td>
                                <td>{g.comment.clone()}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
            <div class="card wide">
                <h3>"Access control list"</h3>
                <table class="grid" data-testid="acl-table">
                    <thead>
                        <tr>
                            <th scope="col">"Path"</th>
                            <th scope="col">"Type"</th>
                            <th scope="col">"User, group or token"</th>
                            <th scope="col">"Role"</th>
                            <th scope="col">"Propagate"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || acl.get()
                            key=|e| (e.path.clone(), e.kind.clone(), e.ugid.clone(), e.roleid.clone())
                            let:e
                        >
                            <tr>
                                <td>{e.path.clone()}</td>
                                <td>{e.kind.clone()}</td>
                                <td>{e.ugid.clone()}</td>
                                <td>{e.roleid.clone()}</td>
                                <td>{yes_no(e.propagate == 1)}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
    }
}
