//! Two-factor authentication of one's own account: enrolling a TOTP authenticator (a secret
//! made in the browser, shown as an `otpauth://` QR code and as text, proven with one current
//! code), recovery keys (shown once), and the list of factors with "Remove".
//!
//! The secret never leaves the browser except in the enrolment request, which the server
//! accepts only with the current code and the user's password.

use kiln_api_types::access::{TfaAdd, TfaAdded, TfaEntry};
use leptos::prelude::*;

use crate::api::{segment, Api, ApiError};
use crate::components::dialog::Dialog;

/// Bytes of a new TOTP secret (160 bits, as RFC 4226 recommends; the server wants ≥ 128).
pub const SECRET_BYTES: usize = 20;
/// The issuer authenticator apps show next to the account.
const ISSUER: &str = "Kiln";

/// RFC 4648 base32 without padding (the alphabet authenticator apps read).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URL of a TOTP for `userid` with base32 `secret` (SHA-1, 6 digits, 30 s:
/// what every authenticator app supports).
pub fn otpauth_url(userid: &str, secret: &str) -> String {
    let account = segment(userid).replace('@', "%40");
    format!(
        "otpauth://totp/{ISSUER}:{account}?secret={secret}&issuer={ISSUER}&algorithm=SHA1&digits=6&period=30"
    )
}

/// `text` as a QR code in SVG (black on white, with the quiet zone scanners need).
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::new(text.as_bytes())?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    // The XML declaration has no place inside an HTML document.
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// Groups a base32 secret in fours, as people type it into an app.
pub fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What is wrong with a typed TOTP code, if anything.
pub fn check_code(code: &str) -> Option<&'static str> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != 6 || !digits.chars().all(|c| c.is_ascii_digit()) {
        Some("The code has 6 digits.")
    } else {
        None
    }
}

/// Random bytes from the browser's cryptographic generator (`None` outside the browser).
#[cfg(feature = "hydrate")]
fn random_bytes(n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let crypto = web_sys::window()?.crypto().ok()?;
    crypto.get_random_values_with_u8_array(&mut buf).ok()?;
    Some(buf)
}

/// Random bytes from the browser's cryptographic generator (`None` outside the browser).
#[cfg(not(feature = "hydrate"))]
fn random_bytes(_n: usize) -> Option<Vec<u8>> {
    None
}

/// The field messages of a refused enrolment: (code, password, other).
fn enrolment_errors(e: &ApiError) -> (Option<String>, Option<String>, Option<String>) {
    let code = e.param("value").map(str::to_owned);
    let password = e.param("password").map(str::to_owned);
    let other = (code.is_none() && password.is_none()).then(|| e.to_string());
    (code, password, other)
}

