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

/// A removal confirmed in a dialog: the explanation, Cancel and a red Remove that runs
/// `remove`; on success `on_done` runs (reload the list) and the dialog closes, a failure shows
/// under the explanation. Test hooks: `testid` on the dialog, `{prefix}-error`,
/// `{prefix}-confirm`.
#[component]
pub fn RemoveConfirm<F, Fut>(
    /// Dialog title.
    title: String,
    /// What removing means, for the person about to do it.
    explanation: String,
    /// Test hook of the dialog.
    testid: &'static str,
    /// Test hook prefix of its error and its Remove button.
    prefix: &'static str,
    /// Does the removal.
    remove: F,
    /// After a successful removal (before closing).
    #[prop(into)]
    on_done: Callback<()>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let confirm = move |_| {
        let remove = remove.clone();
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match remove().await {
                Ok(()) => {
                    on_done.run(());
                    on_close.run(());
                }
                Err(e) => {
                    error.set(Some(format!("Removing failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title=title testid on_close>
            <p>{explanation}</p>
            {move || {
                error
                    .get()
                    .map(|e| {
                        view! {
                            <div class="notice error" role="alert" data-testid=format!("{prefix}-error")>
                                {e}
                            </div>
                        }
                    })
            }}
            <div class="dialog-buttons">
                <button type="button" class="button" on:click=move |_| on_close.run(())>
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="button danger"
                    data-testid=format!("{prefix}-confirm")
                    disabled=move || sending.get()
                    on:click=confirm
                >
                    "Remove"
                </button>
            </div>
        </Dialog>
    }
}
