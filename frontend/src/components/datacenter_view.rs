//! Datacenter: the Summary, HA, Permissions and Pools tabs.

use leptos::prelude::*;

use crate::components::datacenter::DatacenterSummary;
use crate::components::ha::HaView;
use crate::components::permissions::PermissionsView;
use crate::components::pools::PoolsView;

/// The Datacenter view's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcTab {
    /// Cluster health, resources, status, joining nodes.
    Summary,
    /// High availability: resources, rules, manager status.
    Ha,
    /// Users, groups, ACL entries.
    Permissions,
    /// Pools and their quotas.
    Pools,
}

impl DcTab {
    fn label(self) -> &'static str {
        match self {
            DcTab::Summary => "Summary",
            DcTab::Ha => "HA",
            DcTab::Permissions => "Permissions",
            DcTab::Pools => "Pools",
        }
    }

    fn testid(self) -> &'static str {
        match self {
            DcTab::Summary => "dc-tab-summary",
            DcTab::Ha => "dc-tab-ha",
            DcTab::Permissions => "dc-tab-permissions",
            DcTab::Pools => "dc-tab-pools",
        }
    }
}

/// The tab bar of the Datacenter view.
#[component]
pub fn DatacenterTabs(
    /// The selected tab.
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let button = move |which: DcTab| {
        view! {
            <button
                type="button"
                role="tab"
                class="tab"
                class:active=move || tab.get() == which
                aria-selected=move || (tab.get() == which).to_string()
                data-testid=which.testid()
                on:click=move |_| tab.set(which)
            >
                {which.label()}
            </button>
        }
    };
    view! {
        <div class="tabs" role="tablist">
            {button(DcTab::Summary)}
            {button(DcTab::Ha)}
            {button(DcTab::Permissions)}
            {button(DcTab::Pools)}
        </div>
    }
}

/// The Datacenter view.
#[component]
pub fn DatacenterView() -> impl IntoView {
    let tab = RwSignal::new(DcTab::Summary);
    move || match tab.get() {
        DcTab::Summary => view! { <DatacenterSummary tab/> }.into_any(),
        DcTab::Ha => view! { <HaView tab/> }.into_any(),
        DcTab::Permissions => view! { <PermissionsView tab/> }.into_any(),
        DcTab::Pools => view! { <PoolsView tab/> }.into_any(),
    }
}
