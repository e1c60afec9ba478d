//! The live picture of the cluster: which nodes answer their heartbeat, their latest facts,
//! and a change signal the UI's event stream listens to.

mod clients;
pub mod heartbeat;
mod registry;

pub use clients::NodeClients;
pub use registry::{ChangeSignal, LeasePolicy, NodeRegistry, NodeRuntime};
