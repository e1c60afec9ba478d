//! The Migrate dialog: where the VM may go (and why the other nodes may not), online for a
//! running VM, then the migration task in the task viewer.

use kiln_api_types::{MigratePreconditions, MigrateRequest};
use leptos::prelude::*;

use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::tasks::TaskViewer;

/// One target as the dialog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChoice {
    /// Node name.
    pub node: String,
    /// Why it cannot take the VM (`None`: it can).
    pub refused: Option<String>,
}

/// Allowed nodes first (in the server's order), then the refused ones with their reason.
pub fn choices(pre: &MigratePreconditions) -> Vec<TargetChoice> {
    pre.allowed_nodes
        .iter()
        .map(|n| TargetChoice {
            node: n.clone(),
            refused: None,
        })
        .chain(pre.not_allowed_nodes.iter().map(|(n, why)| TargetChoice {
            node: n.clone(),
            refused: Some(why.reason.clone()),
        }))
        .collect()
}

/// The dialog.
#[component]
pub fn MigrateDialog(
    /// The VM.
    vmid: u32,
    /// Its node now.
    node: String,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let viewer = TaskViewer::expect();
    let pre = RwSignal::new(None::<MigratePreconditions>);
    let target = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let path = format!("nodes/{}/qemu/{vmid}/migrate", segment(&node));

    {
        let path = path.clone();
        Effect::new(move || {
            let path = path.clone();
            leptos::task::spawn_local(async move {
                match api.get::<MigratePreconditions>(&path).await {
                    Ok(p) => {
                        if let Some(first) = p.allowed_nodes.first() {
                            target.set(first.clone());
                        }
                        pre.set(Some(p));
                    }
                    Err(e) => error.set(Some(format!("Cannot list targets: {e}"))),
                }
            });
        });
    }
    let running = move || pre.with(|p| p.as_ref().is_some_and(|p| p.running));

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let chosen = target.get_untracked();
        if chosen.is_empty() {
            return;
        }
        let request = MigrateRequest {
            target: chosen,
            online: Some(u8::from(running())),
            ..Default::default()
        };
        let path = path.clone();
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api.post_json::<String, _>(&path, &request).await {
                Ok(upid) => {
                    on_close.run(());
                    viewer.show_upid(&upid);
                }
                Err(e) => {
                    error.set(Some(format!("Migration refused: {e}")));
                    sending.set(false);
                }
            }
        });
    };

    let options = move || {
        pre.get()
            .map(|p| choices(&p))
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let label = match &c.refused {
                    None => c.node.clone(),
                    Some(why) => format!("{} — {why}", c.node),
                };
                view! {
                    <option value=c.node.clone() disabled=c.refused.is_some()>
                        {label}
                    </option>
                }
            })
            .collect_view()
    };
    let refusals = move || {
        pre.get().map(|p| {
            p.not_allowed_nodes
                .into_iter()
                .map(|(n, why)| {
                    let shown = n.clone();
                    view! {
                        <li data-testid="migrate-not-allowed" data-node=n>
                            <strong>{shown}</strong>": "{why.reason}
                        </li>
                    }
                })
                .collect_view()
        })
    };

    view! {
        <Dialog title=format!("Migrate VM {vmid}") testid="migrate-dialog" on_close>
            <form class="confirm-form" on:submit=submit>
                <p>"Source node: " <strong>{node.clone()}</strong></p>
                <label for="migrate-target">"Target node"</label>
                <select
                    id="migrate-target"
                    data-testid="migrate-target"
                    prop:value=move || target.get()
                    on:change=move |ev| target.set(event_target_value(&ev))
                >
                    {options}
                </select>
                <label class="checkbox">
                    <input
                        type="checkbox"
                        data-testid="migrate-online"
                        prop:checked=running
                        disabled=true
                    />
                    " Online (live migration; the VM keeps running)"
                </label>
                <ul class="migrate-refusals">{refusals}</ul>
                {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="migrate-confirm"
                        disabled=move || {
                            sending.get() || pre.with(Option::is_none) || target.with(String::is_empty)
                        }
                    >
                        "Migrate"
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api_types::MigrateNotAllowed;

    #[test]
    fn allowed_targets_come_first_then_the_refused_with_their_reason() {
        let pre = MigratePreconditions {
            running: true,
            allowed_nodes: vec!["n3".into()],
            not_allowed_nodes: [(
                "n2".to_string(),
                MigrateNotAllowed {
                    reason: "node n2 is offline".into(),
                },
            )]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            choices(&pre),
            vec![
                TargetChoice {
                    node: "n3".into(),
                    refused: None
                },
                TargetChoice {
                    node: "n2".into(),
                    refused: Some("node n2 is offline".into())
                },
            ]
        );
    }
}
