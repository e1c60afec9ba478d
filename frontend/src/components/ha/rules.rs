//! The HA rules card: node-affinity rules (nodes with priorities, strict or not) and
//! resource-affinity rules (keep together / keep apart), each with the conflicts the server
//! finds with the others; Add, Edit and Remove.

use kiln_api_types::ha::HaRule;
use leptos::prelude::*;

use super::data::HaData;
use super::remove_dialog::{Removal, RemoveDialog};
use super::rule_dialog::RuleDialog;

/// A rule's effect in words, for the table.
pub fn describe(rule: &HaRule) -> String {
    match rule.kind.as_str() {
        "node-affinity" => {
            let nodes = rule.nodes.clone().unwrap_or_default();
            if rule.strict == Some(1) {
                format!("only on {nodes} (strict)")
            } else {
                format!("prefer {nodes}")
            }
        }
        "resource-affinity" => match rule.affinity.as_deref() {
            Some("positive") => "keep together".to_owned(),
            Some("negative") => "keep apart".to_owned(),
            other => other.unwrap_or_default().to_owned(),
        },
        other => other.to_owned(),
    }
}

/// Which rule dialog is open.
#[derive(Debug, Clone, PartialEq)]
enum Editing {
    New,
    Existing(HaRule),
}

/// The card.
#[component]
pub fn RulesCard() -> impl IntoView {
    let data = HaData::expect();
    let editing = RwSignal::new(None::<Editing>);
    let removing = RwSignal::new(None::<String>);
    let row = move |r: HaRule| {
        let edit = r.clone();
        let remove = r.rule.clone();
        let conflicts = r.conflicts.join("; ");
        view! {
            <tr data-testid="ha-rule-row" data-rule=r.rule.clone()>
                <td>{r.rule.clone()}</td>
                <td>{r.kind.clone()}</td>
                <td>{r.resources.replace(',', ", ")}</td>
                <td data-testid="ha-rule-effect">{describe(&r)}</td>
                <td>{if r.disable == 1 { "no" } else { "yes" }}</td>
                <td class="wrap">{r.comment.clone()}</td>
                <td class="wrap field-error" data-testid="ha-rule-conflicts">{conflicts}</td>
                <td>
                    <div class="toolbar row-actions">
                        <button
                            type="button"
                            class="button"
                            data-testid="ha-rule-edit"
                            on:click=move |_| editing.set(Some(Editing::Existing(edit.clone())))
                        >
                            "Edit"
                        </button>
                        <button
                            type="button"
                            class="button danger"
                            data-testid="ha-rule-remove"
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
        <div class="card wide" data-testid="ha-rules-card">
            <div class="card-head">
                <h3>"Rules"</h3>
                <button
                    type="button"
                    class="button primary"
                    data-testid="ha-add-rule"
                    disabled=move || data.resources.with(Vec::is_empty)
                    title="Rules name HA resources: add a resource first"
                    on:click=move |_| editing.set(Some(Editing::New))
                >
                    "Add"
                </button>
            </div>
            <Show
                when=move || !data.rules.with(Vec::is_empty)
                fallback=|| {
                    view! {
                        <p class="muted">
                            "No rules: HA places resources by free memory and load. Add a "
                            "node-affinity rule to prefer (or require) nodes, or a "
                            "resource-affinity rule to keep resources together or apart."
                        </p>
                    }
                }
            >
                <table class="grid" data-testid="ha-rules-table">
                    <thead>
                        <tr>
                            <th scope="col">"Rule"</th>
                            <th scope="col">"Type"</th>
                            <th scope="col">"Resources"</th>
                            <th scope="col">"Effect"</th>
                            <th scope="col">"Enabled"</th>
                            <th scope="col">"Comment"</th>
                            <th scope="col">"Conflicts"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || data.rules.get() key=|r| format!("{r:?}") children=row/>
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
                        view! { <RuleDialog existing on_close=move |()| editing.set(None)/> }
                    })
            }}
            {move || {
                removing
                    .get()
                    .map(|id| {
                        view! { <RemoveDialog what=Removal::Rule(id) on_close=move |()| removing.set(None)/> }
                    })
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str, nodes: Option<&str>, strict: Option<u8>, affinity: Option<&str>) -> HaRule {
        HaRule {
            rule: "r".into(),
            kind: kind.into(),
            resources: "vm:100,vm:101".into(),
            nodes: nodes.map(Into::into),
            strict,
            affinity: affinity.map(Into::into),
            disable: 0,
            comment: String::new(),
            conflicts: Vec::new(),
        }
    }

    #[test]
    fn rules_are_described_in_words() {
        assert_eq!(
            describe(&rule("node-affinity", Some("n1:2,n2:1"), Some(0), None)),
            "prefer n1:2,n2:1"
        );
        assert_eq!(
            describe(&rule("node-affinity", Some("n1:2"), Some(1), None)),
            "only on n1:2 (strict)"
        );
        assert_eq!(
            describe(&rule("resource-affinity", None, None, Some("negative"))),
            "keep apart"
        );
        assert_eq!(
            describe(&rule("resource-affinity", None, None, Some("positive"))),
            "keep together"
        );
    }
}
