//! The error banner under the top bar: request errors the user should see, until dismissed.

use leptos::prelude::*;

/// The banner's message, shared through context by the console.
#[derive(Clone, Copy)]
pub struct Banner {
    message: RwSignal<Option<String>>,
}

impl Banner {
    /// Creates an empty banner and provides it as context.
    pub fn provide() -> Self {
        let banner = Banner {
            message: RwSignal::new(None),
        };
        provide_context(banner);
        banner
    }

    /// The banner provided by [`Banner::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// Shows `message` (replacing any earlier one).
    pub fn show(&self, message: impl Into<String>) {
        self.message.set(Some(message.into()));
    }

    /// Hides the banner.
    pub fn clear(&self) {
        self.message.set(None);
    }
}

/// Renders the banner when it has a message.
#[component]
pub fn ErrorBanner() -> impl IntoView {
    let banner = Banner::expect();
    move || {
        banner.message.get().map(|message| {
            view! {
                <div class="banner error" role="alert" data-testid="error-banner">
                    <span class="banner-text">{message}</span>
                    <button
                        type="button"
                        class="banner-close"
                        aria-label="Dismiss"
                        on:click=move |_| banner.clear()
                    >
                        "×"
                    </button>
                </div>
            }
        })
    }
}
