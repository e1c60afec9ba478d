//! The rules editor: a node-affinity rule (its resources, the nodes with their priorities,
//! strict or not) or a resource-affinity rule (its resources kept together or apart). The
//! server checks every rule against the others and refuses conflicts; its message shows next
//! to the resources and nodes, and the form keeps everything typed.

use std::collections::BTreeMap;

use kiln_api_types::ha::{HaRule, HaRuleRequest};
use leptos::prelude::*;

use super::data::HaData;
use super::form::{
    check_rule_id, node_choices, nodes_param, resources_param, split_refusal, FieldError,
    NodeChoice,
};
use crate::api::Api;
use crate::components::dialog::Dialog;
use crate::events::ClusterData;

const NODE_AFFINITY: &str = "node-affinity";
const RESOURCE_AFFINITY: &str = "resource-affinity";
/// Fields the dialog shows (the server's errors for others go to the general line).
/// `rule` is where the server puts conflicts with other rules (the id itself is checked
/// here before sending).
const FIELDS: [&str; 8] = [
    "rule",
    "type",
    "resources",
    "nodes",
    "strict",
    "affinity",
    "disable",
    "comment",
];

fn error_id(field: &str) -> String {
    format!("ha-rule-error-{field}")
}

/// The dialog: a new rule when `existing` is `None`.
#[component]
pub fn RuleDialog(
    /// The rule to edit.
    existing: Option<HaRule>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = HaData::expect();
    let cluster = ClusterData::expect();
    let is_new = existing.is_none();
    let title = match &existing {
        Some(r) => format!("Edit rule {}", r.rule),
        None => "Add: HA rule".to_owned(),
    };
    let start = existing.clone();
    let id = RwSignal::new(start.as_ref().map(|r| r.rule.clone()).unwrap_or_default());
    let kind = RwSignal::new(
        start
            .as_ref()
            .map_or(NODE_AFFINITY.to_owned(), |r| r.kind.clone()),
    );
    let chosen = RwSignal::new(
        start
            .as_ref()
            .map(|r| {
                r.resources
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    let cluster_nodes: Vec<String> = cluster
        .resources
        .with_untracked(|r| crate::events::nodes_sorted(r))
        .into_iter()
        .map(|n| n.node)
        .collect();
    let rows = RwSignal::new(node_choices(
        &cluster_nodes,
        start
            .as_ref()
            .and_then(|r| r.nodes.as_deref())
            .unwrap_or(""),
    ));
    let strict = RwSignal::new(start.as_ref().is_some_and(|r| r.strict == Some(1)));
    let affinity = RwSignal::new(
        start
            .as_ref()
            .and_then(|r| r.affinity.clone())
            .unwrap_or_else(|| "negative".to_owned()),
    );
    let enabled = RwSignal::new(start.as_ref().is_none_or(|r| r.disable == 0));
    let comment = RwSignal::new(
        start
            .as_ref()
            .map(|r| r.comment.clone())
            .unwrap_or_default(),
    );
    let server_errors = RwSignal::new(BTreeMap::<String, String>::new());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let tried = RwSignal::new(false);

    let node_kind = move || kind.with(|k| k == NODE_AFFINITY);
    let server_error = move |field: &str| server_errors.with(|e| e.get(field).cloned());
    // A change anywhere may resolve a conflict, so a conflict message goes with any edit of
    // the resources, nodes, strictness, affinity or enabled state; other fields lose theirs.
    let edited = move |field: &'static str| {
        server_errors.update(|e| {
            e.remove(field);
            if matches!(
                field,
                "resources" | "nodes" | "strict" | "affinity" | "disable"
            ) {
                e.remove("rule");
            }
        });
    };
    let id_error = Memo::new(move |_| {
        if !is_new {
            return None;
        }
        let text = id.get();
        if text.is_empty() && !tried.get() {
            return None;
        }
        check_rule_id(&text).err()
    });
    let resources_error = Memo::new(move |_| {
        let at_least = if node_kind() { 1 } else { 2 };
        let local = resources_param(&chosen.get(), at_least)
            .err()
            .filter(|_| tried.get() || chosen.with(|c| !c.is_empty()));
        local.or_else(|| server_error("resources"))
    });
    let nodes_error = Memo::new(move |_| {
        if !node_kind() {
            return None;
        }
        let local = nodes_param(&rows.get())
            .err()
            .filter(|_| tried.get() || rows.with(|r| r.iter().any(|r| r.chosen)));
        local.or_else(|| server_error("nodes"))
    });
    let valid = move || {
        (!is_new || check_rule_id(&id.get()).is_ok())
            && resources_param(&chosen.get(), if node_kind() { 1 } else { 2 }).is_ok()
            && (!node_kind() || nodes_param(&rows.get()).is_ok())
    };

    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        tried.set(true);
        if !valid() || sending.get_untracked() {
            return;
        }
        let node = node_kind();
        let at_least = if node { 1 } else { 2 };
        let Ok(resources) = resources_param(&chosen.get_untracked(), at_least) else {
            return;
        };
        let nodes = if node {
            match nodes_param(&rows.get_untracked()) {
                Ok(n) => Some(n),
                Err(_) => return,
            }
        } else {
            None
        };
        let rule_id = id.get_untracked().trim().to_owned();
        let request = HaRuleRequest {
            rule: is_new.then(|| rule_id.clone()),
            kind: is_new.then(|| kind.get_untracked()),
            resources: Some(resources),
            nodes,
            strict: node.then(|| u8::from(strict.get_untracked())),
            affinity: (!node).then(|| affinity.get_untracked()),
            disable: Some(u8::from(!enabled.get_untracked())),
            comment: Some(comment.get_untracked()),
        };
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            let result = if is_new {
                api.create_ha_rule(&request).await
            } else {
                api.update_ha_rule(&rule_id, &request).await
            };
            match result {
                Ok(()) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) = split_refusal(e, &FIELDS, "Saving the rule");
                    server_errors.set(fields);
                    general.set(line);
                    sending.set(false);
                }
            }
        });
    };

    let resource_boxes = move || {
        data.sids()
            .into_iter()
            .map(|sid| {
                let mine = sid.clone();
                let toggled = sid.clone();
                let label = super::resources::vmid_of(&sid)
                    .and_then(|id| cluster.vm(id))
                    .and_then(|v| v.name)
                    .map_or_else(|| sid.clone(), |n| format!("{sid} ({n})"));
                view! {
                    <label class="checkbox">
                        <input
                            type="checkbox"
                            data-testid="ha-rule-resource"
                            data-sid=sid.clone()
                            prop:checked=move || chosen.with(|c| c.contains(&mine))
                            on:change=move |ev| {
                                edited("resources");
                                let on = event_target_checked(&ev);
                                chosen.update(|c| {
                                    c.retain(|s| *s != toggled);
                                    if on {
                                        c.push(toggled.clone());
                                    }
                                });
                            }
                        />
                        {label}
                    </label>
                }
            })
            .collect_view()
    };

    let node_row = move |choice: NodeChoice| {
        let name = choice.node.clone();
        let n1 = name.clone();
        let n2 = name.clone();
        let n3 = name.clone();
        let n4 = name.clone();
        let n5 = name.clone();
        let pick = move |node: &str, f: &dyn Fn(&NodeChoice) -> bool| {
            rows.with(|r| r.iter().find(|c| c.node == node).is_some_and(f))
        };
        view! {
            <tr data-testid="ha-rule-node" data-node=name.clone()>
                <td>
                    <label class="checkbox">
                        <input
                            type="checkbox"
                            data-testid="ha-rule-node-use"
                            data-node=name.clone()
                            prop:checked=move || pick(&n1, &|c: &NodeChoice| c.chosen)
                            on:change=move |ev| {
                                edited("nodes");
                                let on = event_target_checked(&ev);
                                rows.update(|r| {
                                    if let Some(c) = r.iter_mut().find(|c| c.node == n2) {
                                        c.chosen = on;
                                    }
                                });
                            }
                        />
                        {name.clone()}
                    </label>
                </td>
                <td>
                    <input
                        type="number"
                        min="0"
                        max="1000"
                        class="priority"
                        aria-label=format!("Priority of {name}")
                        data-testid="ha-rule-node-priority"
                        data-node=name.clone()
                        disabled=move || !pick(&n3, &|c: &NodeChoice| c.chosen)
                        prop:value=move || {
                            rows.with(|r| {
                                r.iter()
                                    .find(|c| c.node == n4)
                                    .map(|c| c.priority.clone())
                                    .unwrap_or_default()
                            })
                        }
                        on:input=move |ev| {
                            edited("nodes");
                            let text = event_target_value(&ev);
                            rows.update(|r| {
                                if let Some(c) = r.iter_mut().find(|c| c.node == n5) {
                                    c.priority = text;
                                }
                            });
                        }
                    />
                </td>
            </tr>
        }
    };

    view! {
        <Dialog title=title testid="ha-rule-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <label for="ha-rule-id">"Rule ID"</label>
                    <div class="field">
                        <input
                            id="ha-rule-id"
                            type="text"
                            autocomplete="off"
                            placeholder="e.g. prefer-n1"
                            data-testid="ha-rule-id"
                            disabled=!is_new
                            prop:value=move || id.get()
                            on:input=move |ev| {
                                edited("rule");
                                id.set(event_target_value(&ev));
                            }
                        />
                        <FieldError testid=error_id("id") message=id_error/>
                    </div>

                    <label for="ha-rule-type">"Type"</label>
                    <div class="field">
                        <select
                            id="ha-rule-type"
                            data-testid="ha-rule-type"
                            disabled=!is_new
                            prop:value=move || kind.get()
                            on:change=move |ev| {
                                edited("type");
                                edited("resources");
                                kind.set(event_target_value(&ev));
                            }
                        >
                            <option value=NODE_AFFINITY selected=node_kind>
                                "Node affinity: run on these nodes, by priority"
                            </option>
                            <option value=RESOURCE_AFFINITY selected=move || !node_kind()>
                                "Resource affinity: keep resources together or apart"
                            </option>
                        </select>
                        <FieldError
                            testid=error_id("type")
                            message=Signal::derive(move || server_error("type"))
                        />
                    </div>

                    <span class="form-label">"Resources"</span>
                    <div class="field">
                        <div class="choices" role="group" aria-label="Resources">
                            {resource_boxes}
                        </div>
                        <FieldError testid=error_id("resources") message=resources_error/>
                    </div>

                    <Show when=node_kind>
                        <span class="form-label">"Nodes"</span>
                        <div class="field">
                            <table class="grid node-priorities">
                                <thead>
                                    <tr>
                                        <th scope="col">"Node"</th>
                                        <th scope="col">"Priority (higher first)"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    <For each=move || rows.get() key=|c| c.node.clone() children=node_row/>
                                </tbody>
                            </table>
                            <FieldError testid=error_id("nodes") message=nodes_error/>
                        </div>

                        <span class="form-label">"Strict"</span>
                        <div class="field">
                            <label class="checkbox">
                                <input
                                    type="checkbox"
                                    data-testid="ha-rule-strict"
                                    prop:checked=move || strict.get()
                                    on:change=move |ev| {
                                        edited("strict");
                                        strict.set(event_target_checked(&ev));
                                    }
                                />
                                "Only these nodes (otherwise any node when none of them can)"
                            </label>
                            <FieldError
                                testid=error_id("strict")
                                message=Signal::derive(move || server_error("strict"))
                            />
                        </div>
                    </Show>

                    <Show when=move || !node_kind()>
                        <label for="ha-rule-affinity">"Affinity"</label>
                        <div class="field">
                            <select
                                id="ha-rule-affinity"
                                data-testid="ha-rule-affinity"
                                prop:value=move || affinity.get()
                                on:change=move |ev| {
                                    edited("affinity");
                                    affinity.set(event_target_value(&ev));
                                }
                            >
                                <option value="positive" selected=move || affinity.get() == "positive">
                                    "Keep together (same node)"
                                </option>
                                <option value="negative" selected=move || affinity.get() == "negative">
                                    "Keep apart (different nodes)"
                                </option>
                            </select>
                            <FieldError
                                testid=error_id("affinity")
                                message=Signal::derive(move || server_error("affinity"))
                            />
                        </div>
                    </Show>

                    {move || {
                        server_error("rule")
                            .map(|m| {
                                view! {
                                    <span class="form-label">"Conflict"</span>
                                    <div class="notice error conflict" role="alert" data-testid=error_id("rule")>
                                        {m}
                                    </div>
                                }
                            })
                    }}

                    <span class="form-label">"Enabled"</span>
                    <div class="field">
                        <label class="checkbox">
                            <input
                                type="checkbox"
                                data-testid="ha-rule-enabled"
                                prop:checked=move || enabled.get()
                                on:change=move |ev| {
                                    edited("disable");
                                    enabled.set(event_target_checked(&ev));
                                }
                            />
                            "The rule applies"
                        </label>
                        <FieldError
                            testid=error_id("disable")
                            message=Signal::derive(move || server_error("disable"))
                        />
                    </div>

                    <label for="ha-rule-comment">"Comment"</label>
                    <div class="field">
                        <input
                            id="ha-rule-comment"
                            type="text"
                            autocomplete="off"
                            data-testid="ha-rule-comment"
                            prop:value=move || comment.get()
                            on:input=move |ev| {
                                edited("comment");
                                comment.set(event_target_value(&ev));
                            }
                        />
                        <FieldError
                            testid=error_id("comment")
                            message=Signal::derive(move || server_error("comment"))
                        />
                    </div>
                </div>
                {move || {
                    general
                        .get()
                        .map(|e| view! { <div class="notice error" role="alert" data-testid="ha-rule-error">{e}</div> })
                }}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="ha-rule-submit"
                        disabled=move || sending.get() || (tried.get() && !valid())
                    >
                        {if is_new { "Add" } else { "Save" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
