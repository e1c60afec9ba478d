//! Turns a transport error of reqwest into what went wrong, so errors can say what to do.
//!
//! reqwest wraps the interesting cause (an `io::Error` from the socket, a `rustls::Error` from
//! the handshake) several layers deep, and `io::Error::source` skips the error it wraps, so the
//! chain is walked by hand.

use std::error::Error as StdError;
use std::io;

use rustls::{AlertDescription, CertificateError};

/// What a failed request ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request timed out.
    Timeout,
    /// Nothing could be connected to; the reason, e.g. "connection refused".
    Unreachable(String),
    /// The peer's certificate does not chain to our roots.
    UntrustedCertificate,
    /// The peer's certificate chains to our roots but names another host.
    WrongName,
    /// The peer refused our client certificate (the alert it sent).
    CertificateRefused(String),
    /// Another TLS failure.
    Tls(String),
    /// Anything else.
    Other(String),
}

pub(crate) fn classify(err: &reqwest::Error) -> Failure {
    if let Some(tls) = classify_tls(err) {
        return tls;
    }
    if err.is_timeout() {
        return Failure::Timeout;
    }
    if err.is_connect() {
        return Failure::Unreachable(root_cause(err));
    }
    Failure::Other(root_cause(err))
}

/// Classifies an error of a connection made by hand (the console WebSocket): TLS problems as
/// by [`classify`], anything else as [`Failure::Other`] with its root cause.
pub(crate) fn classify_error(err: &(dyn StdError + 'static)) -> Failure {
    classify_tls(err).unwrap_or_else(|| Failure::Other(root_cause(err)))
}

/// The root cause of a failed connect, in words.
pub(crate) fn unreachable(err: &(dyn StdError + 'static)) -> Failure {
    Failure::Unreachable(root_cause(err))
}

fn classify_tls(err: &(dyn StdError + 'static)) -> Option<Failure> {
    find_rustls_error(err).map(|tls| match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => Failure::UntrustedCertificate,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Failure::WrongName,
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError),
        ) => Failure::CertificateRefused(format!("{alert:?}")),
        other => Failure::Tls(other.to_string()),
    })
}

fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = next_cause(e);
    }
    None
}

/// The innermost cause, in words: "connection refused", not the whole chain of wrappers.
fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    loop {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                io::ErrorKind::TimedOut => return "timed out".to_owned(),
                _ => {}
            }
        }
        match next_cause(current) {
            Some(next) => current = next,
            None => return current.to_string(),
        }
    }
}

/// The error `err` wraps. For an `io::Error` that is the wrapped error itself, which
/// `io::Error::source` skips.
fn next_cause<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
        return Some(inner);
    }
    err.source()
}
