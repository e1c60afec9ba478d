//! The console after login: top bar, resource tree, content panel and task panel.

use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::components::banner::{Banner, ErrorBanner};
use crate::components::datacenter_view::{DatacenterView, DcTab};
use crate::components::lab_dashboard::LabDashboard;
use crate::components::lab_home::LabHome;
use crate::components::node_summary::NodeSummary;
use crate::components::password_dialog::PasswordDialog;
use crate::components::tasks::{TaskPanel, TaskViewer};
use crate::components::tfa::TfaDialog;
use crate::components::tree::{ResourceTree, Selection};
use crate::components::vm_view::VmView;
use crate::components::vm_wizard::{CreateVm, CreateVmHost};
use crate::events::{self, ClusterData};
use crate::pages::use_hydrated;
use crate::session::{Auth, UserSession};

/// The console for a logged-in user.
#[component]
pub fn ConsolePage(
    /// The logged-in user.
    user: UserSession,
) -> impl IntoView {
    let auth = Auth::expect();
    let api = Api::new(auth);
    provide_context(api);
    let banner = Banner::provide();
    let data = ClusterData::provide();
    TaskViewer::provide();
    CreateVm::provide();
    let selection = RwSignal::new(Selection::Datacenter);
    let dc_tab = RwSignal::new(DcTab::Summary);
    let hydrated = use_hydrated();
    // Users who see no node (students, instructors without an administrator's view) get their
    // labs instead of the cluster's resource tree.
    let is_root = user.username == "root@kiln";
    // Memos: the event stream sets its signals on every event, even to the same values, and
    // the page must not be rebuilt each time.
    let loaded = Memo::new(move |_| data.loaded.get());
    let labs_only = Memo::new(move |_| {
        !is_root && loaded.get() && data.resources.with(|r| !r.iter().any(events::is_node))
    });

    // Effects run in the browser only: that is where the live stream lives.
    Effect::new(move || events::connect(data, api, banner));

    let current = Memo::new(move |_| selection.get());
    let content = move || match current.get() {
        Selection::Datacenter => view! { <DatacenterView tab=dc_tab selection/> }.into_any(),
        Selection::Lab(labid) => view! {
            <LabDashboard labid on_back=move |()| selection.set(Selection::Datacenter)/>
        }
        .into_any(),
        Selection::Node(node) => view! { <NodeSummary node/> }.into_any(),
        Selection::Vm(vmid) => view! { <VmView vmid selection/> }.into_any(),
    };

    view! {
        <div class="console" data-testid="console" data-ready=move || hydrated.get().to_string()>
            <TopBar user hydrated selection labs_only/>
            <ErrorBanner/>
            {move || {
                if !loaded.get() {
                    // Until the first picture arrives it is unknown whether the user sees the
                    // cluster or only labs (and the admin views would ask what it may not see).
                    view! { <main class="content lab-home"><p class="loading">"Loading…"</p></main> }
                        .into_any()
                } else if labs_only.get() {
                    view! { <LabHome/> }.into_any()
                } else {
                    view! {
                        <div class="workspace">
                            <ResourceTree selection/>
                            <main class="content" aria-live="polite">{content}</main>
                        </div>
                    }
                        .into_any()
                }
            }}
            <TaskPanel/>
            <CreateVmHost selection/>
        </div>
    }
}

/// The top bar: logo, cluster name, stream state, "Create VM", user and Logout.
#[component]
fn TopBar(
    user: UserSession,
    hydrated: ReadSignal<bool>,
    selection: RwSignal<Selection>,
    labs_only: Memo<bool>,
) -> impl IntoView {
    let auth = Auth::expect();
    let api = Api::expect();
    let banner = Banner::expect();
    let data = ClusterData::expect();
    let leaving = RwSignal::new(false);
    let changing_password = RwSignal::new(false);
    let managing_tfa = RwSignal::new(false);
    let username = user.username.clone();
    let tfa_user = user.username.clone();
    let create_vm = CreateVm::expect();
    // The wizard proposes the node the user is looking at.
    let create = move |_| {
        let node = match selection.get_untracked() {
            Selection::Node(node) => Some(node),
            Selection::Vm(vmid) => data.vm(vmid).map(|r| r.node),
            Selection::Datacenter | Selection::Lab(_) => None,
        };
        create_vm.open(node);
    };

    let logout = move |_| {
        leaving.set(true);
        leptos::task::spawn_local(async move {
            match api.logout().await {
                // 401: the session was already gone; either way the user is out.
                Ok(()) | Err(ApiError::Unauthorized(_)) => auth.logged_out(),
                Err(e) => {
                    banner.show(format!("Logout failed: {e}"));
                    leaving.set(false);
                }
            }
        });
    };

    view! {
        <header class="topbar">
            <div class="brand">
                <img src="/favicon.svg" alt="" width="24" height="24"/>
                <span class="logo">"Kiln"</span>
                <span class="version">"Cluster Console"</span>
            </div>
            <div class="cluster-name" data-testid="cluster-name">
                {move || auth.cluster_name()}
            </div>
            <div
                class=move || format!("link-state {}", data.link.get().as_str())
                data-testid="link-state"
                title="State of the live update stream"
            >
                {move || data.link.get().label()}
            </div>
            <Show when=move || !labs_only.get()>
                <button
                    type="button"
                    class="button primary"
                    data-testid="create-vm"
                    disabled=move || !hydrated.get()
                    on:click=create
                >
                    "Create VM"
                </button>
            </Show>
            <div class="user" data-testid="current-user">{user.username.clone()}</div>
            <button
                type="button"
                class="button"
                data-testid="change-password"
                disabled=move || !hydrated.get()
                on:click=move |_| changing_password.set(true)
            >
                "Password"
            </button>
            <button
                type="button"
                class="button"
                data-testid="open-tfa"
                disabled=move || !hydrated.get()
                on:click=move |_| managing_tfa.set(true)
            >
                "Two-factor"
            </button>
            <button
                type="button"
                class="button"
                data-testid="logout"
                disabled=move || !hydrated.get() || leaving.get()
                on:click=logout
            >
                "Logout"
            </button>
        </header>
        <Show when=move || changing_password.get()>
            <PasswordDialog userid=username.clone() on_close=move |()| changing_password.set(false)/>
        </Show>
        <Show when=move || managing_tfa.get()>
            <TfaDialog userid=tfa_user.clone() on_close=move |()| managing_tfa.set(false)/>
        </Show>
    }
}
