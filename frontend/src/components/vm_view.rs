//! The content panel of one VM: title, action toolbar, and the Summary and Console tabs.

use leptos::prelude::*;

use crate::components::tree::Selection;
use crate::components::vm_actions::VmToolbar;
use crate::components::vm_console::VmConsole;
use crate::components::vm_summary::VmSummary;
use crate::events::ClusterData;
use crate::vm::VmState;

/// The VM view's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VmTab {
    Summary,
    Console,
}

impl VmTab {
    fn label(self) -> &'static str {
        match self {
            VmTab::Summary => "Summary",
            VmTab::Console => "Console",
        }
    }

    fn testid(self) -> &'static str {
        match self {
            VmTab::Summary => "vm-tab-summary",
            VmTab::Console => "vm-tab-console",
        }
    }
}

/// One VM.
#[component]
pub fn VmView(
    /// The VM.
    vmid: u32,
    /// The console's selection (a removal selects the VM's node).
    selection: RwSignal<Selection>,
) -> impl IntoView {
    let data = ClusterData::expect();
    let live = Memo::new(move |_| data.vm(vmid));
    let state = Memo::new(move |_| {
        live.with(|r| r.as_ref().map(VmState::of))
            .unwrap_or(VmState::Unknown)
    });
    let node = Memo::new(move |_| live.with(|r| r.as_ref().map(|r| r.node.clone())));
    let lock = Memo::new(move |_| live.with(|r| r.as_ref().and_then(|r| r.lock.clone())));
    let template =
        Memo::new(move |_| live.with(|r| r.as_ref().is_some_and(|r| r.template == Some(1))));
    let tab = RwSignal::new(VmTab::Summary);

    let title = move || {
        let name = live.with(|r| r.as_ref().and_then(|r| r.name.clone()));
        let on = node
            .get()
            .map(|n| format!(" on node '{n}'"))
            .unwrap_or_default();
        let kind = if template.get() {
            "Template"
        } else {
            "Virtual Machine"
        };
        match name {
            Some(name) if !name.is_empty() => format!("{kind} {vmid} ({name}){on}"),
            _ => format!("{kind} {vmid}{on}"),
        }
    };
    let tab_button = move |which: VmTab| {
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
        <section
            class="summary vm-view"
            data-testid="vm-view"
            data-vmid=vmid.to_string()
            data-status=move || state.get().as_str()
        >
            <div class="tabs" role="tablist">
                {tab_button(VmTab::Summary)}
                {tab_button(VmTab::Console)}
            </div>
            <div class="summary-head">
                <h2 class="summary-title">{title}</h2>
                <VmToolbar vmid node state lock template selection/>
            </div>
            <Show when=move || data.loaded.get() && live.with(Option::is_none)>
                <div class="notice warning" role="status" data-testid="vm-missing">
                    {format!("VM {vmid} is not in the cluster (any more).")}
                </div>
            </Show>
            {move || {
                lock.get()
                    .map(|l| {
                        view! {
                            <div class="notice warning" role="status">
                                {format!("The VM is locked ({l}); actions wait until that ends.")}
                            </div>
                        }
                    })
            }}
            {move || match tab.get() {
                VmTab::Summary => view! { <VmSummary vmid live state/> }.into_any(),
                VmTab::Console => view! { <VmConsole vmid/> }.into_any(),
            }}
        </section>
    }
}
