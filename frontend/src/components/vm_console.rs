//! VM → Console: the VM's serial console in an xterm.js terminal over a WebSocket.
//!
//! `wss://<host>/api2/kiln/nodes/{node}/qemu/{vmid}/console` carries raw serial bytes both
//! ways as binary frames; the server replays the VM's scroll-back on connect and closes the
//! socket when the VM stops. The terminal is reset on every connect (the replay redraws it),
//! connects whenever the VM has a process, and reconnects with backoff while it still has one.

use leptos::html;
use leptos::prelude::*;

use crate::events::ClusterData;
use crate::vm::VmState;

/// State of the console connection, shown above the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleLink {
    /// The VM has no process; nothing to connect to.
    Idle,
    /// Opening the WebSocket.
    Connecting,
    /// Bytes flow.
    Connected,
    /// The socket closed; a new attempt follows while the VM runs.
    Closed(String),
    /// The console cannot work at all (e.g. xterm.js did not load).
    Broken(String),
}

impl ConsoleLink {
    /// Test hook / CSS class.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsoleLink::Idle => "idle",
            ConsoleLink::Connecting => "connecting",
            ConsoleLink::Connected => "connected",
            ConsoleLink::Closed(_) => "closed",
            ConsoleLink::Broken(_) => "broken",
        }
    }

    /// What the status line says.
    pub fn label(&self) -> String {
        match self {
            ConsoleLink::Idle => "The VM is not running. Start it to use the console.".into(),
            ConsoleLink::Connecting => "Connecting…".into(),
            ConsoleLink::Connected => {
                "Connected: type to talk to the guest's serial console.".into()
            }
            ConsoleLink::Closed(reason) => format!("Disconnected ({reason}); reconnecting…"),
            ConsoleLink::Broken(reason) => reason.clone(),
        }
    }
}

/// The console path for a VM (the browser adds scheme and host).
pub fn console_path(node: &str, vmid: u32) -> String {
    format!(
        "/api2/kiln/nodes/{}/qemu/{vmid}/console",
        crate::api::segment(node)
    )
}

/// The Console tab of one VM.
#[component]
pub fn VmConsole(
    /// The VM.
    vmid: u32,
) -> impl IntoView {
    let data = ClusterData::expect();
    let target = Memo::new(move |_| {
        data.vm(vmid).and_then(|r| {
            let state = VmState::of(&r);
            state.has_process().then_some(r.node)
        })
    });
    let link = RwSignal::new(ConsoleLink::Idle);
    let host = NodeRef::<html::Div>::new();

    #[cfg(feature = "hydrate")]
    live::attach(host, vmid, target, link);
    #[cfg(not(feature = "hydrate"))]
    let _ = target;

    view! {
        <div class="vm-console-panel">
            <p
                class=move || format!("console-state {}", link.with(ConsoleLink::as_str))
                role="status"
                data-testid="console-state"
                data-state=move || link.with(ConsoleLink::as_str)
            >
                {move || link.with(ConsoleLink::label)}
            </p>
            <div class="vm-console" data-testid="vm-console" node_ref=host></div>
        </div>
    }
}

#[cfg(feature = "hydrate")]
mod live {
    use std::cell::{Cell, RefCell};
    use std::rc::{Rc, Weak};
    use std::time::Duration;

    use leptos::html;
    use leptos::prelude::*;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

    use super::{console_path, ConsoleLink};
    use crate::events::backoff_ms;
    use crate::xterm::{self, Disposable, Terminal};

    /// An open WebSocket and the callbacks it calls (dropped together).
    struct Socket {
        ws: WebSocket,
        _on_open: Closure<dyn FnMut(Event)>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_close: Closure<dyn FnMut(CloseEvent)>,
    }

    impl Socket {
        fn close(self) {
            self.ws.set_onopen(None);
            self.ws.set_onmessage(None);
            self.ws.set_onclose(None);
            let _ = self.ws.close();
        }
    }

