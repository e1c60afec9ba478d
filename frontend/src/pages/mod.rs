//! Whole pages: the login form, the first-login steps and the console.

pub mod console;
pub mod login;
pub mod setup;

use leptos::prelude::*;

/// A flag that turns true once the page is hydrated (effects run in the browser only).
///
/// Buttons that need the WebAssembly code stay disabled until then, so a click before
/// hydration cannot submit the login form natively or do nothing.
pub fn use_hydrated() -> ReadSignal<bool> {
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move || set_hydrated.set(true));
    hydrated
}
