//! Building blocks of the console, one concern per file.

pub mod banner;
pub mod datacenter;
pub mod datacenter_view;
pub mod dialog;
pub mod ha;
pub mod ha_status;
pub mod join_dialog;
pub mod meter;
pub mod migrate_dialog;
pub mod node_maintenance;
pub mod node_summary;
pub mod permissions;
pub mod pools;
pub mod tasks;
pub mod tree;
pub mod vm_actions;
pub mod vm_console;
pub mod vm_summary;
pub mod vm_view;
pub mod vm_wizard;
