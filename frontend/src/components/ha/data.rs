//! The data of the HA page, loaded together and reloaded when the cluster changes (the event
//! stream announces every HA transition) or after an edit.

use kiln_api_types::ha::{HaManagerStatus, HaResource, HaRule, HaStatusEntry};
use leptos::prelude::*;

use crate::api::{Api, ApiError};
use crate::events::ClusterData;

/// Everything the HA page shows, shared with its cards and dialogs through context.
#[derive(Clone, Copy)]
pub struct HaData {
    /// `GET /cluster/ha/resources`.
    pub resources: RwSignal<Vec<HaResource>>,
    /// `GET /cluster/ha/rules`.
    pub rules: RwSignal<Vec<HaRule>>,
    /// `GET /cluster/ha/status/current`.
    pub status: RwSignal<Vec<HaStatusEntry>>,
    /// `GET /cluster/ha/status/manager_status`.
    pub manager: RwSignal<Option<HaManagerStatus>>,
    /// Why loading failed, if it did.
    pub error: RwSignal<Option<String>>,
    /// Bumped to load again.
    reload: RwSignal<u64>,
}

impl HaData {
    /// Creates the signals, provides them as context and loads them (again whenever the
    /// cluster's resources change or [`HaData::reload`] is called).
    pub fn provide() -> Self {
        let data = HaData {
            resources: RwSignal::new(Vec::new()),
            rules: RwSignal::new(Vec::new()),
            status: RwSignal::new(Vec::new()),
            manager: RwSignal::new(None),
            error: RwSignal::new(None),
            reload: RwSignal::new(0),
        };
        provide_context(data);
        let cluster = ClusterData::expect();
        let api = Api::expect();
        let picture = Memo::new(move |_| {
            cluster.resources.with(|r| {
                r.iter()
                    .map(|r| {
                        (
                            r.id.clone(),
                            r.node.clone(),
                            r.status.clone(),
                            r.hastate.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        });
        Effect::new(move || {
            picture.with(|_| ());
            data.reload.track();
            leptos::task::spawn_local(async move {
                if let Err(e) = data.load(api).await {
                    data.error
                        .set(Some(format!("Could not load the HA configuration: {e}")));
                }
            });
        });
        data
    }

    /// The page's data from context.
    pub fn expect() -> Self {
        expect_context()
    }

    /// Loads everything again (after an edit).
    pub fn reload(&self) {
        self.reload.update(|n| *n += 1);
    }

    async fn load(self, api: Api) -> Result<(), ApiError> {
        let resources = api.ha_resources().await?;
        let rules = api.ha_rules().await?;
        let status = api.ha_status().await?;
        let manager = api.ha_manager_status().await?;
        self.resources.set(resources);
        self.rules.set(rules);
        self.status.set(status);
        self.manager.set(Some(manager));
        self.error.set(None);
        Ok(())
    }

    /// The status line of resource `sid` (`service:<sid>`), if the server listed it.
    pub fn service(&self, sid: &str) -> Option<HaStatusEntry> {
        self.status.with(|s| {
            s.iter()
                .find(|e| e.kind == "service" && e.sid.as_deref() == Some(sid))
                .cloned()
        })
    }

    /// The sids of all HA resources (reactive).
    pub fn sids(&self) -> Vec<String> {
        self.resources
            .with(|r| r.iter().map(|r| r.sid.clone()).collect())
    }
}
