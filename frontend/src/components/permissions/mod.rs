//! Datacenter → Permissions: users, groups, roles and ACL entries (what the caller may see),
//! each with its add, edit and remove dialogs, and a user's API tokens. The server decides
//! what the caller may change; its refusal shows in the dialog.

pub mod acl;
pub mod data;
pub mod groups;
pub mod remove;
pub mod roles;
pub mod tokens;
pub mod users;

use kiln_api_types::access::{GroupEntry, RoleEntry, UserEntry};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::datacenter_view::{DatacenterTabs, DcTab};
use crate::components::tfa::TfaDialog;
use crate::session::Auth;
use acl::AclDialog;
use data::PermissionsData;
use groups::GroupDialog;
use remove::{Removal, RemoveDialog};
use roles::RoleDialog;
use tokens::TokensDialog;
use users::UserDialog;

/// The dialog open over the view, if any.
#[derive(Debug, Clone, PartialEq)]
enum Editing {
    User(Option<UserEntry>),
    Tokens(String),
    SecondFactors(String),
    Group(Option<GroupEntry>),
    Role(Option<RoleEntry>),
    Acl,
    Remove(Removal),
}

/// The permissions view.
#[component]
pub fn PermissionsView(
    /// The Datacenter tab (this view is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let data = PermissionsData::provide(Api::expect());
    let me = Auth::expect()
        .user()
        .map(|u| u.username)
        .unwrap_or_default();
    let editing = RwSignal::new(None::<Editing>);
    Effect::new(move || data.reload());
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let close = Callback::new(move |()| editing.set(None));
    let open = move |what: Editing| move |_| editing.set(Some(what.clone()));

    let user_row = move |u: UserEntry| {
        let id = u.userid.clone();
        view! {
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
                <td>{yes_no(u.tfa_required == 1)}</td>
                <td>{u.tokens.len().to_string()}</td>
                <td>
                    <div class="row-actions">
                        <button type="button" class="button" data-testid="user-edit" on:click=open(Editing::User(Some(u.clone())))>
                            "Edit"
                        </button>
                        <button type="button" class="button" data-testid="user-tokens" on:click=open(Editing::Tokens(id.clone()))>
                            "API tokens"
                        </button>
                        <button type="button" class="button" data-testid="user-tfa" on:click=open(Editing::SecondFactors(id.clone()))>
                            "Two-factor"
                        </button>
                        // root@kiln cannot be removed (the server refuses it too).
                        {(id != "root@kiln").then(|| view! {
                            <button type="button" class="button danger" data-testid="user-remove" on:click=open(Editing::Remove(Removal::User(id.clone())))>
                                "Remove"
                            </button>
                        })}
                    </div>
                </td>
            </tr>
        }
    };
    let group_row = move |g: GroupEntry| {
        view! {
            <tr data-testid="group-row" data-groupid=g.groupid.clone()>
                <td>{g.groupid.clone()}</td>
                <td>{g.users.clone()}</td>
                <td>{g.comment.clone()}</td>
                <td>
                    <div class="row-actions">
                        <button type="button" class="button" data-testid="group-edit" on:click=open(Editing::Group(Some(g.clone())))>
                            "Edit"
                        </button>
                        <button type="button" class="button danger" data-testid="group-remove" on:click=open(Editing::Remove(Removal::Group(g.groupid.clone())))>
                            "Remove"
                        </button>
                    </div>
                </td>
            </tr>
        }
    };
    let role_row = move |r: RoleEntry| {
        let builtin = r.special == 1;
        view! {
            <tr data-testid="role-row" data-roleid=r.roleid.clone()>
                <td>{r.roleid.clone()}</td>
                <td class="privs">{r.privs.replace(',', ", ")}</td>
                <td>{yes_no(builtin)}</td>
                <td>
                    {(!builtin).then(|| view! {
                        <div class="row-actions">
                            <button type="button" class="button" data-testid="role-edit" on:click=open(Editing::Role(Some(r.clone())))>
                                "Edit"
                            </button>
                            <button type="button" class="button danger" data-testid="role-remove" on:click=open(Editing::Remove(Removal::Role(r.roleid.clone())))>
                                "Remove"
                            </button>
                        </div>
                    })}
                </td>
            </tr>
        }
    };

    view! {
        <section class="summary" data-testid="permissions-view">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">"Permissions"</h2>
            </div>
            {move || data.error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <div class="card wide">
                <div class="card-head">
                    <h3>"Users"</h3>
                    <button type="button" class="button primary" data-testid="user-add" on:click=open(Editing::User(None))>
                        "Add"
                    </button>
                </div>
                <table class="grid" data-testid="users-table">
                    <thead>
                        <tr>
                            <th scope="col">"User"</th>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Enabled"</th>
                            <th scope="col">"Expires"</th>
                            <th scope="col">"Groups"</th>
                            <th scope="col">"2FA required"</th>
                            <th scope="col">"API tokens"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || data.users.get() key=|u| format!("{u:?}") children=user_row/>
                    </tbody>
                </table>
            </div>
            <div class="card wide">
                <div class="card-head">
                    <h3>"Groups"</h3>
                    <button type="button" class="button primary" data-testid="group-add" on:click=open(Editing::Group(None))>
                        "Add"
                    </button>
                </div>
                <table class="grid" data-testid="groups-table">
                    <thead>
                        <tr>
                            <th scope="col">"Group"</th>
                            <th scope="col">"Members"</th>
                            <th scope="col">"Comment"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || data.groups.get() key=|g| format!("{g:?}") children=group_row/>
                    </tbody>
                </table>
            </div>
            <div class="card wide">
                <div class="card-head">
                    <h3>"Roles"</h3>
                    <button type="button" class="button primary" data-testid="role-add" on:click=open(Editing::Role(None))>
                        "Add"
                    </button>
                </div>
                <table class="grid" data-testid="roles-table">
                    <thead>
                        <tr>
                            <th scope="col">"Role"</th>
                            <th scope="col">"Privileges"</th>
                            <th scope="col">"Built-in"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || data.roles.get() key=|r| format!("{r:?}") children=role_row/>
                    </tbody>
                </table>
            </div>
            <div class="card wide">
                <div class="card-head">
                    <h3>"Access control list"</h3>
                    <button type="button" class="button primary" data-testid="acl-add" on:click=open(Editing::Acl)>
                        "Add"
                    </button>
                </div>
                <table class="grid" data-testid="acl-table">
                    <thead>
                        <tr>
                            <th scope="col">"Path"</th>
                            <th scope="col">"Type"</th>
                            <th scope="col">"User, group or token"</th>
                            <th scope="col">"Role"</th>
                            <th scope="col">"Propagate"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || data.acl.get()
                            key=|e| format!("{e:?}")
                            let:e
                        >
                            <tr data-testid="acl-row" data-path=e.path.clone() data-ugid=e.ugid.clone() data-roleid=e.roleid.clone()>
                                <td>{e.path.clone()}</td>
                                <td>{e.kind.clone()}</td>
                                <td>{e.ugid.clone()}</td>
                                <td>{e.roleid.clone()}</td>
                                <td>{yes_no(e.propagate == 1)}</td>
                                <td>
                                    <button type="button" class="button danger" data-testid="acl-remove" on:click=open(Editing::Remove(Removal::Acl(e.clone())))>
                                        "Remove"
                                    </button>
                                </td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
        {move || editing.get().map(|what| match what {
            Editing::User(existing) => view! { <UserDialog existing on_close=close/> }.into_any(),
            Editing::Tokens(userid) => view! { <TokensDialog userid on_close=close/> }.into_any(),
            Editing::SecondFactors(userid) => {
                let own = userid == me;
                view! { <TfaDialog userid own on_close=close/> }.into_any()
            }
            Editing::Group(existing) => view! { <GroupDialog existing on_close=close/> }.into_any(),
            Editing::Role(existing) => view! { <RoleDialog existing on_close=close/> }.into_any(),
            Editing::Acl => view! { <AclDialog on_close=close/> }.into_any(),
            Editing::Remove(what) => view! { <RemoveDialog what on_close=close/> }.into_any(),
        })}
    }
}
