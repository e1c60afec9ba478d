//! The "Create VM" wizard: node, VM id, name, image, cores, memory and "start after created",
//! checked as the user types; the server's per-field errors appear next to the fields.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_api_types::{ImageEntry, NodeState, VmCreateRequest};
use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::components::dialog::Dialog;
use crate::components::tasks::TaskViewer;
use crate::components::tree::Selection;
use crate::events::{node_state, ClusterData};
use crate::vm::{self, DEFAULT_IMAGE, DEFAULT_MEMORY_MIB, MIN_MEMORY_MIB};

/// Opens the wizard from anywhere in the console (top bar, node and datacenter views).
#[derive(Clone, Copy)]
pub struct CreateVm {
    /// `Some(preferred node)` while the wizard is open.
    open: RwSignal<Option<Option<String>>>,
}

impl CreateVm {
    /// Creates a closed wizard and provides it as context.
    pub fn provide() -> Self {
        let launcher = CreateVm {
            open: RwSignal::new(None),
        };
        provide_context(launcher);
        launcher
    }

    /// The launcher provided by [`CreateVm::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// Opens the wizard, with `node` preselected if given.
    pub fn open(&self, node: Option<String>) {
        self.open.set(Some(node));
    }
}

/// The wizard, rendered while it is open.
#[component]
pub fn CreateVmHost(
    /// Selected to the new VM after its creation.
    selection: RwSignal<Selection>,
) -> impl IntoView {
    let launcher = CreateVm::expect();
    move || {
        launcher.open.get().map(|node| {
            view! { <CreateVmDialog node selection on_close=move |()| launcher.open.set(None)/> }
        })
    }
}

/// A `data-testid` for a field's error message.
fn error_id(field: &str) -> String {
    format!("wizard-error-{field}")
}

/// The error line under a field, when it has one.
#[component]
fn FieldError(field: &'static str, #[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|m| {
            view! {
                <span class="field-error" role="alert" data-testid=error_id(field)>
                    {m}
                </span>
            }
        })
    }
}

