//! Mounting the Leptos web UI (server-side rendering, hydration assets, server functions).

use axum::Router;
use frontend::{shell, App};
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::state::AppState;

/// Routes of the web UI and its static files, for the given state.
pub fn router(state: &AppState) -> Router<AppState> {
    let routes = generate_route_list(App);
    let options = state.leptos.clone();
    Router::new()
        .leptos_routes(state, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
}
