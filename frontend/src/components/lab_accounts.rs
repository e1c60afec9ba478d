//! The accounts a roster CSV created, with their one-time passwords: shown once, to hand out
//! or download as CSV (the server keeps only hashes).

use kiln_api_types::labs::LabAccount;
use leptos::prelude::*;

use crate::components::dialog::Dialog;

/// A CSV field, quoted when it needs to be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The accounts as CSV: `username,password,email,firstname,lastname`.
pub fn accounts_csv(accounts: &[LabAccount]) -> String {
    let mut out = String::from("username,password,email,firstname,lastname\n");
    for a in accounts {
        let row = [&a.userid, &a.password, &a.email, &a.firstname, &a.lastname]
            .map(|s| field(s))
            .join(",");
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// Percent-encodes text for a `data:` URL.
fn data_url(csv: &str) -> String {
    let mut out = String::from("data:text/csv;charset=utf-8,");
    for b in csv.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'@' => {
                out.push(char::from(b))
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The dialog listing new accounts and their passwords.
#[component]
pub fn AccountsDialog(
    /// The lab the accounts joined.
    labid: String,
    /// The accounts.
    accounts: Vec<LabAccount>,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let href = data_url(&accounts_csv(&accounts));
    let file = format!("{labid}-accounts.csv");
    let count = accounts.len();
    let rows = accounts
        .into_iter()
        .map(|a| {
            view! {
                <tr data-testid="lab-account" data-userid=a.userid.clone()>
                    <td>{a.userid.clone()}</td>
                    <td><code data-testid="lab-account-password">{a.password.clone()}</code></td>
                    <td>{format!("{} {}", a.firstname, a.lastname).trim().to_owned()}</td>
                    <td>{a.email.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <Dialog title=format!("Accounts of lab {labid}") testid="lab-accounts-dialog" on_close>
            <div class="notice warning" role="status">
                {format!(
                    "{count} account(s) created. Hand out these passwords now: they are shown only this once (Kiln keeps only hashes). Students change theirs with PUT /api2/json/access/password."
                )}
            </div>
            <table class="grid">
                <thead>
                    <tr>
                        <th scope="col">"User"</th>
                        <th scope="col">"One-time password"</th>
                        <th scope="col">"Name"</th>
                        <th scope="col">"E-mail"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <div class="dialog-buttons">
                <a class="button" href=href download=file data-testid="lab-accounts-download">
                    "Download as CSV"
                </a>
                <button type="button" class="button primary" on:click=move |_| on_close.run(())>
                    "Done"
                </button>
            </div>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_become_a_csv_to_download() {
        let csv = accounts_csv(&[LabAccount {
            userid: "ada@kiln".into(),
            password: "pw".into(),
            email: "ada@example.org".into(),
            firstname: "Ada, Countess".into(),
            lastname: "Lovelace".into(),
        }]);
        assert_eq!(
            csv,
            "username,password,email,firstname,lastname\nada@kiln,pw,ada@example.org,\"Ada, Countess\",Lovelace\n"
        );
        assert!(data_url("a b\n").ends_with(",a%20b%0A"));
    }
}
