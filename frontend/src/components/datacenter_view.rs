//! Datacenter: the Summary, HA, Permissions, Pools, Labs and Audit tabs.

use leptos::prelude::*;

use crate::components::audit::AuditView;
use crate::components::datacenter::DatacenterSummary;
use crate::components::ha::HaView;
use crate::components::labs::LabsView;
use crate::components::permissions::PermissionsView;
use crate::components::pools::PoolsView;
use crate::components::tree::Selection;

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
    /// Teaching labs.
    Labs,
    /// The audit log.
    Audit,
}

impl DcTab {
    fn label(self) -> &'static str {
        match self {
            DcTab::Summary => "Summary",
            DcTab::Ha => "HA",
            DcTab::Permissions => "Permissions",
            DcTab::Pools => "Pools",
            DcTab::Labs => "Labs",
            DcTab::Audit => "Audit",
        }
    }

    fn testid(self) -> &'static str {
        match self {
            DcTab::Summary => "dc-tab-summary",
            DcTab::Ha => "dc-tab-ha",
            DcTab::Permissions => "dc-tab-permissions",
            DcTab::Pools => "dc-tab-pools",
            DcTab::Labs => "dc-tab-labs",
            DcTab::Audit => "dc-tab-audit",
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
            {button(DcTab::Labs)}
            {button(DcTab::Audit)}
        </div>
    }
}

/// The Datacenter view.
#[component]
pub fn DatacenterView(
    /// The selected tab (kept by the console, so that coming back from a lab shows Labs).
    tab: RwSignal<DcTab>,
    /// The console's selection (a lab opens its dashboard).
    selection: RwSignal<Selection>,
) -> impl IntoView {
    move || match tab.get() {
        DcTab::Summary => view! { <DatacenterSummary tab/> }.into_any(),
        DcTab::Ha => view! { <HaView tab/> }.into_any(),
        DcTab::Permissions => view! { <PermissionsView tab/> }.into_any(),
        DcTab::Pools => view! { <PoolsView tab/> }.into_any(),
        DcTab::Audit => view! { <AuditView tab/> }.into_any(),
        DcTab::Labs => view! {
            <section class="summary" data-testid="labs-tab">
                <DatacenterTabs tab/>
                <LabsView open=move |labid: String| selection.set(Selection::Lab(labid))/>
            </section>
        }
        .into_any(),
    }
}
