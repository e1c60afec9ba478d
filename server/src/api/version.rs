//! `GET /version`.

use kiln_api_types::VersionInfo;

use super::error::{ok, ApiResult};
use crate::auth::AuthUser;

/// `GET /api2/json/version`.
pub async fn get(_user: AuthUser) -> ApiResult<VersionInfo> {
    let version = env!("CARGO_PKG_VERSION");
    Ok(ok(VersionInfo {
        version: version.to_owned(),
        release: version
            .rsplit_once('.')
            .map(|(r, _)| r)
            .unwrap_or(version)
            .to_owned(),
        repoid: option_env!("KILN_GIT_REV").unwrap_or("unknown").to_owned(),
    }))
}
