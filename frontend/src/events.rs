//! Live cluster data: the picture of nodes and tasks the whole console renders from, kept
//! current by the server-sent events at `/api2/kiln/events`.
//!
//! [`ClusterData`] holds the latest picture in signals. [`connect`] (browser only) loads it from
//! the REST API, opens an `EventSource`, replaces the picture on every event, and reconnects
//! with exponential backoff after errors. When the stream fails because the session ended, the
//! API's 401 sends the UI back to the login page instead. The stream closes when the console
//! is left (logout).

use kiln_api_types::{ClusterEvent, ClusterResource, NodeState, TaskSummary};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::banner::Banner;

/// Where the server publishes [`ClusterEvent`]s.
pub const EVENTS_URL: &str = "/api2/kiln/events";

/// State of the live event stream, shown in the top bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Opening the stream for the first time.
    Connecting,
    /// Events arrive.
    Live,
    /// The stream broke; a new attempt is scheduled.
    Reconnecting,
}

impl LinkState {
    /// Short label for the top bar.
    pub fn label(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting…",
            LinkState::Live => "live",
            LinkState::Reconnecting => "reconnecting…",
        }
    }

    /// CSS class / test hook value.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Live => "live",
            LinkState::Reconnecting => "reconnecting",
        }
    }
}

/// The latest picture of the cluster, shared through context by the console.
#[derive(Clone, Copy)]
pub struct ClusterData {
    /// All cluster resources (nodes for now), as `GET /cluster/resources` returns them.
    pub resources: RwSignal<Vec<ClusterResource>>,
    /// Recent tasks, newest first.
    pub tasks: RwSignal<Vec<TaskSummary>>,
    /// Whether a first picture has arrived.
    pub loaded: RwSignal<bool>,
    /// State of the event stream.
    pub link: RwSignal<LinkState>,
}

impl ClusterData {
    /// Creates an empty picture and provides it as context.
    pub fn provide() -> Self {
        let data = ClusterData {
            resources: RwSignal::new(Vec::new()),
            tasks: RwSignal::new(Vec::new()),
            loaded: RwSignal::new(false),
            link: RwSignal::new(LinkState::Connecting),
        };
        provide_context(data);
        data
    }

    /// The picture provided by [`ClusterData::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// Replaces the picture with an event's (or the REST API's) content.
    pub fn apply(&self, event: ClusterEvent) {
        let mut tasks = event.tasks;
        sort_newest_first(&mut tasks);
        self.resources.set(event.resources);
        self.tasks.set(tasks);
        self.loaded.set(true);
    }

    /// The nodes, sorted by name (reactive).
    pub fn nodes(&self) -> Vec<ClusterResource> {
        self.resources.with(|all| nodes_sorted(all))
    }

    /// One node's resource entry, if the cluster knows the node (reactive).
    pub fn node(&self, name: &str) -> Option<ClusterResource> {
        self.resources
            .with(|all| all.iter().find(|r| is_node(r) && r.node == name).cloned())
    }

    /// One VM's resource entry, if the cluster knows the VM (reactive).
    pub fn vm(&self, vmid: u32) -> Option<ClusterResource> {
        self.resources.with(|all| {
            all.iter()
                .find(|r| is_vm(r) && r.vmid == Some(vmid))
                .cloned()
        })
    }

    /// The VMs placed on `node`, sorted by VM id (reactive).
    pub fn vms_on(&self, node: &str) -> Vec<ClusterResource> {
        self.resources.with(|all| vms_on(all, node))
    }
}

/// Whether a resource entry is a node.
pub fn is_node(resource: &ClusterResource) -> bool {
    resource.kind == "node"
}

/// Whether a resource entry is a virtual machine.
pub fn is_vm(resource: &ClusterResource) -> bool {
    resource.kind == "qemu" && resource.vmid.is_some()
}

/// The VM entries of `resources` placed on `node`, sorted by VM id.
pub fn vms_on(resources: &[ClusterResource], node: &str) -> Vec<ClusterResource> {
    let mut vms: Vec<_> = resources
        .iter()
        .filter(|r| is_vm(r) && r.node == node)
        .cloned()
        .collect();
    vms.sort_by_key(|r| r.vmid);
    vms
}

/// The node entries of `resources`, sorted by name.
pub fn nodes_sorted(resources: &[ClusterResource]) -> Vec<ClusterResource> {
    let mut nodes: Vec<_> = resources.iter().filter(|r| is_node(r)).cloned().collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
}

