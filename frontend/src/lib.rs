//! Kiln's web UI.
