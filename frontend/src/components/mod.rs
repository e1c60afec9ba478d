//! Building blocks of the console, one concern per file.

pub mod banner;
pub mod datacenter;
pub mod dialog;
pub mod join_dialog;
pub mod meter;
pub mod node_summary;
pub mod tasks;
pub mod tree;