/// Parses a resource's status word; anything unknown counts as [`NodeState::Unknown`].
pub fn node_state(resource: &ClusterResource) -> NodeState {
    match resource.status.as_str() {
        "online" => NodeState::Online,
        "offline" => NodeState::Offline,
        _ => NodeState::Unknown,
    }
}

/// Sorts tasks newest first (by start time, then UPID for a stable order).
pub fn sort_newest_first(tasks: &mut [TaskSummary]) {
    tasks.sort_by(|a, b| {
        b.starttime
            .cmp(&a.starttime)
            .then_with(|| b.upid.cmp(&a.upid))
    });
}

/// Delay before reconnect attempt number `failures` (1, 2, …): 1 s doubling up to 15 s.
pub fn backoff_ms(failures: u32) -> u32 {
    let exp = failures.saturating_sub(1).min(4);
    (1000u32 << exp).min(15_000)
}

/// Starts keeping `data` current until the calling component is cleaned up (browser only;
/// nothing happens during server-side rendering).
pub fn connect(data: ClusterData, api: Api, banner: Banner) {
    #[cfg(feature = "hydrate")]
    {
        let stream = live::Stream::start(data, api, banner);
        let stream = leptos::__reexports::send_wrapper::SendWrapper::new(stream);
        on_cleanup(move || stream.stop());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (data, api, banner);
}

#[cfg(feature = "hydrate")]
mod live {
    use std::cell::{Cell, RefCell};
    use std::rc::{Rc, Weak};
    use std::time::Duration;

    use kiln_api_types::{ClusterEvent, VersionInfo};
    use leptos::prelude::*;
    use leptos::task::spawn_local;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{Event, EventSource, MessageEvent};

    use super::{backoff_ms, ClusterData, LinkState, EVENTS_URL};
    use crate::api::{Api, ApiError};
    use crate::components::banner::Banner;

    /// An open `EventSource` and the callbacks it calls (dropped together).
    struct Open {
        source: EventSource,
        _on_open: Closure<dyn FnMut(Event)>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_error: Closure<dyn FnMut(Event)>,
    }

    /// The live connection: owns the `EventSource` and the reconnect timer.
    pub(super) struct Stream {
        data: ClusterData,
        api: Api,
        banner: Banner,
        open: RefCell<Option<Open>>,
        retry: Cell<Option<TimeoutHandle>>,
        stopped: Cell<bool>,
        failures: Cell<u32>,
        /// Counts events; a REST snapshot that raced with a newer event is dropped.
        generation: Cell<u64>,
    }

    impl Stream {
        pub(super) fn start(data: ClusterData, api: Api, banner: Banner) -> Rc<Self> {
            let stream = Rc::new(Stream {
                data,
                api,
                banner,
                open: RefCell::new(None),
                retry: Cell::new(None),
                stopped: Cell::new(false),
                failures: Cell::new(0),
                generation: Cell::new(0),
            });
            stream.load_snapshot();
            stream.open();
            stream
        }

        /// Closes the stream for good (logout, or the console was left).
        pub(super) fn stop(&self) {
            self.stopped.set(true);
            if let Some(handle) = self.retry.take() {
                handle.clear();
            }
            self.close();
        }

        fn close(&self) {
            if let Some(open) = self.open.borrow_mut().take() {
                open.source.set_onopen(None);
                open.source.set_onmessage(None);
                open.source.set_onerror(None);
                open.source.close();
            }
        }

        fn open(self: &Rc<Self>) {
            if self.stopped.get() {
                return;
            }
            self.close();
            let source = match EventSource::new(EVENTS_URL) {
                Ok(source) => source,
                Err(_) => {
                    self.failed();
                    return;
                }
            };
            let weak = Rc::downgrade(self);
            let on_open = Closure::<dyn FnMut(Event)>::new({
                let weak = Weak::clone(&weak);
                move |_: Event| {
                    if let Some(stream) = weak.upgrade() {
                        stream.opened();
                    }
                }
            });
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
                let weak = Weak::clone(&weak);
                move |event: MessageEvent| {
                    if let Some(stream) = weak.upgrade() {
                        stream.received(&event);
                    }
                }
            });
            let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                if let Some(stream) = weak.upgrade() {
                    stream.failed();
                }
            });
            source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            *self.open.borrow_mut() = Some(Open {
                source,
                _on_open: on_open,
                _on_message: on_message,
                _on_error: on_error,
            });
        }

        fn opened(self: &Rc<Self>) {
            let reconnected = self.failures.replace(0) > 0;
            self.data.link.set(LinkState::Live);
            if reconnected {
                // Changes made while we were away were not pushed to us.
                self.load_snapshot();
            }
        }

        fn received(&self, event: &MessageEvent) {
            let Some(text) = event.data().as_string() else {
                return;
            };
            match serde_json::from_str::<ClusterEvent>(&text) {
                Ok(cluster) => {
                    self.generation.set(self.generation.get() + 1);
                    self.data.link.set(LinkState::Live);
                    self.data.apply(cluster);
                }
                Err(e) => self.banner.show(format!(
                    "The server sent a cluster event the UI cannot read: {e}"
                )),
            }
        }

        /// The stream broke: find out whether the session is still valid, then retry later.
        ///
        /// The browser would retry on its own, but it cannot tell a dead session from a
        /// network hiccup and never backs off, so the UI takes over.
        fn failed(self: &Rc<Self>) {
            self.close();
            if self.stopped.get() {
                return;
            }
            let failures = self.failures.get() + 1;
            self.failures.set(failures);
            self.data.link.set(LinkState::Reconnecting);
            let stream = Rc::clone(self);
            spawn_local(async move {
                // A 401 here ends the session in the UI (the `Api` does that); anything else is
                // worth another attempt.
                if let Err(ApiError::Unauthorized(_)) =
                    stream.api.get::<VersionInfo>("version").await
                {
                    stream.stop();
                    return;
                }
                stream.schedule_retry(backoff_ms(failures));
            });
        }

        fn schedule_retry(self: &Rc<Self>, delay_ms: u32) {
            if self.stopped.get() {
                return;
            }
            let weak = Rc::downgrade(self);
            let handle = set_timeout_with_handle(
                move || {
                    if let Some(stream) = weak.upgrade() {
                        stream.retry.set(None);
                        stream.open();
                    }
                },
                Duration::from_millis(u64::from(delay_ms)),
            );
            if let Some(previous) = self.retry.replace(handle.ok()) {
                previous.clear();
            }
        }

        /// Loads the whole picture from the REST API (first load and after a reconnect).
        fn load_snapshot(self: &Rc<Self>) {
            let stream = Rc::clone(self);
            let generation = self.generation.get();
            spawn_local(async move {
                let api = stream.api;
                let resources = api.cluster_resources().await;
                let tasks = api.cluster_tasks().await;
                if stream.stopped.get() || stream.generation.get() != generation {
                    return;
                }
                match (resources, tasks) {
                    (Ok(resources), Ok(tasks)) => {
                        stream.data.apply(ClusterEvent { resources, tasks });
                    }
                    (Err(ApiError::Unauthorized(_)), _) | (_, Err(ApiError::Unauthorized(_))) => {
                        stream.stop();
                    }
                    (Err(e), _) | (_, Err(e)) => stream
                        .banner
                        .show(format!("Could not load the cluster state: {e}")),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(node: &str, status: &str) -> ClusterResource {
        ClusterResource {
            id: format!("node/{node}"),
            kind: "node".into(),
            node: node.into(),
            status: status.into(),
            vmid: None,
            name: None,
            lock: None,
            cpu: None,
            maxcpu: None,
            mem: None,
            maxmem: None,
            uptime: None,
            hastate: None,
            template: None,
        }
    }

    #[test]
    fn nodes_are_sorted_by_name() {
        let names: Vec<_> = nodes_sorted(&[resource("n3", "online"), resource("n1", "offline")])
            .into_iter()
            .map(|r| r.node)
            .collect();
        assert_eq!(names, ["n1", "n3"]);
    }

    #[test]
    fn vms_are_listed_under_their_node_by_id() {
        let vm = |vmid: u32, node: &str| ClusterResource {
            id: format!("qemu/{vmid}"),
            kind: "qemu".into(),
            vmid: Some(vmid),
            name: Some(format!("vm{vmid}")),
            ..resource(node, "running")
        };
        let all = [
            vm(105, "n1"),
            resource("n1", "online"),
            vm(101, "n1"),
            vm(102, "n2"),
        ];
        let ids: Vec<_> = vms_on(&all, "n1").iter().map(|r| r.vmid).collect();
        assert_eq!(ids, [Some(101), Some(105)]);
        assert_eq!(nodes_sorted(&all).len(), 1);
    }

    #[test]
    fn unknown_status_words_are_unknown_state() {
        assert_eq!(node_state(&resource("n1", "online")), NodeState::Online);
        assert_eq!(node_state(&resource("n1", "weird")), NodeState::Unknown);
    }

    #[test]
    fn reconnect_backoff_doubles_up_to_fifteen_seconds() {
        let delays: Vec<_> = (1..=7).map(backoff_ms).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 15_000, 15_000, 15_000]);
    }
}
