//! The HTTP/1.1 exchange that opens a node-to-node migration stream: inside the mutual-TLS
//! connection the source asks `POST /v1/migrate` with `Upgrade: kiln-migration/1` and the
//! one-time token its agent got from the target's agent (`Authorization: KilnMigration
//! <token>`); the target answers `101 Switching Protocols` and the connection carries the
//! migration protocol from then on — or answers 400/403 with a reason and closes it, and goes
//! on waiting for the real source.

use std::io::{self, Read, Write};

use super::protocol::Token;

/// The `Upgrade` protocol.
pub const PROTOCOL: &str = "kiln-migration/1";
/// Longest request or answer head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Why the exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Reading or writing failed.
    #[error("the stream failed during the HTTP upgrade")]
    Io(#[from] io::Error),
    /// The head was not HTTP/1.1 or too long.
    #[error("not an HTTP/1.1 migration upgrade: {0}")]
    Malformed(String),
    /// The target refused (its status and reason).
    #[error("the target answered {status}: {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The target's reason.
        reason: String,
    },
}

/// Reads an HTTP head (up to the blank line) byte by byte, so nothing after it is consumed.
fn read_head(r: &mut impl Read) -> Result<String, UpgradeError> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(UpgradeError::Malformed("head longer than 8 KiB".into()));
        }
        r.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    String::from_utf8(head).map_err(|_| UpgradeError::Malformed("head is not UTF-8".into()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Source: asks `host` to switch this connection to the migration stream with `token`.
pub fn request(stream: &mut impl ReadWrite, host: &str, token: &Token) -> Result<(), UpgradeError> {
    write!(
        stream,
        "POST /v1/migrate HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {PROTOCOL}\r\nAuthorization: KilnMigration {}\r\nContent-Length: 0\r\n\r\n",
        token.0
    )?;
    stream.flush()?;
    let head = read_head(stream)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| UpgradeError::Malformed(head.lines().next().unwrap_or("").to_owned()))?;
    if status == 101 {
        return Ok(());
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    let mut body = vec![0u8; length];
    let _ = stream.read_exact(&mut body);
    Err(UpgradeError::Refused {
        status,
        reason: String::from_utf8_lossy(&body).trim().to_owned(),
    })
}

/// Target: reads the source's request and answers it; `Ok` once the stream is switched.
pub fn accept(stream: &mut impl ReadWrite, token: Option<&Token>) -> Result<(), UpgradeError> {
    let head = read_head(stream)?;
    let refuse = |stream: &mut dyn Write, status: u16, reason: &str| -> UpgradeError {
        let text = match status {
            400 => "Bad Request",
            _ => "Forbidden",
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
            reason.len()
        );
        let _ = stream.flush();
        UpgradeError::Refused {
            status,
            reason: reason.to_owned(),
        }
    };
    let request_line = head.lines().next().unwrap_or("");
    let upgrade = header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case(PROTOCOL));
    if !request_line.starts_with("POST /v1/migrate ") || !upgrade {
        return Err(refuse(
            stream,
            400,
            &format!("expected POST /v1/migrate with Upgrade: {PROTOCOL}"),
        ));
    }
    if let Some(expected) = token {
        let given = header(&head, "authorization")
            .and_then(|v| v.strip_prefix("KilnMigration "))
            .map(|t| Token(t.trim().to_owned()));
        if !given.is_some_and(|t| t.matches(expected)) {
            return Err(refuse(
                stream,
                403,
                "the migration token does not match the one this target's node agent issued; start the migration through the node agents",
            ));
        }
    }
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {PROTOCOL}\r\n\r\n"
    )?;
    stream.flush()?;
    Ok(())
}

/// A byte stream both ways.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("pair")
    }

    #[test]
    fn the_right_token_switches_the_stream_and_keeps_what_follows() {
        let (mut a, mut b) = pair();
        let token = Token("t0k".into());
        let target = std::thread::spawn(move || {
            accept(&mut b, Some(&Token("t0k".into())))?;
            let mut next = [0u8; 4];
            b.read_exact(&mut next)?;
            assert_eq!(&next, b"MIG!");
            Ok::<_, UpgradeError>(())
        });
        request(&mut a, "n2", &token).expect("upgraded");
        a.write_all(b"MIG!").expect("write");
        target.join().expect("join").expect("accepted");
    }

    #[test]
    fn a_wrong_token_or_no_upgrade_is_refused_with_the_reason() {
        let (mut a, mut b) = pair();
        let target = std::thread::spawn(move || accept(&mut b, Some(&Token("right".into()))));
        let e = request(&mut a, "n2", &Token("wrong".into())).expect_err("refused");
        assert!(
            matches!(e, UpgradeError::Refused { status: 403, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("token does not match"), "{e}");
        assert!(target.join().expect("join").is_err());

        let (mut a, mut b) = pair();
        let target = std::thread::spawn(move || accept(&mut b, None));
        a.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = a.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(target.join().expect("join").is_err());
    }
}
