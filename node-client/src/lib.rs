//! The only way to talk to a Kiln node agent: typed wire types of the node API and a client
//! that speaks mutual TLS with certificates from the cluster CA.

mod join_token;
mod name;
pub mod wire;

pub use join_token::{JoinToken, MalformedJoinToken};
pub use name::{InvalidNodeName, NodeName};
