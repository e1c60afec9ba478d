//! Confirmation before an HA resource or rule is removed.

use leptos::prelude::*;

use super::data::HaData;
use crate::api::Api;
use crate::components::dialog::RemoveConfirm;

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
    let (title, explanation) = (what.title(), what.explanation());
    let remove = move || {
        let what = what.clone();
        async move {
            match &what {
                Removal::Resource(sid) => api.delete_ha_resource(sid).await,
                Removal::Rule(id) => api.delete_ha_rule(id).await,
            }
            .map_err(|e| e.to_string())
        }
    };
    view! {
        <RemoveConfirm
            title
            explanation
            testid="ha-remove-dialog"
            prefix="ha-remove"
            remove
            on_done=move |()| data.reload()
            on_close
        />
    }
}
