//! Building blocks of the console, one concern per file.

pub mod banner;
pub mod datacenter;
pub mod datacenter_view;
pub mod dialog;
pub mod ha_status;
pub mod join_dialog;
pub mod lab_accounts;
pub mod lab_dashboard;
pub mod lab_home;
pub mod lab_wizard;
pub mod labs;
pub mod meter;
pub mod migrate_dialog;
pub mod node_summary;
pub mod password_dialog;
pub mod permissions;
pub mod pools;
pub mod student_labs;
pub mod tasks;
pub mod tree;
pub mod vm_actions;
pub mod vm_console;
pub mod vm_summary;
pub mod vm_view;
pub mod vm_wizard;