/// Enrol a TOTP authenticator for `userid` (the logged-in user), then show the recovery keys
/// made with it. `on_done` runs when the user has seen the keys.
#[component]
pub fn TotpEnrolment(
    /// The logged-in user (the only one who may enrol its factors).
    userid: String,
    /// Called after the keys were shown and the user continued.
    #[prop(into)]
    on_done: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let secret = RwSignal::new(None::<String>);
    let code = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let code_error = RwSignal::new(None::<String>);
    let password_error = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let keys = RwSignal::new(None::<Vec<String>>);
    // Made in the browser only (effects do not run on the server).
    Effect::new(move || {
        if secret.get_untracked().is_none() {
            match random_bytes(SECRET_BYTES) {
                Some(bytes) => secret.set(Some(base32(&bytes))),
                None => error.set(Some(
                    "This browser has no cryptographic random generator; use another one.".into(),
                )),
            }
        }
    });
    let url = {
        let userid = userid.clone();
        Memo::new(move |_| secret.get().map(|s| otpauth_url(&userid, &s)))
    };
    let qr = Memo::new(move |_| url.get().map(|u| qr_svg(&u).map_err(|e| e.to_string())));
    let typed_code_problem = Memo::new(move |_| {
        let c = code.get();
        (!c.is_empty()).then(|| check_code(&c)).flatten()
    });
    let submit = {
        let userid = userid.clone();
        move |event: leptos::ev::SubmitEvent| {
            event.prevent_default();
            let Some(totp) = url.get_untracked() else {
                return;
            };
            if let Some(p) = check_code(&code.get_untracked()) {
                code_error.set(Some(p.into()));
                return;
            }
            let pw = password.get_untracked();
            if pw.is_empty() {
                password_error.set(Some("Your current password confirms the change.".into()));
                return;
            }
            let value: String = code
                .get_untracked()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let path = format!("access/tfa/{}", segment(&userid));
            let totp_request = TfaAdd {
                kind: "totp".into(),
                totp: Some(totp),
                value: Some(value),
                password: pw.clone(),
            };
            let recovery_request = TfaAdd {
                kind: "recovery".into(),
                totp: None,
                value: None,
                password: pw,
            };
            sending.set(true);
            code_error.set(None);
            password_error.set(None);
            error.set(None);
            leptos::task::spawn_local(async move {
                match api.post_json::<TfaAdded, _>(&path, &totp_request).await {
                    Ok(_) => match api.post_json::<TfaAdded, _>(&path, &recovery_request).await {
                        Ok(added) => keys.set(Some(added.recovery)),
                        Err(e) => error.set(Some(format!(
                            "The authenticator is added, but no recovery keys were made: {e}"
                        ))),
                    },
                    Err(e) => {
                        let (c, p, other) = enrolment_errors(&e);
                        code_error.set(c);
                        password_error.set(p);
                        error.set(other);
                    }
                }
                sending.set(false);
            });
        }
    };
    view! {
        <Show
            when=move || keys.with(Option::is_none)
            fallback=move || {
                view! {
                    <RecoveryKeyList keys=Signal::derive(move || keys.get().unwrap_or_default())/>
                    <div class="dialog-buttons">
                        <button
                            type="button"
                            class="button primary"
                            data-testid="tfa-enrol-done"
                            on:click=move |_| on_done.run(())
                        >
                            "I have saved them"
                        </button>
                    </div>
                }
            }
        >
            <form class="wizard tfa-enrolment" data-testid="tfa-enrolment" on:submit=submit.clone() novalidate>
                <p>
                    "Scan this code with an authenticator app (FreeOTP, Aegis, Google Authenticator, …) "
                    "or type the secret into it, then enter the code it shows."
                </p>
                <div class="tfa-qr" role="img" aria-label="QR code of the new authenticator secret" data-testid="tfa-qr">
                    {move || match qr.get() {
                        Some(Ok(svg)) => view! { <div inner_html=svg></div> }.into_any(),
                        Some(Err(e)) => view! { <p class="notice error">{format!("Cannot draw the QR code: {e}")}</p> }.into_any(),
                        None => view! { <p class="loading">"Making a secret…"</p> }.into_any(),
                    }}
                </div>
                <p class="tfa-secret">
                    "Secret: "
                    <code data-testid="tfa-secret" data-secret=move || secret.get().unwrap_or_default()>
                        {move || secret.get().map(|s| grouped(&s)).unwrap_or_default()}
                    </code>
                </p>
                <div class="form-grid">
                    <label for="tfa-enrol-code">"Code from the app"</label>
                    <div class="field">
                        <input
                            id="tfa-enrol-code"
                            type="text"
                            inputmode="numeric"
                            autocomplete="one-time-code"
                            data-testid="tfa-enrol-code"
                            bind:value=code
                        />
                        {move || {
                            code_error
                                .get()
                                .or_else(|| typed_code_problem.get().map(str::to_owned))
                                .map(|p| view! { <span class="field-error" data-testid="tfa-enrol-code-error">{p}</span> })
                        }}
                    </div>
                    <label for="tfa-enrol-password">"Your password"</label>
                    <div class="field">
                        <input
                            id="tfa-enrol-password"
                            type="password"
                            autocomplete="current-password"
                            data-testid="tfa-enrol-password"
                            bind:value=password
                        />
                        {move || password_error.get().map(|p| view! { <span class="field-error">{p}</span> })}
                    </div>
                </div>
                {move || error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="tfa-enrol-error">{e}</div> })}
                <div class="dialog-buttons">
                    <button
                        type="submit"
                        class="button primary"
                        data-testid="tfa-enrol-submit"
                        disabled=move || sending.get() || secret.with(Option::is_none)
                    >
                        "Add authenticator"
                    </button>
                </div>
            </form>
        </Show>
    }
}

/// Recovery keys, shown once.
#[component]
fn RecoveryKeyList(
    /// The keys.
    keys: Signal<Vec<String>>,
) -> impl IntoView {
    view! {
        <div class="recovery-keys" data-testid="recovery-keys">
            <p>
                <strong>"Your recovery keys."</strong>
                " Each one logs you in once instead of a code, if you lose the authenticator. "
                "Store them somewhere safe now: Kiln shows them only this once."
            </p>
            <ol>
                <For each=move || keys.get() key=|k| k.clone() let:k>
                    <li><code data-testid="recovery-key">{k}</code></li>
                </For>
            </ol>
        </div>
    }
}

