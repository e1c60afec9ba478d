//! The only way to talk to a Kiln node agent: typed wire types of the node API and a client
//! that speaks mutual TLS with certificates from the cluster CA.
//!
//! - [`tls`]: the cluster identity (CA, certificate, key) and the rustls configurations every
//!   member builds from it, for both ends of a connection;
//! - [`NodeClient`]: one node agent's API;
//! - [`join_cluster`]: the node side of joining a cluster with a [`JoinToken`];
//! - [`wire`]: the request and response types both sides share.

mod client;
mod diagnose;
mod join;
mod join_token;
mod name;
pub use kiln_tls as tls;
pub mod wire;

pub use client::{
    ConsoleSocket, NodeClient, NodeClientError, MIGRATION_TIMEOUT, VM_ACTION_TIMEOUT,
};
pub use join::{join_cluster, JoinApplication, JoinError};
pub use join_token::{JoinToken, MalformedJoinToken};
pub use name::{InvalidNodeName, NodeName};
pub use tls::{CertFingerprint, ClusterIdentity, TlsError};
/// The WebSocket crate of [`ConsoleSocket`] (its `Message` type), re-exported so that users
/// pipe consoles with the same version.
pub use tokio_tungstenite;