#[component]
fn CreateVmDialog(
    node: Option<String>,
    selection: RwSignal<Selection>,
    #[prop(into)] on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let viewer = TaskViewer::expect();

    let online = Memo::new(move |_| {
        data.nodes()
            .into_iter()
            .filter(|r| node_state(r) == NodeState::Online)
            .collect::<Vec<_>>()
    });
    let first_online = online.get_untracked().first().map(|r| r.node.clone());
    let node = RwSignal::new(node.or(first_online).unwrap_or_default());
    let vmid = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let image = RwSignal::new(String::new());
    let cores = RwSignal::new("1".to_owned());
    let memory = RwSignal::new(DEFAULT_MEMORY_MIB.to_string());
    let start = RwSignal::new(true);
    let images = RwSignal::new(Vec::<ImageEntry>::new());
    let images_error = RwSignal::new(None::<String>);
    // The server's verdict on a VM id: (the id checked, its error if taken).
    let vmid_verdict = RwSignal::new(None::<(u32, Option<String>)>);
    let server_errors = RwSignal::new(BTreeMap::<String, String>::new());
    let general_error = RwSignal::new(None::<String>);
    let submitting = RwSignal::new(false);
    let tried = RwSignal::new(false);

    let node_entry = Memo::new(move |_| node.with(|n| data.node(n)));
    let max_cores = Memo::new(move |_| {
        node_entry
            .with(|r| r.as_ref().and_then(|r| r.maxcpu))
            .unwrap_or(1)
            .max(1)
    });
    let free_mib =
        Memo::new(move |_| node_entry.with(|r| r.as_ref().and_then(vm::free_memory_mib)));

    // The first free VM id.
    Effect::new(move || {
        leptos::task::spawn_local(async move {
            match api.next_vmid().await {
                Ok(id) => {
                    if vmid.with_untracked(String::is_empty) {
                        vmid.set(id.to_string());
                    }
                }
                Err(e) => general_error.set(Some(format!("Could not get a free VM ID: {e}"))),
            }
        });
    });
    // The chosen node's images.
    Effect::new(move || {
        let chosen = node.get();
        if chosen.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            match api.node_images(&chosen).await {
                Ok(list) => {
                    let keep = image.with_untracked(|i| list.iter().any(|e| e.name == *i));
                    if !keep {
                        let pick = list
                            .iter()
                            .find(|e| e.name == DEFAULT_IMAGE)
                            .or(list.first())
                            .map(|e| e.name.clone())
                            .unwrap_or_default();
                        image.set(pick);
                    }
                    images.set(list);
                    images_error.set(None);
                }
                Err(e) => {
                    images.set(Vec::new());
                    images_error.set(Some(format!("Could not list the images of {chosen}: {e}")));
                }
            }
        });
    });
    // Ask the server whether a well-formed VM id is free, once typing pauses.
    Effect::new(move || {
        let Ok(id) = vm::parse_vmid(&vmid.get()) else {
            return;
        };
        let check = move || {
            if vm::parse_vmid(&vmid.get_untracked()) != Ok(id) {
                return;
            }
            leptos::task::spawn_local(async move {
                let verdict = match api.check_vmid(id).await {
                    Ok(()) => None,
                    Err(ApiError::Params { errors, message }) => {
                        Some(errors.get("vmid").cloned().unwrap_or(message))
                    }
                    Err(ApiError::Server { message, .. }) => Some(message),
                    // Not knowing is no reason to block: the server checks again on submit.
                    Err(_) => return,
                };
                vmid_verdict.set(Some((id, verdict)));
            });
        };
        if let Ok(handle) = set_timeout_with_handle(check, Duration::from_millis(300)) {
            on_cleanup(move || handle.clear());
        }
    });

    // Field checks as the user types; the server's word on a field wins until it changes.
    let server_error = move |field: &'static str| server_errors.with(|e| e.get(field).cloned());
    let vmid_error = Memo::new(move |_| match vm::parse_vmid(&vmid.get()) {
        Err(e) => Some(e),
        Ok(id) => vmid_verdict
            .get()
            .and_then(|(checked, verdict)| if checked == id { verdict } else { None })
            .or_else(|| server_error("vmid")),
    });
    let name_error = Memo::new(move |_| {
        let text = name.get();
        let local = if text.is_empty() {
            tried.get().then(|| "Enter a name.".to_owned())
        } else {
            vm::check_name(&text).err()
        };
        local.or_else(|| server_error("name"))
    });
    let node_error = Memo::new(move |_| {
        if node.with(String::is_empty) {
            Some("No node is online.".to_owned())
        } else {
            server_error("node")
        }
    });
    let image_error = Memo::new(move |_| {
        if image.with(String::is_empty) && images_error.with(Option::is_none) {
            tried.get().then(|| "Choose an image.".to_owned())
        } else {
            server_error("image")
        }
    });
    let cores_error = Memo::new(move |_| {
        vm::parse_in_range(&cores.get(), 1, max_cores.get(), "")
            .err()
            .or_else(|| server_error("cores"))
    });
    let memory_error = Memo::new(move |_| {
        let max = free_mib.get().unwrap_or(u32::MAX);
        vm::parse_in_range(&memory.get(), MIN_MEMORY_MIB, max, " MiB")
            .err()
            .or_else(|| server_error("memory"))
    });
    let valid = move || {
        vmid_error.with(Option::is_none)
            && vm::check_name(&name.get()).is_ok()
            && node_error.with(Option::is_none)
            && !image.with(String::is_empty)
            && cores_error.with(Option::is_none)
            && memory_error.with(Option::is_none)
    };
    // A field the user edits again loses the server's complaint about it.
    let edited = move |field: &'static str| {
        server_errors.update(|e| {
            e.remove(field);
        });
    };

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        tried.set(true);
        if !valid() || submitting.get_untracked() {
            return;
        }
        let (Ok(id), Ok(cores_n), Ok(memory_mib)) = (
            vm::parse_vmid(&vmid.get_untracked()),
            cores.get_untracked().trim().parse::<u32>(),
            memory.get_untracked().trim().parse::<u32>(),
        ) else {
            return;
        };
        let target = node.get_untracked();
        let request = VmCreateRequest {
            vmid: id,
            name: Some(name.get_untracked()),
            cores: Some(cores_n),
            memory: Some(memory_mib),
            image: Some(image.get_untracked()),
            start: Some(u8::from(start.get_untracked())),
            ..VmCreateRequest::default()
        };
        submitting.set(true);
        general_error.set(None);
        leptos::task::spawn_local(async move {
            match api.create_vm(&target, &request).await {
                Ok(upid) => {
                    on_close.run(());
                    selection.set(Selection::Vm(id));
                    viewer.show_upid(&upid);
                }
                Err(ApiError::Params { message, errors }) => {
                    let known = ["vmid", "name", "node", "image", "cores", "memory"];
                    let other: Vec<String> = errors
                        .iter()
                        .filter(|(k, _)| !known.contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect();
                    general_error.set(Some(if other.is_empty() {
                        format!("{message}: see the marked fields.")
                    } else {
                        format!("{message}: {}", other.join("; "))
                    }));
                    server_errors.set(errors);
                    submitting.set(false);
                }
                Err(e) => {
                    general_error.set(Some(format!("Create failed: {e}")));
                    submitting.set(false);
                }
            }
        });
    };

    let free_text = move || match (
        free_mib.get(),
        node_entry.with(|r| r.as_ref().and_then(|r| r.maxmem)),
    ) {
        (Some(free), Some(total)) => format!(
            "{free} MiB free on {} (of {} MiB).",
            node.get(),
            total / (1024 * 1024)
        ),
        _ => "Free memory on this node is unknown.".to_owned(),
    };

    view! {
        <Dialog title="Create: Virtual Machine".to_owned() testid="create-vm-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <label for="wizard-node">"Node"</label>
                    <div class="field">
                        <select
                            id="wizard-node"
                            data-testid="wizard-node"
                            prop:value=move || node.get()
                            on:change=move |ev| {
                                edited("node");
                                node.set(event_target_value(&ev));
                            }
                        >
                            <For each=move || online.get() key=|r| r.node.clone() let:entry>
                                <option value=entry.node.clone() selected=entry.node == node.get_untracked()>
                                    {entry.node.clone()}
                                </option>
                            </For>
                        </select>
                        <FieldError field="node" message=node_error/>
                    </div>

                    <label for="wizard-vmid">"VM ID"</label>
                    <div class="field">
                        <input
                            id="wizard-vmid"
                            type="text"
                            inputmode="numeric"
                            autocomplete="off"
                            data-testid="wizard-vmid"
                            prop:value=move || vmid.get()
                            on:input=move |ev| {
                                edited("vmid");
                                vmid.set(event_target_value(&ev));
                            }
                        />
                        <FieldError field="vmid" message=vmid_error/>
                    </div>

                    <label for="wizard-name">"Name"</label>
                    <div class="field">
                        <input
                            id="wizard-name"
                            type="text"
                            autocomplete="off"
                            placeholder="e.g. web-1"
                            data-testid="wizard-name"
                            prop:value=move || name.get()
                            on:input=move |ev| {
                                edited("name");
                                name.set(event_target_value(&ev));
                            }
                        />
                        <FieldError field="name" message=name_error/>
                    </div>

                    <label for="wizard-image">"Image"</label>
                    <div class="field">
                        <select
                            id="wizard-image"
                            data-testid="wizard-image"
                            prop:value=move || image.get()
                            on:change=move |ev| {
                                edited("image");
                                image.set(event_target_value(&ev));
                            }
                        >
                            <For each=move || images.get() key=|i| i.name.clone() let:entry>
                                <option value=entry.name.clone() title=entry.description.clone()>
                                    {format!("{} ({})", entry.name, entry.kind)}
                                </option>
                            </For>
                        </select>
                        {move || images_error.get().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
                        <FieldError field="image" message=image_error/>
                    </div>

                    <label for="wizard-cores">"Cores"</label>
                    <div class="field">
                        <input
                            id="wizard-cores"
                            type="number"
                            min="1"
                            max=move || max_cores.get().to_string()
                            data-testid="wizard-cores"
                            prop:value=move || cores.get()
                            on:input=move |ev| {
                                edited("cores");
                                cores.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint">{move || format!("1 to {} (the node's CPUs).", max_cores.get())}</span>
                        <FieldError field="cores" message=cores_error/>
                    </div>

                    <label for="wizard-memory">"Memory (MiB)"</label>
                    <div class="field">
                        <input
                            id="wizard-memory"
                            type="number"
                            min=MIN_MEMORY_MIB.to_string()
                            max=move || free_mib.get().map(|m| m.to_string())
                            data-testid="wizard-memory"
                            prop:value=move || memory.get()
                            on:input=move |ev| {
                                edited("memory");
                                memory.set(event_target_value(&ev));
                            }
                        />
                        <span class="hint" data-testid="wizard-memory-free">{free_text}</span>
                        <FieldError field="memory" message=memory_error/>
                    </div>

                    <span class="form-label"></span>
                    <label class="checkbox">
                        <input type="checkbox" data-testid="wizard-start" bind:checked=start/>
                        "Start after created"
                    </label>
                </div>
                {move || {
                    general_error
                        .get()
                        .map(|e| view! { <div class="notice error" role="alert" data-testid="wizard-error">{e}</div> })
                }}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="wizard-submit"
                        disabled=move || submitting.get() || (tried.get() && !valid())
                    >
                        {move || if submitting.get() { "Creating…" } else { "Create" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
