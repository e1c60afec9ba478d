//! A user's API tokens: the list (revoke), and a new token whose secret is shown once.

use kiln_api_types::access::{TokenCreate, TokenCreated};
use leptos::prelude::*;

use super::data::PermissionsData;
use super::remove::{Removal, RemoveDialog};
use super::users::expiry_param;
use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::components::form::{
    check_token_name, split_refusal, FieldError, FieldErrors, TextField,
};
use crate::format;

/// The dialog for `userid`'s tokens.
#[component]
pub fn TokensDialog(
    /// Whose tokens.
    userid: String,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = PermissionsData::expect();
    let name = RwSignal::new(String::new());
    let comment = RwSignal::new(String::new());
    let expire = RwSignal::new(String::new());
    let privsep = RwSignal::new(true);
    let errors: FieldErrors = RwSignal::new(Default::default());
    let general = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let created = RwSignal::new(None::<TokenCreated>);
    let removing = RwSignal::new(None::<Removal>);
    let owner = userid.clone();
    let tokens = Memo::new(move |_| {
        data.users.with(|u| {
            u.iter()
                .find(|u| u.userid == owner)
                .map(|u| u.tokens.clone())
                .unwrap_or_default()
        })
    });
    let submit = {
        let userid = userid.clone();
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let tokenid = name.get_untracked().trim().to_owned();
            let local = [
                check_token_name(&tokenid).err(),
                expiry_param(&expire.get_untracked()).err(),
            ];
            if let Some(problem) = local.into_iter().flatten().next() {
                general.set(Some(format!("Check the form: {problem}")));
                return;
            }
            let request = TokenCreate {
                comment: Some(comment.get_untracked()),
                expire: Some(expiry_param(&expire.get_untracked()).unwrap_or(0)),
                privsep: Some(u8::from(privsep.get_untracked())),
            };
            let path = format!(
                "access/users/{}/token/{}",
                segment(&userid),
                segment(&tokenid)
            );
            sending.set(true);
            general.set(None);
            leptos::task::spawn_local(async move {
                match api.post_json::<TokenCreated, _>(&path, &request).await {
                    Ok(token) => {
                        created.set(Some(token));
                        name.set(String::new());
                        comment.set(String::new());
                        data.reload();
                    }
                    Err(e) => {
                        let (fields, line) = split_refusal(
                            e,
                            &["tokenid", "comment", "expire", "privsep"],
                            "Creating the token",
                        );
                        errors.set(fields);
                        general.set(line);
                    }
                }
                sending.set(false);
            });
        }
    };
    let revoke_owner = userid.clone();
    view! {
        <Dialog title=format!("API tokens of {userid}") testid="tokens-dialog" on_close>
            <table class="grid" data-testid="tokens-table">
                <thead>
                    <tr>
                        <th scope="col">"Token"</th>
                        <th scope="col">"Privilege separation"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col">"Comment"</th>
                        <th scope="col"></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || tokens.get() key=|t| t.tokenid.clone() let:t>
                        {
                            let (owner, id) = (revoke_owner.clone(), t.tokenid.clone());
                            view! {
                                <tr data-testid="token-row" data-tokenid=t.tokenid.clone()>
                                    <td>{t.tokenid.clone()}</td>
                                    <td>{if t.privsep == 1 { "yes" } else { "no" }}</td>
                                    <td>{if t.expire == 0 { "never".to_owned() } else { format::timestamp(t.expire) }}</td>
                                    <td>{t.comment.clone()}</td>
                                    <td>
                                        <button
                                            type="button"
                                            class="button danger"
                                            data-testid="token-revoke"
                                            on:click=move |_| removing.set(Some(Removal::Token(owner.clone(), id.clone())))
                                        >
                                            "Revoke"
                                        </button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            {move || created.get().map(|t| view! {
                <div class="notice token-secret" role="status" data-testid="token-created">
                    <p>"Token " <code data-testid="token-full-id">{t.full_tokenid.clone()}</code> " created. Its secret, shown only now:"</p>
                    <p><code data-testid="token-secret">{t.value.clone()}</code></p>
                    <p class="hint">{format!("Send it as: Authorization: PVEAPIToken={}={}", t.full_tokenid, t.value)}</p>
                </div>
            })}
            <form class="wizard" on:submit=submit novalidate>
                <h3>"New token"</h3>
                <div class="form-grid">
                    <TextField label="Token ID" name="tokenid" testid="token-id" value=name errors check=check_token_name placeholder="ci"/>
                    <TextField label="Comment" name="comment" testid="token-comment" value=comment errors/>
                    <label for="token-expire">"Expires"</label>
                    <div class="field">
                        <input id="token-expire" type="datetime-local" data-testid="token-expire" bind:value=expire/>
                        <span class="hint">"Empty: never."</span>
                        <FieldError testid="token-expire-error".to_owned() message=Signal::derive(move || errors.with(|e| e.get("expire").cloned()))/>
                    </div>
                    <span class="form-label">"Privilege separation"</span>
                    <label class="checkbox">
                        <input type="checkbox" data-testid="token-privsep" bind:checked=privsep/>
                        "The token holds only what ACL entries grant the token itself"
                    </label>
                </div>
                {move || general.get().map(|e| view! { <div class="notice error" role="alert" data-testid="token-dialog-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="submit" class="button primary" data-testid="token-create" disabled=move || sending.get()>"Create"</button>
                </div>
            </form>
        </Dialog>
        {move || removing.get().map(|what| view! { <RemoveDialog what on_close=move |()| removing.set(None)/> })}
    }
}
