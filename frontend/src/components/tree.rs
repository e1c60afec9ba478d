//! The resource tree on the left: "Datacenter" and one entry per node with its state.

use kiln_api_types::NodeState;
use leptos::prelude::*;

use crate::events::{node_state, ClusterData};

/// What the content panel shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole cluster.
    Datacenter,
    /// One node, by name.
    Node(String),
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
    let status = move || state.get().as_str();
    let node_attr = name.clone();
    view! {
        <li
            role="treeitem"
            aria-selected=move || selected.get().to_string()
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
        </li>
    }
}
