//! Accounts from a roster CSV: every line is checked (the CSV's rules, then that the account
//! does not exist yet), passwords are generated and hashed, and nothing is stored unless every
//! line is right. The passwords are answered once and stored only as argon2id hashes.

use kiln_api_types::labs::LabAccount;
use kiln_api_types::roster::{parse_lines, LineError, RosterEntry};
use rand::Rng;

use crate::access::AccessControl;
use crate::auth::password::hash_password;
use crate::db::UserRecord;

/// Length of a generated password.
pub const PASSWORD_LEN: usize = 12;
/// Characters of generated passwords: no 0/O, 1/l/I, to read them off a sheet of paper.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Accounts ready to store, and what to hand out to the students.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// The rows to insert (password hashes).
    pub records: Vec<UserRecord>,
    /// User ids with their passwords, to show once.
    pub handout: Vec<LabAccount>,
}

/// Hashing a password failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash a password: {0}")]
pub struct HashFailed(String);

/// Check a roster: `Err` lists every wrong line, including accounts that exist already.
pub fn check(bytes: &[u8], ac: &AccessControl) -> Result<Vec<RosterEntry>, Vec<LineError>> {
    let (entries, mut errors) = parse_lines(bytes);
    let taken = entries
        .iter()
        .filter(|e| ac.user(&e.userid).is_some())
        .map(|e| LineError {
            line: e.line,
            message: format!(
                "user {} already exists; leave the line out (a lab can use an existing group as its roster instead)",
                e.userid
            ),
        });
    errors.extend(taken);
    errors.sort_by_key(|e| e.line);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// A new password.
pub fn generate_password() -> String {
    let mut rng = rand::thread_rng();
    (0..PASSWORD_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Give every entry a password and hash them all (in parallel, off the async threads).
pub async fn accounts(entries: Vec<RosterEntry>, comment: &str) -> Result<Accounts, HashFailed> {
    let jobs = entries.into_iter().map(|e| {
        let password = generate_password();
        let comment = comment.to_owned();
        async move {
            let pw = password.clone();
            let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
                .await
                .map_err(|e| HashFailed(e.to_string()))?
                .map_err(|e| HashFailed(e.to_string()))?;
            let record = UserRecord {
                userid: e.userid.clone(),
                password_hash: hash,
                enabled: true,
                expire: 0,
                firstname: e.firstname.clone(),
                lastname: e.lastname.clone(),
                email: e.email.clone(),
                comment,
                tfa_required: false,
                // A one-time password: the student replaces it at the first login.
                must_change_password: true,
            };
            let handout = LabAccount {
                userid: e.userid,
                password,
                email: e.email,
                firstname: e.firstname,
                lastname: e.lastname,
            };
            Ok::<_, HashFailed>((record, handout))
        }
    });
    let done = futures::future::try_join_all(jobs).await?;
    let (records, handout) = done.into_iter().unzip();
    Ok(Accounts { records, handout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::UserInfo;

    #[test]
    fn existing_accounts_are_reported_by_line() {
        let mut ac = AccessControl::default();
        ac.add_user(UserInfo {
            userid: "bob@kiln".into(),
            enabled: true,
            ..Default::default()
        });
        let errors = check(b"username\nada\nbob\n", &ac).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0]
            .message
            .starts_with("user bob@kiln already exists"));
        assert_eq!(check(b"username\nada\n", &ac).unwrap().len(), 1);
    }

    #[test]
    fn passwords_are_long_and_unambiguous() {
        let a = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(a, generate_password());
    }

    #[tokio::test]
    async fn accounts_carry_a_hash_of_the_password_handed_out() {
        let entries =
            kiln_api_types::roster::parse_roster(b"username,email\nada,ada@example.org\n").unwrap();
        let acc = accounts(entries, "lab l1").await.unwrap();
        assert_eq!(acc.handout[0].userid, "ada@kiln");
        assert_eq!(acc.records[0].email, "ada@example.org");
        assert!(crate::auth::password::verify_password(
            &acc.records[0].password_hash,
            &acc.handout[0].password
        ));
    }
}
