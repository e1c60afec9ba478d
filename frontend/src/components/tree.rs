//! The resource tree on the left: "Datacenter", one entry per node with its state, and the
//! node's virtual machines under it.

use kiln_api_types::NodeState;
use leptos::prelude::*;

use crate::events::{node_state, ClusterData};
use crate::vm::VmState;

/// What the content panel shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole cluster.
    Datacenter,
    /// One node, by name.
    Node(String),
    /// One virtual machine, by VM id.
    Vm(u32),
    /// One lab's dashboard, by lab id.
    Lab(String),
}

/// The resource tree; clicking an entry changes `selection`.
#[component]
pub fn ResourceTree(
    /// What the content panel shows; the tree highlights it and changes it on click.
    selection: RwSignal<Selection>,
) -> impl IntoView {
    let data = ClusterData::expect();
    let node_names =
        Memo::new(move |_| data.nodes().into_iter().map(|r| r.node).collect::<Vec<_>>());
    let datacenter_selected = move || selection.get() == Selection::Datacenter;
    view! {
        <nav class="tree-panel" aria-label="Resource tree">
            <div class="panel-title">"Server View"</div>
            <ul class="tree" role="tree" aria-label="Resources">
                <li
                    role="treeitem"
                    aria-expanded="true"
                    aria-selected=move || datacenter_selected().to_string()
                    data-testid="tree-datacenter"
                >
                    <button
                        type="button"
                        class="tree-row"
                        class:selected=datacenter_selected
                        on:click=move |_| selection.set(Selection::Datacenter)
                    >
                        <span class="tree-icon datacenter-icon" aria-hidden="true"></span>
                        "Datacenter"
                    </button>
                    <ul role="group" class="tree-children">
                        <For each=move || node_names.get() key=|name| name.clone() let:name>
                            <NodeEntry name selection/>
                        </For>
                    </ul>
                </li>
            </ul>
            <Show when=move || data.loaded.get() && node_names.with(Vec::is_empty)>
                <p class="tree-empty">"No nodes yet. Use “Join node” in the Datacenter summary."</p>
            </Show>
        </nav>
    }
}

/// One node in the tree, with its online/offline icon.
#[component]
fn NodeEntry(name: String, selection: RwSignal<Selection>) -> impl IntoView {
    let data = ClusterData::expect();
    let state = Memo::new({
        let name = name.clone();
        move |_| {
            data.node(&name)
                .map(|r| node_state(&r))
                .unwrap_or(NodeState::Unknown)
        }
    });
    let selected = Memo::new({
        let name = name.clone();
        move |_| matches!(selection.get(), Selection::Node(ref n) if *n == name)
    });
    let select = {
        let name = name.clone();
        move |_| selection.set(Selection::Node(name.clone()))
    };
    let vmids = Memo::new({
        let name = name.clone();
        move |_| {
            data.vms_on(&name)
                .into_iter()
                .filter_map(|r| r.vmid)
                .collect::<Vec<_>>()
        }
    });
    let status = move || state.get().as_str();
    let node_attr = name.clone();
    view! {
        <li
            role="treeitem"
            aria-selected=move || selected.get().to_string()
            aria-expanded=move || (!vmids.with(Vec::is_empty)).then_some("true")
            data-testid="tree-node"
            data-node=node_attr
            data-status=status
        >
            <button type="button" class="tree-row" class:selected=selected on:click=select>
                <span class=move || format!("tree-icon node-icon {}", status()) aria-hidden="true"></span>
                <span class="tree-label">{name}</span>
                <Show when=move || state.get() != NodeState::Online>
                    <span class="tree-state">{status}</span>
                </Show>
            </button>
            <Show when=move || !vmids.with(Vec::is_empty)>
                <ul role="group" class="tree-children">
                    <For each=move || vmids.get() key=|vmid| *vmid let:vmid>
                        <VmEntry vmid selection/>
                    </For>
                </ul>
            </Show>
        </li>
    }
}

/// One VM in the tree: `101 (name)` with a running/paused/stopped icon.
#[component]
fn VmEntry(vmid: u32, selection: RwSignal<Selection>) -> impl IntoView {
    let data = ClusterData::expect();
    let vm = Memo::new(move |_| data.vm(vmid));
    let state = Memo::new(move |_| {
        vm.with(|r| r.as_ref().map(VmState::of))
            .unwrap_or(VmState::Unknown)
    });
    let label = move || {
        vm.with(|r| match r.as_ref().and_then(|r| r.name.as_deref()) {
            Some(name) if !name.is_empty() => format!("{vmid} ({name})"),
            _ => vmid.to_string(),
        })
    };
    let selected = Memo::new(move |_| selection.get() == Selection::Vm(vmid));
    let status = move || state.get().as_str();
    view! {
        <li
            role="treeitem"
            aria-selected=move || selected.get().to_string()
            data-testid="tree-vm"
            data-vmid=vmid.to_string()
            data-status=status
        >
            <button
                type="button"
                class="tree-row"
                class:selected=selected
                title=move || format!("VM {vmid}: {}", status())
                on:click=move |_| selection.set(Selection::Vm(vmid))
            >
                <span class=move || format!("tree-icon vm-icon {}", status()) aria-hidden="true"></span>
                <span class="tree-label">{label}</span>
            </button>
        </li>
    }
}
