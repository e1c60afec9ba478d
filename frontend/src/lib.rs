//! Kiln's web UI: a Proxmox-VE-like cluster console written with Leptos.
//!
//! The server renders every page (feature `ssr`) and the browser hydrates it (feature
//! `hydrate`). The only server function is [`session::current_session`], which tells both sides
//! whether the visitor is logged in; all cluster data comes from the REST API (`/api2/json`)
//! and the live event stream (`/api2/kiln/events`), fetched by the browser.

// The whole app's view types are deep (without cargo-leptos's `erase_components`).
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod components;
pub mod events;
pub mod format;
pub mod pages;
pub mod session;
pub mod vm;
#[cfg(feature = "hydrate")]
pub mod xterm;

pub use app::{shell, App};

/// Entry point of the WebAssembly bundle: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
