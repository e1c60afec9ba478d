//! Confirmation before an HA resource or rule is removed.

use leptos::prelude::*;

use super::data::HaData;
use crate::api::Api;
use crate::components::dialog::Dialog;

/// What to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// An HA resource (`vm:<vmid>`): the VM leaves HA and keeps running.
    Resource(String),
    /// A rule, by id.
    Rule(String),
}

impl Removal {
    fn title(&self) -> String {
        match self {
            Removal::Resource(sid) => format!("Remove {sid} from HA"),
            Removal::Rule(id) => format!("Remove rule {id}"),
        }
    }

    fn explanation(&self) -> String {
        match self {
            Removal::Resource(sid) => format!(
                "{sid} leaves high availability: the VM keeps running where it is, but \
                 nothing restarts or recovers it any more, and rules naming it no longer apply to it."
            ),
            Removal::Rule(id) => {
                format!("Rule {id} is removed; HA places its resources without it from now on.")
            }
        }
    }
}

/// The dialog; removes on confirmation, reloads the page's data and closes.
#[component]
pub fn RemoveDialog(
    /// What to remove.
    what: Removal,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = HaData::expect();
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let target = what.clone();
    let confirm = move |_| {
        let target = target.clone();
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let result = match &target {
                Removal::Resource(sid) => api.delete_ha_resource(sid).await,
                Removal::Rule(id) => api.delete_ha_rule(id).await,
            };
            match result {
                Ok(()) => {
                    data.reload();
                    on_close.run(());
                }
                Err(e) => {
                    error.set(Some(format!("Remove failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title=what.title() testid="ha-remove-dialog" on_close>
            <p>{what.explanation()}</p>
            {move || {
                error
                    .get()
                    .map(|e| view! { <div class="notice error" role="alert" data-testid="ha-remove-error">{e}</div> })
            }}
            <div class="dialog-buttons">
                <button type="button" class="button" on:click=move |_| on_close.run(())>
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="button danger"
                    data-testid="ha-remove-confirm"
                    disabled=move || sending.get()
                    on:click=confirm
                >
                    "Remove"
                </button>
            </div>
        </Dialog>
    }
}
