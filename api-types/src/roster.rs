//! The roster CSV of a lab: one student per line, read by the server (authoritative) and by
//! the web UI (to show mistakes before anything is sent), so both report the same lines.
//!
//! The first line names the columns, in any order, case-insensitive: `username` (also
//! `user`, `userid`, `login`), `email` (`e-mail`, `mail`), `firstname` (`first name`,
//! `given name`), `lastname` (`last name`, `surname`), or `name` (a full name, split at its
//! last space). `username` or `email` is required; without a user name, the part of the
//! e-mail address before `@` is used. Fields are separated by commas (or semicolons or tabs,
//! as the header shows), may be quoted with `"` (`""` for a quote), and may not span lines.
//! Blank lines are skipped; a byte-order mark is ignored.

use std::fmt;

/// Realm of the accounts a roster creates.
pub const REALM: &str = "kiln";
/// Most students one roster may hold.
pub const MAX_STUDENTS: usize = 500;

/// One student of a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// Line in the file (1 is the header).
    pub line: usize,
    /// `name@kiln`.
    pub userid: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// First name (may be empty).
    pub firstname: String,
    /// Last name (may be empty).
    pub lastname: String,
}

/// What is wrong with one line of a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Line in the file (1 is the header).
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Username,
    Email,
    Firstname,
    Lastname,
    FullName,
}

const KNOWN: &str = "username, email, firstname, lastname, name";

fn column(header: &str) -> Option<Column> {
    let h = header.trim().to_ascii_lowercase().replace(['_', '-'], " ");
    Some(match h.as_str() {
        "username" | "user name" | "user" | "userid" | "user id" | "login" => Column::Username,
        "email" | "e mail" | "mail" | "email address" => Column::Email,
        "firstname" | "first name" | "given name" => Column::Firstname,
        "lastname" | "last name" | "surname" | "family name" => Column::Lastname,
        "name" | "full name" | "fullname" => Column::FullName,
        _ => return None,
    })
}

