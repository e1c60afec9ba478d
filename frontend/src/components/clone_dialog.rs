//! The Clone dialog (Proxmox's "Clone"): a new VM from this one — usually a template — with
//! a free id (proposed by the server), a name, the node and the pool it goes to. The clone
//! runs as a task (`qmclone`), shown in the task viewer.

use std::collections::BTreeMap;

use kiln_api_types::access::PoolEntry;
use kiln_api_types::{NodeState, VmCloneRequest};
use leptos::prelude::*;

use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{split_refusal, FieldError, TextField};
use crate::components::tasks::TaskViewer;
use crate::events::{node_state, ClusterData};
use crate::vm::{check_name, parse_vmid};

fn check_newid(text: &str) -> Result<(), String> {
    parse_vmid(text).map(|_| ())
}

fn check_optional_name(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Ok(())
    } else {
        check_name(text.trim())
    }
}

/// The request the form describes, or what is wrong with it.
pub fn clone_request(
    newid: &str,
    name: &str,
    source_node: &str,
    target: &str,
    pool: &str,
) -> Result<VmCloneRequest, String> {
    let newid = parse_vmid(newid)?;
    check_optional_name(name)?;
    let name = name.trim();
    Ok(VmCloneRequest {
        newid,
        name: (!name.is_empty()).then(|| name.to_owned()),
        target: (!target.is_empty() && target != source_node).then(|| target.to_owned()),
        pool: (!pool.is_empty()).then(|| pool.to_owned()),
        ..Default::default()
    })
}

/// The dialog.
#[component]
pub fn CloneDialog(
    /// The VM to clone.
    vmid: u32,
    /// Its node.
    node: String,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let viewer = TaskViewer::expect();
    let newid = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let target = RwSignal::new(node.clone());
    let pool = RwSignal::new(String::new());
    let pools = RwSignal::new(Vec::<PoolEntry>::new());
    let errors = RwSignal::new(BTreeMap::<String, String>::new());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);

    Effect::new(move || {
        leptos::task::spawn_local(async move {
            match api.next_vmid().await {
                Ok(id) if newid.with_untracked(String::is_empty) => newid.set(id.to_string()),
                Ok(_) => {}
                Err(e) => general.set(Some(format!("Could not get a free VM ID: {e}"))),
            }
            // Pools the user may see; an empty list just leaves "no pool".
            if let Ok(list) = api.get::<Vec<PoolEntry>>("pools").await {
                pools.set(list);
            }
        });
    });
    let nodes = Memo::new(move |_| {
        data.nodes()
            .into_iter()
            .map(|r| {
                let online = node_state(&r) == NodeState::Online;
                (r.node, online)
            })
            .collect::<Vec<_>>()
    });

    let source = node.clone();
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let request = match clone_request(
            &newid.get_untracked(),
            &name.get_untracked(),
            &source,
            &target.get_untracked(),
            &pool.get_untracked(),
        ) {
            Ok(r) => r,
            Err(e) => {
                general.set(Some(e));
                return;
            }
        };
        let path = format!("nodes/{}/qemu/{vmid}/clone", segment(&source));
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            match api.post_json::<String, _>(&path, &request).await {
                Ok(upid) => {
                    on_close.run(());
                    viewer.show_upid(&upid);
                }
                Err(e) => {
                    let (fields, line) =
                        split_refusal(e, &["newid", "name", "target", "pool"], "The clone");
                    errors.set(fields);
                    general.set(line);
                    sending.set(false);
                }
            }
        });
    };

    let node_options = move || {
        nodes
            .get()
            .into_iter()
            .map(|(n, online)| {
                let label = if online {
                    n.clone()
                } else {
                    format!("{n} (offline)")
                };
                view! { <option value=n.clone() disabled=!online>{label}</option> }
            })
            .collect_view()
    };
    let pool_options = move || {
        pools
            .get()
            .into_iter()
            .map(|p| view! { <option value=p.poolid.clone()>{p.poolid.clone()}</option> })
            .collect_view()
    };

    view! {
        <Dialog title=format!("Clone VM {vmid}") testid="clone-dialog" on_close>
            <form class="confirm-form" on:submit=submit>
                <div class="form-grid">
                    <TextField
                        label="New VM ID"
                        name="newid"
                        testid="clone-newid"
                        value=newid
                        errors
                        check=check_newid
                    />
                    <TextField
                        label="Name"
                        name="name"
                        testid="clone-name"
                        value=name
                        errors
                        check=check_optional_name
                        placeholder="Copy-of-VM-…"
                    />
                    <label for="clone-target">"Target node"</label>
                    <div class="field">
                        <select
                            id="clone-target"
                            data-testid="clone-target"
                            prop:value=move || target.get()
                            on:change=move |ev| {
                                errors.update(|e| {
                                    e.remove("target");
                                });
                                target.set(event_target_value(&ev));
                            }
                        >
                            {node_options}
                        </select>
                        <FieldError
                            testid="clone-target-error".to_owned()
                            message=Signal::derive(move || errors.with(|e| e.get("target").cloned()))
                        />
                    </div>
                    <label for="clone-pool">"Pool"</label>
                    <div class="field">
                        <select
                            id="clone-pool"
                            data-testid="clone-pool"
                            prop:value=move || pool.get()
                            on:change=move |ev| {
                                errors.update(|e| {
                                    e.remove("pool");
                                });
                                pool.set(event_target_value(&ev));
                            }
                        >
                            <option value="">"(none)"</option>
                            {pool_options}
                        </select>
                        <FieldError
                            testid="clone-pool-error".to_owned()
                            message=Signal::derive(move || errors.with(|e| e.get("pool").cloned()))
                        />
                    </div>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="clone-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="clone-confirm"
                        disabled=move || {
                            sending.get()
                                || newid.with(|t| check_newid(t).is_err())
                                || name.with(|t| check_optional_name(t).is_err())
                        }
                    >
                        "Clone"
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_only_what_differs_from_the_defaults() {
        let r = clone_request("201", "", "n1", "n1", "").expect("valid");
        assert_eq!(r.newid, 201);
        assert_eq!((r.name, r.target, r.pool), (None, None, None));
        let r = clone_request(" 202 ", " web-2 ", "n1", "n2", "lab").expect("valid");
        assert_eq!(r.name.as_deref(), Some("web-2"));
        assert_eq!(r.target.as_deref(), Some("n2"));
        assert_eq!(r.pool.as_deref(), Some("lab"));
        assert!(clone_request("abc", "", "n1", "n1", "").is_err());
        assert!(clone_request("5", "", "n1", "n1", "").is_err(), "below 100");
        assert!(clone_request("203", "bad name!", "n1", "n1", "").is_err());
    }
}
