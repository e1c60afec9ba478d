//! The VM view's action buttons (Start … Resume, Migrate, Clone, Template, Remove), each
//! enabled by the VM's state (a template never starts), the Remove confirmation that asks
//! for the VM id, as Proxmox does, and the Template confirmation.

use leptos::prelude::*;

use crate::api::Api;
use crate::components::clone_dialog::CloneDialog;
use crate::components::dialog::Dialog;
use crate::components::migrate_dialog::MigrateDialog;
use crate::components::tree::Selection;
use crate::vm::{VmAction, VmState};

/// The toolbar of one VM.
#[component]
pub fn VmToolbar(
    /// The VM.
    vmid: u32,
    /// The node it is on (`None` while the cluster does not know the VM).
    #[prop(into)]
    node: Signal<Option<String>>,
    /// Its state.
    #[prop(into)]
    state: Signal<VmState>,
    /// An operation holding the VM (no action is offered then).
    #[prop(into)]
    lock: Signal<Option<String>>,
    /// Whether the VM is a template (cloned, never started).
    #[prop(into)]
    template: Signal<bool>,
    /// Changed to the VM's node after a removal.
    selection: RwSignal<Selection>,
) -> impl IntoView {
    let api = Api::expect();
    let busy = RwSignal::new(None::<VmAction>);
    let error = RwSignal::new(None::<String>);
    let removing = RwSignal::new(false);
    let migrating = RwSignal::new(false);
    let templating = RwSignal::new(false);
    let cloning = RwSignal::new(false);
    let idle = move || {
        busy.with(Option::is_none) && lock.with(Option::is_none) && node.with(Option::is_some)
    };

    let run = move |action: VmAction| {
        let Some(node) = node.get_untracked() else {
            return;
        };
        busy.set(Some(action));
        error.set(None);
        leptos::task::spawn_local(async move {
            // The task appears in the task panel through the event stream; a refusal (e.g. not
            // enough memory to start) comes back right here.
            if let Err(e) = api.vm_action(&node, vmid, action.api_name()).await {
                error.set(Some(format!("{} failed: {e}", action.label())));
            }
            busy.set(None);
        });
    };

    let buttons = VmAction::ALL
        .iter()
        .map(|&action| {
            let enabled = move || idle() && !template.get() && action.allowed_in(state.get());
            view! {
                <button
                    type="button"
                    class="button"
                    class:primary=action == VmAction::Start
                    data-testid=format!("vm-action-{}", action.api_name())
                    disabled=move || !enabled()
                    aria-busy=move || (busy.get() == Some(action)).to_string()
                    on:click=move |_| run(action)
                >
                    {action.label()}
                </button>
            }
        })
        .collect_view();

    view! {
        <div class="toolbar" role="toolbar" aria-label=format!("Actions of VM {vmid}")>
            {buttons}
            <button
                type="button"
                class="button"
                data-testid="vm-migrate"
                disabled=move || {
                    !(idle() && matches!(state.get(), VmState::Running | VmState::Stopped))
                }
                title="Move the VM to another node (live while it runs)"
                on:click=move |_| migrating.set(true)
            >
                "Migrate"
            </button>
            <button
                type="button"
                class="button"
                data-testid="vm-clone"
                disabled=move || !(idle() && (template.get() || state.get() == VmState::Stopped))
                title="Make a new VM from this one (a template, or a stopped VM)"
                on:click=move |_| cloning.set(true)
            >
                "Clone"
            </button>
            <button
                type="button"
                class="button"
                data-testid="vm-template"
                disabled=move || !(idle() && !template.get() && state.get() == VmState::Stopped)
                title="Make the VM a template: it can be cloned (e.g. for a lab) but never started again"
                on:click=move |_| templating.set(true)
            >
                "Template"
            </button>
            <button
                type="button"
                class="button danger"
                data-testid="vm-remove"
                disabled=move || !(idle() && state.get() == VmState::Stopped)
                title="Remove the VM and its configuration (only when stopped)"
                on:click=move |_| removing.set(true)
            >
                "Remove"
            </button>
        </div>
        {move || {
            error
                .get()
                .map(|e| {
                    view! {
                        <div class="notice error" role="alert" data-testid="vm-action-error">
                            {e}
                        </div>
                    }
                })
        }}
        {move || {
            let node = node.get()?;
            migrating
                .get()
                .then(|| view! { <MigrateDialog vmid node on_close=move |()| migrating.set(false)/> })
        }}
        {move || {
            let node = node.get()?;
            cloning
                .get()
                .then(|| view! { <CloneDialog vmid node on_close=move |()| cloning.set(false)/> })
        }}
        <Show when=move || templating.get()>
            <TemplateDialog vmid node on_close=move |()| templating.set(false)/>
        </Show>
        <Show when=move || removing.get()>
            <RemoveDialog vmid node selection on_close=move |()| removing.set(false)/>
        </Show>
    }
}

/// Asks to type the VM id before removing the VM.
#[component]
fn RemoveDialog(
    vmid: u32,
    node: Signal<Option<String>>,
    selection: RwSignal<Selection>,
    #[prop(into)] on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let typed = RwSignal::new(String::new());
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let confirmed = move || typed.with(|t| t.trim() == vmid.to_string());

    let remove = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let Some(node) = node.get_untracked() else {
            return;
        };
        if !confirmed() {
            return;
        }
        sending.set(true);
        leptos::task::spawn_local(async move {
            match api.delete_vm(&node, vmid).await {
                Ok(_upid) => {
                    on_close.run(());
                    selection.set(Selection::Node(node));
                }
                Err(e) => {
                    error.set(Some(format!("Remove failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };

    view! {
        <Dialog title=format!("Remove VM {vmid}") testid="vm-remove-dialog" on_close>
            <form class="confirm-form" on:submit=remove>
                <p>
                    "This removes the VM's configuration for good. Type the VM ID "
                    <strong>{vmid}</strong>
                    " to confirm."
                </p>
                <label for="vm-remove-input">"VM ID"</label>
                <input
                    id="vm-remove-input"
                    type="text"
                    inputmode="numeric"
                    autocomplete="off"
                    data-testid="vm-remove-input"
                    bind:value=typed
                />
                {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button danger"
                        data-testid="vm-remove-confirm"
                        disabled=move || !confirmed() || sending.get()
                    >
                        "Remove"
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

/// Confirms making the VM a template (there is no way back).
#[component]
fn TemplateDialog(
    vmid: u32,
    node: Signal<Option<String>>,
    #[prop(into)] on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let confirm = move |_| {
        let Some(node) = node.get_untracked() else {
            return;
        };
        sending.set(true);
        leptos::task::spawn_local(async move {
            match api.make_template(&node, vmid).await {
                Ok(_upid) => on_close.run(()),
                Err(e) => {
                    error.set(Some(format!("Template failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title=format!("Make VM {vmid} a template") testid="vm-template-dialog" on_close>
            <p>
                "A template is cloned (for instance by a lab, once per student) but never started again. There is no way back."
            </p>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <div class="dialog-buttons">
                <button type="button" class="button" on:click=move |_| on_close.run(())>
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="button primary"
                    data-testid="vm-template-confirm"
                    disabled=move || sending.get()
                    on:click=confirm
                >
                    "Make template"
                </button>
            </div>
        </Dialog>
    }
}
