//! The root component, the HTML shell, and the choice between login page and console.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::StaticSegment;

use crate::pages::console::ConsolePage;
use crate::pages::login::LoginPage;
use crate::pages::setup::SetupPage;
use crate::session::Auth;

/// The HTML document around [`App`], rendered by the server for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // xterm.js for the VM console (copied from npm by frontend/vendor.sh); a classic
                // deferred script runs before the module that hydrates the page.
                <link rel="stylesheet" href="/vendor/xterm.css"/>
                <script src="/vendor/xterm.js" defer></script>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The web UI's root component.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    Auth::provide();
    view! {
        <Stylesheet id="leptos" href="/pkg/kiln.css"/>
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title text="Kiln"/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=StaticSegment("") view=Home/>
            </Routes>
        </Router>
    }
}

/// `/`: the console when logged in, the login page otherwise.
#[component]
fn Home() -> impl IntoView {
    let auth = Auth::expect();
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let _ = auth.loaded().await;
                view! { <SessionGate/> }
            })}
        </Suspense>
    }
}

/// Switches between login page and console as the session changes.
#[component]
fn SessionGate() -> impl IntoView {
    let auth = Auth::expect();
    let user = Memo::new(move |_| auth.user());
    view! {
        {move || auth.load_error().map(|e| view! { <div class="banner error" role="alert">{e}</div> })}
        {move || match user.get() {
            Some(user) if user.setup.is_some() => view! { <SetupPage user/> }.into_any(),
            Some(user) => view! { <ConsolePage user/> }.into_any(),
            None => view! { <LoginPage/> }.into_any(),
        }}
    }
}

/// Any other path.
#[component]
fn NotFound() -> impl IntoView {
    view! {
        <main class="not-found">
            <h1>"Not found"</h1>
            <p>
                "There is no page here. " <a href="/">"Go to the console"</a>
            </p>
        </main>
    }
}