    /// The terminal, its connection and the reconnect timer.
    struct Session {
        vmid: u32,
        term: Terminal,
        _typing: Closure<dyn FnMut(String)>,
        typing_registration: Disposable,
        link: RwSignal<ConsoleLink>,
        socket: RefCell<Option<Socket>>,
        /// The node to connect to while the VM has a process.
        target: RefCell<Option<String>>,
        retry: Cell<Option<TimeoutHandle>>,
        failures: Cell<u32>,
        stopped: Cell<bool>,
    }

    /// Opens the terminal once `host` is in the page and keeps it connected to the VM's console
    /// while `target` names the VM's node; everything ends when the component is cleaned up.
    pub(super) fn attach(
        host: NodeRef<html::Div>,
        vmid: u32,
        target: Memo<Option<String>>,
        link: RwSignal<ConsoleLink>,
    ) {
        let session: Rc<RefCell<Option<Rc<Session>>>> = Rc::new(RefCell::new(None));
        let slot = leptos::__reexports::send_wrapper::SendWrapper::new(Rc::clone(&session));
        Effect::new(move || {
            let Some(element) = host.get() else {
                return;
            };
            let node = target.get();
            let mut current = slot.borrow_mut();
            if current.is_none() {
                match Session::open(&element, vmid, link) {
                    Ok(created) => *current = Some(created),
                    Err(reason) => {
                        link.set(ConsoleLink::Broken(reason));
                        return;
                    }
                }
            }
            if let Some(session) = current.as_ref() {
                session.retarget(node);
            }
        });
        let cleanup = leptos::__reexports::send_wrapper::SendWrapper::new(session);
        on_cleanup(move || {
            if let Some(session) = cleanup.borrow_mut().take() {
                session.stop();
            }
        });
    }

    impl Session {
        fn open(
            element: &web_sys::HtmlDivElement,
            vmid: u32,
            link: RwSignal<ConsoleLink>,
        ) -> Result<Rc<Self>, String> {
            let term = Terminal::new(&xterm::options()).map_err(|_| {
                "The terminal could not start: /vendor/xterm.js did not load \
                 (run frontend/vendor.sh before building the site)."
                    .to_owned()
            })?;
            term.open(element);
            Ok(Rc::new_cyclic(|weak: &Weak<Session>| {
                let typing = Closure::<dyn FnMut(String)>::new({
                    let weak = Weak::clone(weak);
                    move |text: String| {
                        if let Some(session) = weak.upgrade() {
                            session.send(text.as_bytes());
                        }
                    }
                });
                let typing_registration = term.on_data(typing.as_ref().unchecked_ref());
                Session {
                    vmid,
                    term,
                    _typing: typing,
                    typing_registration,
                    link,
                    socket: RefCell::new(None),
                    target: RefCell::new(None),
                    retry: Cell::new(None),
                    failures: Cell::new(0),
                    stopped: Cell::new(false),
                }
            }))
        }

        /// The VM's node changed, or the VM got or lost its process.
        fn retarget(self: &Rc<Self>, node: Option<String>) {
            let changed = *self.target.borrow() != node;
            *self.target.borrow_mut() = node.clone();
            match node {
                None => {
                    self.cancel_retry();
                    // The server closes the socket when the VM stops; do not wait for it.
                    if let Some(socket) = self.socket.borrow_mut().take() {
                        socket.close();
                    }
                    self.link.set(ConsoleLink::Idle);
                }
                Some(_) if changed || self.socket.borrow().is_none() => {
                    self.failures.set(0);
                    self.connect();
                }
                Some(_) => {}
            }
        }

