//! Datacenter → HA: the high-availability page. Resources with their state (add, edit,
//! remove), the rules editor (node affinity with priorities, keep together / keep apart) with
//! the server's conflict messages next to the fields, and the manager's view of every node.

pub mod data;
pub mod form;
pub mod manager;
pub mod remove_dialog;
pub mod resource_dialog;
pub mod resources;
pub mod rule_dialog;
pub mod rules;
pub mod view;

pub use view::HaView;