/// "Two-factor" of the top bar: the user's factors (remove), a new authenticator, new
/// recovery keys. For another user (an administrator's view in Permissions, e.g. after a lost
/// phone) only the list and "Remove": only a user enrols its own factors.
#[component]
pub fn TfaDialog(
    /// Whose factors.
    userid: String,
    /// Whether `userid` is the logged-in user.
    #[prop(default = true)]
    own: bool,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let factors = RwSignal::new(Vec::<TfaEntry>::new());
    let error = RwSignal::new(None::<String>);
    let adding = RwSignal::new(false);
    let recovery_password = RwSignal::new(String::new());
    let new_keys = RwSignal::new(None::<Vec<String>>);
    // Stored, so that the closures below are `Copy` and the view can use them anywhere.
    let path = StoredValue::new(format!("access/tfa/{}", segment(&userid)));
    let reload = move || {
        let path = path.get_value();
        leptos::task::spawn_local(async move {
            match api.get::<Vec<TfaEntry>>(&path).await {
                Ok(list) => factors.set(list),
                Err(e) => error.set(Some(format!("Could not list the second factors: {e}"))),
            }
        });
    };
    Effect::new(reload);
    let remove = move |id: String| {
        let path = format!("{}/{}", path.get_value(), segment(&id));
        error.set(None);
        leptos::task::spawn_local(async move {
            match api.delete::<serde_json::Value>(&path).await {
                Ok(_) => reload(),
                Err(e) => error.set(Some(format!("Removing the {id} factor failed: {e}"))),
            }
        });
    };
    let make_keys = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let request = TfaAdd {
            kind: "recovery".into(),
            totp: None,
            value: None,
            password: recovery_password.get_untracked(),
        };
        let path = path.get_value();
        error.set(None);
        leptos::task::spawn_local(async move {
            match api.post_json::<TfaAdded, _>(&path, &request).await {
                Ok(added) => {
                    recovery_password.set(String::new());
                    new_keys.set(Some(added.recovery));
                    reload();
                }
                Err(e) => error.set(Some(
                    e.param("password")
                        .map(str::to_owned)
                        .unwrap_or_else(|| e.to_string()),
                )),
            }
        });
    };
    let label = |kind: &str| match kind {
        "totp" => "Authenticator app (TOTP)",
        "recovery" => "Recovery keys",
        _ => "Other",
    };
    let title = if own {
        "Two-factor authentication".to_owned()
    } else {
        format!("Second factors of {userid}")
    };
    let enrol_user = StoredValue::new(userid.clone());
    let enrol_done = move |()| {
        adding.set(false);
        reload();
    };
    view! {
        <Dialog title testid="tfa-dialog" on_close>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="tfa-error">{e}</div> })}
            <table class="grid" data-testid="tfa-factors">
                <thead>
                    <tr>
                        <th scope="col">"Factor"</th>
                        <th scope="col">"Added"</th>
                        <th scope="col">"Keys left"</th>
                        <th scope="col"></th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || factors.get() key=|f| (f.id.clone(), f.created, f.remaining) let:f>
                        {
                            let id = f.id.clone();
                            view! {
                                <tr data-testid="tfa-factor" data-id=f.id.clone()>
                                    <td>{label(&f.kind)}</td>
                                    <td>{crate::format::timestamp(f.created)}</td>
                                    <td>{f.remaining.map(|r| r.to_string()).unwrap_or_default()}</td>
                                    <td>
                                        <button
                                            type="button"
                                            class="button danger"
                                            data-testid="tfa-remove"
                                            on:click=move |_| remove(id.clone())
                                        >
                                            "Remove"
                                        </button>
                                    </td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            <Show when=move || factors.with(Vec::is_empty)>
                <p class="tree-empty" data-testid="tfa-none">"No second factor: the password alone logs in."</p>
            </Show>
            <Show when=move || own>
            <Show
                when=move || adding.get()
                fallback=move || {
                    view! {
                        <div class="dialog-buttons">
                            <button
                                type="button"
                                class="button primary"
                                data-testid="tfa-add-totp"
                                on:click=move |_| adding.set(true)
                            >
                                {move || if factors.with(|f| f.iter().any(|f| f.id == "totp")) {
                                    "Replace the authenticator"
                                } else {
                                    "Add an authenticator app"
                                }}
                            </button>
                        </div>
                    }
                }
            >
                <TotpEnrolment userid=enrol_user.get_value() on_done=enrol_done/>
            </Show>
            <form class="wizard" on:submit=make_keys novalidate>
                <h3>"New recovery keys"</h3>
                <p>"New keys replace the old ones."</p>
                <div class="form-grid">
                    <label for="tfa-recovery-password">"Your password"</label>
                    <input
                        id="tfa-recovery-password"
                        type="password"
                        autocomplete="current-password"
                        data-testid="tfa-recovery-password"
                        bind:value=recovery_password
                    />
                </div>
                <div class="dialog-buttons">
                    <button type="submit" class="button" data-testid="tfa-recovery-submit">
                        "Make new recovery keys"
                    </button>
                </div>
            </form>
            {move || new_keys.get().map(|keys| view! { <RecoveryKeyList keys=Signal::derive(move || keys.clone())/> })}
            </Show>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_follows_rfc_4648_without_padding() {
        // Test vectors of RFC 4648, section 10 (padding dropped).
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0u8; SECRET_BYTES]).len(), 32);
    }

    #[test]
    fn the_otpauth_url_names_issuer_account_and_parameters() {
        assert_eq!(
            otpauth_url("ada@kiln", "MZXW6YTBOI"),
            "otpauth://totp/Kiln:ada%40kiln?secret=MZXW6YTBOI&issuer=Kiln&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg(&otpauth_url("ada@kiln", &base32(&[7u8; SECRET_BYTES]))).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<path") || svg.contains("<rect"), "{svg}");
    }

    #[test]
    fn codes_are_six_digits() {
        assert_eq!(check_code("123 456"), None);
        assert!(check_code("12345").is_some());
        assert!(check_code("12345a").is_some());
        assert_eq!(grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
