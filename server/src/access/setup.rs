//! Login requirements a user must meet before its session is a normal one: a password to
//! replace (a lab's one-time password, or one an administrator set) and a TOTP second factor
//! the account requires. Until then the session is restricted: only the routes that meet the
//! requirements (and logout) answer, the others refuse with a message saying what to do.

use kiln_api_types::SetupStep;

use super::UserInfo;

/// What a route does for a session that still has a [`SetupStep`] to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuringSetup {
    /// Refused (most routes).
    Refused,
    /// Allowed (logout, the version).
    Allowed,
    /// Allowed on the caller's own account only (parameter `userid` is the caller).
    OwnAccount,
}

/// Request extension: the session's user still has this step to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSetup(pub SetupStep);

/// The step `user` must take first, if any. The password comes first: enrolling a second
/// factor asks for the current password.
pub fn pending(user: &UserInfo) -> Option<SetupStep> {
    if user.must_change_password {
        Some(SetupStep::ChangePassword)
    } else if user.tfa_required && !user.has_totp {
        Some(SetupStep::EnrolTfa)
    } else {
        None
    }
}

/// Why a restricted session is refused a route, and what to do instead.
pub fn refusal(step: SetupStep, userid: &str) -> String {
    match step {
        SetupStep::ChangePassword => format!(
            "{userid} must change the password first (it is a one-time password or was set by \
             an administrator): PUT /api2/json/access/password, or log in to the web UI"
        ),
        SetupStep::EnrolTfa => format!(
            "{userid} must add a TOTP second factor first (the account requires one): \
             POST /api2/json/access/tfa/{userid}, or log in to the web UI"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(must_change_password: bool, tfa_required: bool, has_totp: bool) -> UserInfo {
        UserInfo {
            userid: "ada@kiln".into(),
            enabled: true,
            must_change_password,
            tfa_required,
            has_totp,
            ..Default::default()
        }
    }

    #[test]
    fn the_password_comes_before_the_second_factor() {
        assert_eq!(pending(&user(false, false, false)), None);
        assert_eq!(
            pending(&user(true, true, false)),
            Some(SetupStep::ChangePassword)
        );
        assert_eq!(
            pending(&user(false, true, false)),
            Some(SetupStep::EnrolTfa)
        );
        assert_eq!(pending(&user(false, true, true)), None);
        assert_eq!(
            pending(&user(true, false, true)),
            Some(SetupStep::ChangePassword)
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(refusal(SetupStep::EnrolTfa, "ada@kiln").contains("/access/tfa/ada@kiln"));
        assert!(refusal(SetupStep::ChangePassword, "ada@kiln").contains("/access/password"));
    }
}
