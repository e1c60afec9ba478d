//! A modal dialog: title bar with a close button, closes on Escape or a click outside.

use leptos::ev;
use leptos::html;
use leptos::prelude::*;

/// A modal dialog around `children`; `on_close` is called when the user dismisses it.
#[component]
pub fn Dialog(
    /// Title shown in the dialog's header (and its accessible name).
    #[prop(into)]
    title: Signal<String>,
    /// Stable test hook (`data-testid`).
    testid: &'static str,
    /// Called on Escape, the close button or a click on the backdrop.
    on_close: Callback<()>,
    /// The dialog's body.
    children: Children,
) -> impl IntoView {
    let close_button = NodeRef::<html::Button>::new();
    let escape = window_event_listener(ev::keydown, move |event| {
        if event.key() == "Escape" {
            on_close.run(());
        }
    });
    on_cleanup(move || escape.remove());
    // Focus moves into the dialog so that keyboard users land there.
    Effect::new(move || {
        if let Some(button) = close_button.get() {
            let _ = button.focus();
        }
    });
    let title_id = format!("{testid}-title");
    let labelled_by = title_id.clone();
    view! {
        <div class="dialog-backdrop" on:click=move |_| on_close.run(())>
            <div
                class="dialog"
                role="dialog"
                aria-modal="true"
                aria-labelledby=labelled_by
                data-testid=testid
                on:click=|event| event.stop_propagation()
            >
                <header class="dialog-header">
                    <h2 id=title_id>{title}</h2>
                    <button
                        type="button"
                        class="dialog-close"
                        aria-label="Close"
                        node_ref=close_button
                        on:click=move |_| on_close.run(())
                    >
                        "×"
                    </button>
                </header>
                <div class="dialog-body">{children()}</div>
            </div>
        </div>
    }
}
