//! The "Join node" dialog: creates a one-time join token and shows the `kiln-node join`
//! command to run on the new host, with a copy button.

use kiln_api_types::JoinTokenCreated;
use leptos::prelude::*;

use crate::api::Api;
use crate::components::dialog::Dialog;
use crate::format;

/// The command a new host runs to join this cluster.
pub fn join_command(server_url: &str, token: &str, name: &str, listen: &str) -> String {
    let or = |value: &str, placeholder: &'static str| {
        let value = value.trim();
        if value.is_empty() {
            placeholder.to_owned()
        } else {
            value.to_owned()
        }
    };
    format!(
        "kiln-node join {server_url} {token} --name {} --listen {}",
        or(name, "<name>"),
        or(listen, "<addr>")
    )
}

/// This server's URL as the browser reached it, e.g. `https://kiln.example:8006`.
fn server_url() -> String {
    #[cfg(feature = "hydrate")]
    if let Some(origin) = web_sys::window().and_then(|w| w.location().origin().ok()) {
        return origin;
    }
    "https://<server-host>:8006".to_owned()
}

/// Copies `text` to the clipboard; returns whether it worked.
async fn copy_to_clipboard(text: String) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let Some(window) = web_sys::window() else {
            return false;
        };
        let promise = window.navigator().clipboard().write_text(&text);
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}

/// The dialog; a new token is created each time it opens.
#[component]
pub fn JoinDialog(
    /// Called when the dialog is dismissed.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let created = RwSignal::new(None::<JoinTokenCreated>);
    let error = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let listen = RwSignal::new(String::new());
    let copied = RwSignal::new(None::<bool>);

    Effect::new(move || {
        leptos::task::spawn_local(async move {
            match api.create_join_token().await {
                Ok(token) => created.set(Some(token)),
                Err(e) => error.set(Some(format!("Could not create a join token: {e}"))),
            }
        });
    });

    let url = server_url();
    let command = move || {
        created.with(|c| {
            c.as_ref()
                .map(|c| join_command(&url, &c.token, &name.get(), &listen.get()))
        })
    };
    let copy = {
        let command = command.clone();
        move |_| {
            if let Some(text) = command() {
                leptos::task::spawn_local(async move {
                    copied.set(Some(copy_to_clipboard(text).await));
                });
            }
        }
    };

    view! {
        <Dialog title="Join node".to_owned() testid="join-dialog" on_close>
            <p>
                "Run this command on the new host. The token works once and expires; "
                "open this dialog again for a new one."
            </p>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <Show
                when=move || created.with(Option::is_some)
                fallback=move || {
                    view! {
                        <Show when=move || error.with(Option::is_none)>
                            <p class="loading">"Creating a join token…"</p>
                        </Show>
                    }
                }
            >
                <div class="form-grid">
                    <label for="join-name">"Node name"</label>
                    <input id="join-name" type="text" placeholder="e.g. node4" bind:value=name/>
                    <label for="join-listen">"Listen address"</label>
                    <input
                        id="join-listen"
                        type="text"
                        placeholder="e.g. 192.0.2.14:8007"
                        bind:value=listen
                    />
                    <span class="form-label">"Join token"</span>
                    <code class="token" data-testid="join-token">
                        {move || created.with(|c| c.as_ref().map(|c| c.token.clone()))}
                    </code>
                    <span class="form-label">"Expires"</span>
                    <span>
                        {move || created.with(|c| c.as_ref().map(|c| format::timestamp(c.expires)))}
                    </span>
                </div>
                <div class="command-box">
                    <code class="command" data-testid="join-command">{command.clone()}</code>
                    <button
                        type="button"
                        class="button"
                        data-testid="copy-join-command"
                        on:click=copy.clone()
                    >
                        "Copy"
                    </button>
                </div>
                {move || {
                    copied
                        .get()
                        .map(|ok| {
                            if ok {
                                view! { <p class="hint" role="status">"Copied to the clipboard."</p> }
                                    .into_any()
                            } else {
                                view! {
                                    <p class="hint" role="status">
                                        "Copying failed; select the command and copy it by hand."
                                    </p>
                                }
                                    .into_any()
                            }
                        })
                }}
            </Show>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_uses_placeholders_until_name_and_address_are_given() {
        assert_eq!(
            join_command("https://h:8006", "tok", "", " "),
            "kiln-node join https://h:8006 tok --name <name> --listen <addr>"
        );
        assert_eq!(
            join_command("https://h:8006", "tok", "n4", "10.0.0.4:8007"),
            "kiln-node join https://h:8006 tok --name n4 --listen 10.0.0.4:8007"
        );
    }
}
