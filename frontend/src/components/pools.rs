//! Datacenter → Pools: each pool with its quota bars; add, edit (comment, quotas) and remove.

use kiln_api_types::access::PoolEntry;
use leptos::prelude::*;

use crate::api::Api;
use crate::components::datacenter_view::{DatacenterTabs, DcTab};
use crate::components::meter::Meter;
use crate::components::pool_dialog::{PoolDialog, PoolEditing};
use crate::format;

const MIB: u64 = 1024 * 1024;

/// Fraction and text of a quota bar: `used` of `max` (no bar without a limit).
pub fn quota(used: u64, max: Option<u64>, unit: &str) -> (f64, String) {
    match max {
        Some(max) => (format::ratio(used, max), format!("{used} of {max} {unit}")),
        None => (0.0, format!("{used} {unit} (no limit)")),
    }
}

/// The pools overview.
#[component]
pub fn PoolsView(
    /// The Datacenter tab (this view is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let api = Api::expect();
    let pools = RwSignal::new(Vec::<PoolEntry>::new());
    let error = RwSignal::new(None::<String>);
    let editing = RwSignal::new(None::<PoolEditing>);
    let reload = move || {
        leptos::task::spawn_local(async move {
            match api.get::<Vec<PoolEntry>>("pools").await {
                Ok(list) => {
                    pools.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load the pools: {e}"))),
            }
        });
    };
    Effect::new(reload);

    view! {
        <section class="summary" data-testid="pools-view">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">"Pools"</h2>
                <button
                    type="button"
                    class="button primary"
                    data-testid="pool-add"
                    on:click=move |_| editing.set(Some(PoolEditing::New))
                >
                    "Add pool"
                </button>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <Show when=move || pools.with(Vec::is_empty) && error.with(Option::is_none)>
                <p class="tree-empty">"No pools you may see. Add one."</p>
            </Show>
            <div class="cards">
                <For each=move || pools.get() key=|p| format!("{p:?}") let:p>
                    <PoolCard pool=p editing/>
                </For>
            </div>
        </section>
        {move || editing.get().map(|what| view! {
            <PoolDialog what on_close=move |()| editing.set(None) on_done=move |()| reload()/>
        })}
    }
}

/// One pool: its quota bars, "Edit" and "Remove".
#[component]
fn PoolCard(pool: PoolEntry, editing: RwSignal<Option<PoolEditing>>) -> impl IntoView {
    let (edit_pool, remove_id) = (pool.clone(), pool.poolid.clone());
    let (vms, vms_text) = quota(
        u64::from(pool.usage.vms),
        pool.quota.max_vms.map(u64::from),
        "VMs",
    );
    let (cpus, cpus_text) = quota(
        u64::from(pool.usage.running_vcpus),
        pool.quota.max_vcpus.map(u64::from),
        "vCPUs",
    );
    let (mem, mem_text) = match pool.quota.max_memory {
        Some(max) => (
            format::ratio(pool.usage.running_memory_mib, max),
            format!(
                "{} of {}",
                format::bytes(pool.usage.running_memory_mib * MIB),
                format::bytes(max * MIB)
            ),
        ),
        None => (
            0.0,
            format!(
                "{} (no limit)",
                format::bytes(pool.usage.running_memory_mib * MIB)
            ),
        ),
    };
    view! {
        <div class="card" data-testid="pool" data-pool=pool.poolid.clone()>
            <div class="card-head">
                <h3>{pool.poolid.clone()}</h3>
                <div class="row-actions">
                    <button
                        type="button"
                        class="button"
                        data-testid="pool-edit"
                        on:click=move |_| editing.set(Some(PoolEditing::Edit(edit_pool.clone())))
                    >
                        "Edit"
                    </button>
                    <button
                        type="button"
                        class="button danger"
                        data-testid="pool-remove"
                        on:click=move |_| editing.set(Some(PoolEditing::Remove(remove_id.clone())))
                    >
                        "Remove"
                    </button>
                </div>
            </div>
            {(!pool.comment.is_empty()).then(|| view! { <p>{pool.comment.clone()}</p> })}
            <Meter label="VMs" fraction=Signal::derive(move || vms) text=Signal::derive(move || vms_text.clone())/>
            <Meter
                label="Running vCPUs"
                fraction=Signal::derive(move || cpus)
                text=Signal::derive(move || cpus_text.clone())
            />
            <Meter
                label="Running memory"
                fraction=Signal::derive(move || mem)
                text=Signal::derive(move || mem_text.clone())
            />
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_bars_show_use_of_the_limit_or_no_limit() {
        let (f, t) = quota(1, Some(4), "vCPUs");
        assert!((f - 0.25).abs() < 1e-9);
        assert_eq!(t, "1 of 4 vCPUs");
        assert_eq!(quota(3, None, "VMs"), (0.0, "3 VMs (no limit)".to_owned()));
    }
}
