//! High availability: HA resources are VMs the cluster keeps running (or stopped) through
//! node failures, by the administrator's rules.
//!
//! - [`state`]: the per-resource state machine (pure, tested table-style);
//! - [`rules`]: node- and resource-affinity rules and their conflict check;
//! - [`placement`]: which node a resource goes to;
//! - [`manager`]: the loop that runs after every heartbeat round and acts through tasks;
//! - [`moves`]: the manager's actions as tasks (start, stop, recover, relocate);
//! - [`actions`]: starting and stopping HA-managed VMs on nodes.
//!
//! Fencing: every node holds a lease renewed by the heartbeat (`crate::cluster`); HA-managed
//! VMMs stop their guests when it runs out, and the manager recovers a VM elsewhere only after
//! the lease has surely expired on the server's clock.

pub mod actions;
pub mod manager;
pub mod moves;
pub mod placement;
pub mod rules;
pub mod state;
