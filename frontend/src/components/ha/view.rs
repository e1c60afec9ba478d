//! The HA page itself: its cards under the Datacenter tabs.

use leptos::prelude::*;

use super::data::HaData;
use super::manager::ManagerCard;
use super::resources::ResourcesCard;
use super::rules::RulesCard;
use crate::components::datacenter_view::{DatacenterTabs, DcTab};

/// Datacenter → HA.
#[component]
pub fn HaView(
    /// The Datacenter tab (this view is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let data = HaData::provide();
    view! {
        <section class="summary" data-testid="ha-view">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">"High availability"</h2>
            </div>
            {move || {
                data.error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })
            }}
            <ResourcesCard/>
            <RulesCard/>
            <ManagerCard/>
        </section>
    }
}
