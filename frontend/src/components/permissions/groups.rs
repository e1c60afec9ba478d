//! Add a group, or edit its comment.

use kiln_api_types::access::{GroupCreate, GroupEntry, GroupUpdate};
use leptos::prelude::*;

use super::data::PermissionsData;
use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{check_name, split_refusal, FieldErrors, TextField};

/// The dialog: a new group when `existing` is `None`.
#[component]
pub fn GroupDialog(
    /// The group to edit.
    existing: Option<GroupEntry>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let is_new = existing.is_none();
    let start = existing.clone().unwrap_or_default();
    let title = match &existing {
        Some(g) => format!("Edit group {}", g.groupid),
        None => "Add: group".to_owned(),
    };
    let groupid = RwSignal::new(start.groupid.clone());
    let comment = RwSignal::new(start.comment.clone());
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let id = groupid.get_untracked().trim().to_owned();
        if let (true, Err(problem)) = (is_new, check_name(&id)) {
            general.set(Some(format!("Check the group ID: {problem}")));
            return;
        }
        sending.set(true);
        general.set(None);
        leptos::task::spawn_local(async move {
            let text = Some(comment.get_untracked());
            let result = if is_new {
                let request = GroupCreate {
                    groupid: id,
                    comment: text,
                };
                api.post_json::<serde_json::Value, _>("access/groups", &request)
                    .await
            } else {
                api.put_json::<serde_json::Value, _>(
                    &format!("access/groups/{}", segment(&id)),
                    &GroupUpdate { comment: text },
                )
                .await
            };
            match result {
                Ok(_) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    let (fields, line) =
                        split_refusal(e, &["groupid", "comment"], "Saving the group");
                    errors.set(fields);
                    general.set(line);
                }
            }
            sending.set(false);
        });
    };
    view! {
        <Dialog title=title testid="group-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <div class="form-grid">
                    <TextField label="Group ID" name="groupid" testid="group-id" value=groupid errors check=check_name placeholder="class1" disabled=!is_new/>
                    <TextField label="Comment" name="comment" testid="group-comment" value=comment errors/>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="group-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="button primary" data-testid="group-save" disabled=move || sending.get()>
                        {if is_new { "Add" } else { "Save" }}
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