/// Whether `name` is a valid user name (the part before `@kiln`): 1 to 64 letters, digits,
/// `.`, `-` or `_`, starting with a letter or digit.
pub fn valid_user_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Split one line into fields. `Err` says what is wrong.
fn split(line: &str, sep: char) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else if c == sep {
            fields.push(std::mem::take(&mut field));
            was_quoted = false;
        } else if c == '"' && field.trim().is_empty() && !was_quoted {
            field.clear();
            quoted = true;
            was_quoted = true;
        } else if was_quoted && !c.is_whitespace() {
            return Err(format!(
                "text after a closing quote ('{c}'); put the whole field in quotes"
            ));
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err("a quoted field is not closed on this line (fields may not span lines)".into());
    }
    fields.push(field);
    Ok(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

fn text_ok(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Parse a roster. Every line is checked; `Err` lists every mistake, line by line, so that
/// the file can be fixed in one go (nothing is created from a roster with mistakes).
pub fn parse_roster(bytes: &[u8]) -> Result<Vec<RosterEntry>, Vec<LineError>> {
    let (entries, errors) = parse_lines(bytes);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// Parse a roster into the lines that are right and the mistakes of the others (sorted by
/// line), so that a caller can add its own checks of the good lines to the report.
pub fn parse_lines(bytes: &[u8]) -> (Vec<RosterEntry>, Vec<LineError>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => lines.push((i + 1, text.to_owned())),
            Err(e) => errors.push(LineError {
                line: i + 1,
                message: format!(
                    "not valid UTF-8 (at byte {} of the line); save the file as UTF-8",
                    e.valid_up_to() + 1
                ),
            }),
        }
    }
    let mut lines = lines.into_iter().filter(|(_, l)| !l.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        errors.push(LineError {
            line: 1,
            message: format!("the file is empty; the first line names the columns ({KNOWN})"),
        });
        return (vec![], errors);
    };
    let sep = [',', ';', '\t']
        .into_iter()
        .find(|s| header.contains(*s))
        .unwrap_or(',');
    let names = match split(&header, sep) {
        Ok(n) => n,
        Err(e) => {
            errors.push(LineError {
                line: header_line,
                message: e,
            });
            return (vec![], errors);
        }
    };
    let mut columns = Vec::new();
    for name in &names {
        match column(name) {
            Some(c) if columns.contains(&c) => errors.push(LineError {
                line: header_line,
                message: format!("column '{name}' appears twice"),
            }),
            Some(c) => columns.push(c),
            None => errors.push(LineError {
                line: header_line,
                message: format!(
                    "unknown column '{name}'; the first line names the columns ({KNOWN})"
                ),
            }),
        }
    }
    if !columns.contains(&Column::Username) && !columns.contains(&Column::Email) {
        errors.push(LineError {
            line: header_line,
            message: format!(
                "a 'username' or an 'email' column is missing (found: {}); the first line names the columns ({KNOWN})",
                names.join(", ")
            ),
        });
    }
    if !errors.iter().all(|e| e.line != header_line) {
        return (vec![], errors);
    }
    let mut entries: Vec<RosterEntry> = Vec::new();
    for (line, text) in lines {
        let fail = |message: String| LineError { line, message };
        let fields = match split(&text, sep) {
            Ok(f) => f,
            Err(e) => {
                errors.push(fail(e));
                continue;
            }
        };
        if fields.len() != columns.len() {
            errors.push(fail(format!(
                "{} field(s), but the first line names {} column(s) ({})",
                fields.len(),
                columns.len(),
                names.join(", ")
            )));
            continue;
        }
        let get = |c: Column| {
            columns
                .iter()
                .position(|x| *x == c)
                .map(|i| fields[i].clone())
                .unwrap_or_default()
        };
        let email = get(Column::Email);
        let (mut firstname, mut lastname) = (get(Column::Firstname), get(Column::Lastname));
        let full = get(Column::FullName);
        if !full.is_empty() {
            match full.rsplit_once(' ') {
                Some((first, last)) if firstname.is_empty() && lastname.is_empty() => {
                    (firstname, lastname) = (first.trim().to_owned(), last.to_owned())
                }
                None if lastname.is_empty() => lastname = full.clone(),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        let email_ok = email.len() <= 254
            && !email.contains(char::is_whitespace)
            && email
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if !email.is_empty() && !email_ok {
            problems.push(format!(
                "'{email}' is not an e-mail address such as ada@example.org"
            ));
        }
        let given = get(Column::Username);
        let name = if given.is_empty() {
            let local = email.split('@').next().unwrap_or_default().to_owned();
            if email.is_empty() {
                problems.push("no user name and no e-mail address; fill in one of them".into());
            } else if !email_ok {
                // Reported above.
            } else if !valid_user_name(&local) {
                problems.push(format!(
                    "no user name, and '{local}' (from the e-mail address) is not a valid one; fill in the username column"
                ));
            }
            local
        } else {
            let name = match given.split_once('@') {
                Some((n, REALM)) => n.to_owned(),
                Some((_, realm)) => {
                    problems.push(format!(
                        "user '{given}' is in realm '{realm}'; Kiln's accounts are name@{REALM}"
                    ));
                    String::new()
                }
                None => given.clone(),
            };
            if !name.is_empty() && !valid_user_name(&name) {
                problems.push(format!(
                    "'{given}' is not a valid user name: 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit"
                ));
            }
            name
        };
        if !text_ok(&firstname, 128) || !text_ok(&lastname, 128) {
            problems.push("names are at most 128 characters, without control characters".into());
        }
        if !problems.is_empty() {
            errors.push(fail(problems.join("; ")));
            continue;
        }
        let userid = format!("{name}@{REALM}");
        if let Some(first) = entries
            .iter()
            .find(|e| e.userid.eq_ignore_ascii_case(&userid))
        {
            errors.push(fail(format!(
                "user {userid} is already on line {}; each student once",
                first.line
            )));
            continue;
        }
        if entries.len() == MAX_STUDENTS {
            errors.push(fail(format!(
                "more than {MAX_STUDENTS} students; split the roster into several labs"
            )));
            break;
        }
        entries.push(RosterEntry {
            line,
            userid,
            email,
            firstname,
            lastname,
        });
    }
    if entries.is_empty() && errors.is_empty() {
        errors.push(LineError {
            line: header_line,
            message: "no students: add one line per student below the column names".into(),
        });
    }
    errors.sort_by_key(|e| e.line);
    (entries, errors)
}

/// Every message of `errors`, one line each (`line N: …`).
pub fn describe(errors: &[LineError]) -> String {
    errors
        .iter()
        .map(LineError::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<RosterEntry> {
        parse_roster(text.as_bytes()).expect("a valid roster")
    }

    fn errors(bytes: &[u8]) -> Vec<String> {
        parse_roster(bytes)
            .expect_err("an invalid roster")
            .iter()
            .map(LineError::to_string)
            .collect()
    }

    #[test]
    fn a_roster_gives_accounts_in_realm_kiln() {
        let list = ok("\u{feff}Username,Email,First name,Last name\r\nada,ada@example.org,Ada,Lovelace\r\n\r\n\"grace.h\",\"grace@example.org\",\"Grace \"\"Amazing\"\"\",Hopper\n");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].userid, "ada@kiln");
        assert_eq!(list[0].line, 2);
        assert_eq!(list[1].userid, "grace.h@kiln");
        assert_eq!(list[1].firstname, "Grace \"Amazing\"");
        assert_eq!(list[1].line, 4);
    }

    #[test]
    fn user_names_come_from_emails_and_full_names_split() {
        let list = ok("email;name\nalan@example.org;Alan Mathison Turing\n");
        assert_eq!(list[0].userid, "alan@kiln");
        assert_eq!(
            (list[0].firstname.as_str(), list[0].lastname.as_str()),
            ("Alan Mathison", "Turing")
        );
        let tabs = ok("username\temail\nbob@kiln\t\n");
        assert_eq!(tabs[0].userid, "bob@kiln");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = b"username,email\nada,ada@example.org\nbad name,x@y\nada,other@example.org\ncarol\n\xff\xfe,z@z\n,not-an-email\nzed@pve,\n\"open,x\n";
        assert_eq!(
            errors(text),
            [
                "line 3: 'bad name' is not a valid user name: 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit",
                "line 4: user ada@kiln is already on line 2; each student once",
                "line 5: 1 field(s), but the first line names 2 column(s) (username, email)",
                "line 6: not valid UTF-8 (at byte 1 of the line); save the file as UTF-8",
                "line 7: 'not-an-email' is not an e-mail address such as ada@example.org",
                "line 8: user 'zed@pve' is in realm 'pve'; Kiln's accounts are name@kiln",
                "line 9: a quoted field is not closed on this line (fields may not span lines)",
            ]
        );
    }

    #[test]
    fn the_header_must_name_known_columns() {
        assert_eq!(
            errors(b"firstname,lastname\nAda,Lovelace\n"),
            ["line 1: a 'username' or an 'email' column is missing (found: firstname, lastname); the first line names the columns (username, email, firstname, lastname, name)"]
        );
        assert_eq!(
            errors(b"username,shoe size\nada,38\n")[0],
            "line 1: unknown column 'shoe size'; the first line names the columns (username, email, firstname, lastname, name)"
        );
        assert_eq!(
            errors(b"\n\n")[0],
            "line 1: the file is empty; the first line names the columns (username, email, firstname, lastname, name)"
        );
        assert_eq!(
            errors(b"username\n")[0],
            "line 1: no students: add one line per student below the column names"
        );
    }
}
