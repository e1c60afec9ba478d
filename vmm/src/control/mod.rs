//! The control socket: one Unix socket per VM, owned by the node agent. Requests and replies
//! are JSON lines ([`protocol`]); [`server`] serves them, [`client`] is the typed client the
//! node agent and the tests use.

pub mod client;
pub mod protocol;
pub mod server;