        fn connect(self: &Rc<Self>) {
            self.cancel_retry();
            if let Some(old) = self.socket.borrow_mut().take() {
                old.close();
            }
            let Some(node) = self.target.borrow().clone() else {
                return;
            };
            if self.stopped.get() {
                return;
            }
            let Some(url) = socket_url(&console_path(&node, self.vmid)) else {
                self.link
                    .set(ConsoleLink::Broken("The page's address is unknown.".into()));
                return;
            };
            let ws = match WebSocket::new(&url) {
                Ok(ws) => ws,
                Err(_) => {
                    self.closed("the browser refused to open the connection".into());
                    return;
                }
            };
            ws.set_binary_type(BinaryType::Arraybuffer);
            self.link.set(ConsoleLink::Connecting);
            let weak = Rc::downgrade(self);
            let on_open = Closure::<dyn FnMut(Event)>::new({
                let weak = Weak::clone(&weak);
                move |_: Event| {
                    if let Some(session) = weak.upgrade() {
                        session.opened();
                    }
                }
            });
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
                let weak = Weak::clone(&weak);
                move |event: MessageEvent| {
                    if let Some(session) = weak.upgrade() {
                        session.received(&event);
                    }
                }
            });
            let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                if let Some(session) = weak.upgrade() {
                    let reason = match event.reason() {
                        r if r.is_empty() => format!("code {}", event.code()),
                        r => r,
                    };
                    session.socket.borrow_mut().take();
                    session.closed(reason);
                }
            });
            ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            *self.socket.borrow_mut() = Some(Socket {
                ws,
                _on_open: on_open,
                _on_message: on_message,
                _on_close: on_close,
            });
        }

        fn opened(&self) {
            self.failures.set(0);
            // The server replays the scroll-back: start from a clean screen.
            self.term.reset();
            self.link.set(ConsoleLink::Connected);
            self.term.focus();
        }

        fn received(&self, event: &MessageEvent) {
            let data = event.data();
            if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                self.term.write_bytes(&js_sys::Uint8Array::new(buffer));
            } else if let Some(text) = data.as_string() {
                self.term.write_text(&text);
            }
        }

        fn send(&self, bytes: &[u8]) {
            if let Some(socket) = self.socket.borrow().as_ref() {
                if socket.ws.ready_state() == WebSocket::OPEN {
                    let _ = socket.ws.send_with_u8_array(bytes);
                }
            }
        }

        /// The socket closed: try again later while the VM still has a process.
        fn closed(self: &Rc<Self>, reason: String) {
            if self.stopped.get() || self.target.borrow().is_none() {
                self.link.set(ConsoleLink::Idle);
                return;
            }
            let failures = self.failures.get() + 1;
            self.failures.set(failures);
            self.link.set(ConsoleLink::Closed(reason));
            let weak = Rc::downgrade(self);
            let handle = set_timeout_with_handle(
                move || {
                    if let Some(session) = weak.upgrade() {
                        session.retry.set(None);
                        session.connect();
                    }
                },
                Duration::from_millis(u64::from(backoff_ms(failures))),
            );
            if let Some(previous) = self.retry.replace(handle.ok()) {
                previous.clear();
            }
        }

        fn cancel_retry(&self) {
            if let Some(handle) = self.retry.take() {
                handle.clear();
            }
        }

        fn stop(&self) {
            self.stopped.set(true);
            self.cancel_retry();
            if let Some(socket) = self.socket.borrow_mut().take() {
                socket.close();
            }
            self.typing_registration.dispose();
            self.term.dispose();
        }
    }

    /// `wss://host/path` for the page's own host (`ws://` when the page is plain HTTP).
    fn socket_url(path: &str) -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = match location.protocol().ok()?.as_str() {
            "http:" => "ws:",
            _ => "wss:",
        };
        Some(format!("{scheme}//{}{path}", location.host().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_paths_escape_the_node() {
        assert_eq!(
            console_path("n1", 101),
            "/api2/kiln/nodes/n1/qemu/101/console"
        );
        assert_eq!(
            console_path("a b", 7),
            "/api2/kiln/nodes/a%20b/qemu/7/console"
        );
    }

    #[test]
    fn link_states_say_what_to_do() {
        assert!(ConsoleLink::Idle.label().contains("Start it"));
        assert_eq!(ConsoleLink::Closed("code 1006".into()).as_str(), "closed");
    }
}
