//! What the console's forms share: a labelled text field that shows its own check as the user
//! types and the server's message for it after a refusal, the error line under a field, the
//! split of a refusal into per-field messages and one general line, and checks of the access
//! model's identifiers that mirror the server's (so most mistakes show before anything is
//! sent).

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::api::ApiError;

/// The server's per-field messages of the last refusal (field name → message).
pub type FieldErrors = RwSignal<BTreeMap<String, String>>;

/// A field's own check: what is wrong with a typed value, if anything.
pub type FieldCheck = fn(&str) -> Result<(), String>;

/// The server's refusal split for a form: per-field messages for the fields in `shown`,
/// and one general line for everything else (other fields, or a refusal without fields).
pub fn split_refusal(
    error: ApiError,
    shown: &[&str],
    what: &str,
) -> (BTreeMap<String, String>, Option<String>) {
    match error {
        ApiError::Params { message, errors } => {
            let other: Vec<String> = errors
                .iter()
                .filter(|(k, _)| !shown.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let general = if other.is_empty() {
                format!("{what} refused ({message}): see the marked fields.")
            } else {
                format!("{what} refused ({message}): {}", other.join("; "))
            };
            (errors, Some(general))
        }
        other => (BTreeMap::new(), Some(format!("{what} failed: {other}"))),
    }
}

/// The error line under a field, when it has one (`data-testid` = `testid`).
#[component]
pub fn FieldError(
    /// Test hook of the message.
    testid: String,
    /// The message.
    #[prop(into)]
    message: Signal<Option<String>>,
) -> impl IntoView {
    move || {
        message.get().map(|m| {
            view! {
                <span class="field-error" role="alert" data-testid=testid.clone()>
                    {m}
                </span>
            }
        })
    }
}

/// A labelled text input in a `form-grid`: its own check runs as the user types (once
/// something is typed), and the server's message for `name` shows until the field is edited.
/// Test hooks: `{testid}` on the input, `{testid}-error` on the message.
#[component]
pub fn TextField(
    /// The label.
    label: &'static str,
    /// The API parameter the field fills (the key of the server's message).
    name: &'static str,
    /// Test hook of the input; also its element id.
    testid: &'static str,
    /// The value.
    value: RwSignal<String>,
    /// The server's per-field messages.
    errors: FieldErrors,
    /// What is wrong with a typed value, if anything (the server's rule).
    #[prop(optional)]
    check: Option<FieldCheck>,
    /// `text`, `password`, `email`, `number`, `datetime-local`, ….
    #[prop(default = "text")]
    kind: &'static str,
    /// Shown in the empty field.
    #[prop(optional)]
    placeholder: &'static str,
    /// Read-only (an id that cannot change).
    #[prop(optional)]
    disabled: bool,
) -> impl IntoView {
    let message = Signal::derive(move || {
        let typed = value.get();
        let local = check
            .filter(|_| !typed.is_empty())
            .and_then(|check| check(&typed).err());
        local.or_else(|| errors.with(|e| e.get(name).cloned()))
    });
    view! {
        <label for=testid>{label}</label>
        <div class="field">
            <input
                id=testid
                type=kind
                data-testid=testid
                placeholder=placeholder
                disabled=disabled
                autocomplete=if kind == "password" { "new-password" } else { "off" }
                prop:value=move || value.get()
                on:input=move |ev| {
                    errors.update(|e| {
                        e.remove(name);
                    });
                    value.set(event_target_value(&ev));
                }
            />
            <FieldError testid=format!("{testid}-error") message/>
        </div>
    }
}

fn name_ok(s: &str, first_letter_only: bool) -> bool {
    let first_ok = s.chars().next().is_some_and(|c| {
        if first_letter_only {
            c.is_ascii_alphabetic()
        } else {
            c.is_ascii_alphanumeric()
        }
    });
    first_ok
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A user id `name@kiln`, as the server accepts it.
pub fn check_userid(s: &str) -> Result<(), String> {
    match s.trim().split_once('@') {
        Some((name, "kiln")) if name_ok(name, false) => Ok(()),
        _ => Err(
            "Expected name@kiln: 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit."
                .into(),
        ),
    }
}

/// A group, role or pool id, as the server accepts it.
pub fn check_name(s: &str) -> Result<(), String> {
    if name_ok(s.trim(), false) {
        Ok(())
    } else {
        Err("1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit.".into())
    }
}

/// An API token's name, as the server accepts it.
pub fn check_token_name(s: &str) -> Result<(), String> {
    if name_ok(s.trim(), true) {
        Ok(())
    } else {
        Err("1 to 64 letters, digits, '.', '-' or '_', starting with a letter.".into())
    }
}

/// A new password: as long as the server wants.
pub fn check_password(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if (8..=1024).contains(&n) {
        Ok(())
    } else {
        Err("Use 8 to 1024 characters.".into())
    }
}

/// An e-mail address (empty is fine).
pub fn check_email(s: &str) -> Result<(), String> {
    if s.is_empty() || (s.contains('@') && !s.contains(char::is_whitespace)) {
        Ok(())
    } else {
        Err("Expected an e-mail address such as ada@example.org.".into())
    }
}

/// An ACL path: `/`, or `/` followed by segments of letters, digits, `.`, `-`, `_`.
pub fn check_acl_path(s: &str) -> Result<(), String> {
    const ROOTS: [&str; 7] = ["access", "nodes", "vms", "pool", "storage", "sdn", ""];
    let s = s.trim();
    let mut parts = s.split('/');
    let ok = parts.next() == Some("")
        && (s == "/"
            || (s.split('/').nth(1).is_some_and(|r| ROOTS.contains(&r))
                && s[1..].split('/').all(|p| name_ok(p, false))));
    if ok {
        Ok(())
    } else {
        Err("Use /, /access, /access/groups/<group>, /nodes/<node>, /vms/<vmid>, /pool/<pool>, /storage/<storage> or /sdn.".into())
    }
}

/// A whole number within `min..=max` typed into a field (empty = `None`).
pub fn parse_optional_number(text: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(format!("A whole number from {min} to {max}, or empty.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_as_the_server_does() {
        assert!(check_userid("ada@kiln").is_ok());
        assert!(check_userid("ada").is_err());
        assert!(check_userid("ada@pam").is_err());
        assert!(check_userid("-ada@kiln").is_err());
        assert!(check_name("class-1").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_token_name("ci").is_ok());
        assert!(check_token_name("1ci").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long-enough").is_ok());
        assert!(check_email("").is_ok());
        assert!(check_email("a@b").is_ok());
        assert!(check_email("nope").is_err());
    }

    #[test]
    fn acl_paths_start_at_a_known_root() {
        for ok in [
            "/",
            "/vms/100",
            "/pool/lab1",
            "/access/groups/class1",
            "/nodes",
        ] {
            assert!(check_acl_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "vms", "/vm/100", "/vms//1", "/vms/a b"] {
            assert!(check_acl_path(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_optional_number(" 4 ", 1, 10), Ok(Some(4)));
        assert_eq!(parse_optional_number("", 1, 10), Ok(None));
        assert!(parse_optional_number("0", 1, 10).is_err());
    }

    #[test]
    fn refusals_are_split_into_shown_fields_and_the_rest() {
        let errors: BTreeMap<String, String> = [
            ("nodes".to_owned(), "no node 'nx'".to_owned()),
            ("digest".to_owned(), "stale".to_owned()),
        ]
        .into();
        let (fields, general) = split_refusal(
            ApiError::Params {
                message: "invalid parameters".into(),
                errors: errors.clone(),
            },
            &["nodes"],
            "Saving the rule",
        );
        assert_eq!(fields, errors);
        assert_eq!(
            general.as_deref(),
            Some("Saving the rule refused (invalid parameters): digest: stale")
        );
        let (fields, general) = split_refusal(
            ApiError::Server {
                status: 409,
                message: "exists".into(),
            },
            &["nodes"],
            "Saving the rule",
        );
        assert!(fields.is_empty());
        assert_eq!(
            general.as_deref(),
            Some("Saving the rule failed: exists (HTTP 409)")
        );
    }
}
