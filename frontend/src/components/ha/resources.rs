//! The HA resources card: every VM under HA with the manager's state, where it is, its
//! settings and the reason for its state; Add, Edit and Remove.

use kiln_api_types::ha::HaResource;
use leptos::prelude::*;

use super::data::HaData;
use super::remove_dialog::{Removal, RemoveDialog};
use super::resource_dialog::ResourceDialog;
use crate::events::ClusterData;

/// Which resource dialog is open.
#[derive(Debug, Clone, PartialEq)]
enum Editing {
    /// Add a VM to HA.
    New,
    /// Change this resource.
    Existing(HaResource),
}

/// The VM id of a sid `vm:<vmid>`.
pub fn vmid_of(sid: &str) -> Option<u32> {
    sid.strip_prefix("vm:").unwrap_or(sid).parse().ok()
}

/// The card.
#[component]
pub fn ResourcesCard() -> impl IntoView {
    let data = HaData::expect();
    let cluster = ClusterData::expect();
    let editing = RwSignal::new(None::<Editing>);
    let removing = RwSignal::new(None::<String>);

    let rows = move || data.resources.get();
    let row = move |r: HaResource| {
        let sid = r.sid.clone();
        let vm_name = {
            let sid = sid.clone();
            move || {
                vmid_of(&sid)
                    .and_then(|id| cluster.vm(id))
                    .and_then(|v| v.name)
                    .unwrap_or_default()
            }
        };
        let service = {
            let sid = sid.clone();
            Memo::new(move |_| data.service(&sid))
        };
        let edit = r.clone();
        let remove = sid.clone();
        view! {
            <tr data-testid="ha-config-row" data-sid=sid.clone()>
                <td>{sid.clone()}</td>
                <td>{vm_name}</td>
                <td data-testid="ha-config-node">
                    {move || service.get().and_then(|s| s.node).unwrap_or_default()}
                </td>
                <td data-testid="ha-config-state">
                    {move || service.get().and_then(|s| s.state).unwrap_or_else(|| "queued".into())}
                </td>
                <td data-testid="ha-config-requested">{r.state.clone()}</td>
                <td data-testid="ha-config-counts">{format!("{} / {}", r.max_restart, r.max_relocate)}</td>
                <td>{if r.failback == 1 { "yes" } else { "no" }}</td>
                <td class="wrap">{r.comment.clone()}</td>
                <td class="wrap" data-testid="ha-config-reason">
                    {move || service.get().and_then(|s| s.reason).unwrap_or_default()}
                </td>
                <td>
                    <div class="toolbar row-actions">
                        <button
                            type="button"
                            class="button"
                            data-testid="ha-resource-edit"
                            on:click=move |_| editing.set(Some(Editing::Existing(edit.clone())))
                        >
                            "Edit"
                        </button>
                        <button
                            type="button"
                            class="button danger"
                            data-testid="ha-resource-remove"
                            on:click=move |_| removing.set(Some(remove.clone()))
                        >
                            "Remove"
                        </button>
                    </div>
                </td>
            </tr>
        }
    };

    view! {
        <div class="card wide" data-testid="ha-resources-card">
            <div class="card-head">
                <h3>"Resources"</h3>
                <button
                    type="button"
                    class="button primary"
                    data-testid="ha-add-resource"
                    on:click=move |_| editing.set(Some(Editing::New))
                >
                    "Add"
                </button>
            </div>
            <Show
                when=move || !data.resources.with(Vec::is_empty)
                fallback=|| view! { <p class="muted">"No VM is under HA yet. Add one."</p> }
            >
                <table class="grid" data-testid="ha-config-table">
                        <thead>
                            <tr>
                                <th scope="col">"Resource"</th>
                                <th scope="col">"VM name"</th>
                                <th scope="col">"Node"</th>
                                <th scope="col">"State"</th>
                                <th scope="col">"Requested"</th>
                                <th scope="col" class="wrap" title="max_restart / max_relocate">"Restart / relocate"</th>
                                <th scope="col">"Failback"</th>
                                <th scope="col">"Comment"</th>
                                <th scope="col">"Reason"</th>
                                <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            <For each=rows key=|r| (r.sid.clone(), r.digest.clone()) children=row/>
                        </tbody>
                </table>
            </Show>
            {move || {
                editing
                    .get()
                    .map(|e| {
                        let existing = match e {
                            Editing::New => None,
                            Editing::Existing(r) => Some(r),
                        };
                        view! { <ResourceDialog existing on_close=move |()| editing.set(None)/> }
                    })
            }}
            {move || {
                removing
                    .get()
                    .map(|sid| {
                        view! {
                            <RemoveDialog
                                what=Removal::Resource(sid)
                                on_close=move |()| removing.set(None)
                            />
                        }
                    })
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_name_their_vm() {
        assert_eq!(vmid_of("vm:100"), Some(100));
        assert_eq!(vmid_of("101"), Some(101));
        assert_eq!(vmid_of("ct:1"), None);
    }
}
