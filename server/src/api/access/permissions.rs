//! `/access/permissions`: effective privileges, and the `cap` object of a login.

use std::collections::BTreeMap;

use kiln_api_types::access::{Permissions, PermissionsQuery};

use crate::access::ids::{normalize_acl_path, parse_full_tokenid, Userid};
use crate::access::{AccessControl, PrivSet};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::Query;
use crate::auth::AuthUser;

/// `GET /api2/json/access/permissions`: the caller's (or, with `Sys.Audit` on `/access`,
/// anyone's) privileges on every interesting path, or on `path`.
pub async fn get(user: AuthUser, Query(q): Query<PermissionsQuery>) -> ApiResult<Permissions> {
    let ac = &user.access;
    let (userid, token) = match q.userid.as_deref() {
        None => (user.userid.clone(), user.token.clone()),
        Some(id) if id.contains('!') => {
            let (u, t) =
                parse_full_tokenid(id).map_err(|e| ApiError::param("userid", e.to_string()))?;
            if ac.token(id).is_none() {
                return Err(ApiError::NotFound(format!("API token {id} does not exist")));
            }
            (u.to_string(), Some(t))
        }
        Some(id) => {
            Userid::parse(id)?;
            if ac.user(id).is_none() {
                return Err(ApiError::NotFound(format!("user {id} does not exist")));
            }
            (id.to_owned(), None)
        }
    };
    let paths = match q.path.as_deref() {
        Some(p) => [normalize_acl_path(p)?].into(),
        None => ac.report_paths(),
    };
    let mut out = Permissions::new();
    for path in paths {
        let privs = ac.privileges(&userid, token.as_deref(), &path);
        if privs.set.is_empty() {
            continue;
        }
        out.insert(
            path,
            privs
                .set
                .iter()
                .map(|p| (p.name().to_owned(), u8::from(privs.propagating.contains(p))))
                .collect(),
        );
    }
    Ok(ok(out))
}

/// Proxmox's `cap` object of a login: per area (`vms`, `nodes`, `dc`, `access`, `storage`,
/// `sdn`), the privileges held on its path or anywhere below it, so that the UI can show
/// what the user may use.
pub fn capabilities(ac: &AccessControl, userid: &str, token: Option<&str>) -> serde_json::Value {
    let areas = [
        ("vms", "/vms"),
        ("nodes", "/nodes"),
        ("dc", "/"),
        ("access", "/access"),
        ("storage", "/storage"),
        ("sdn", "/sdn"),
    ];
    let paths = ac.report_paths();
    let mut out = serde_json::Map::new();
    for (name, top) in areas {
        let below = |p: &String| {
            if top == "/" {
                p == "/"
            } else {
                p == top || p.starts_with(&format!("{top}/"))
            }
        };
        let set = paths
            .iter()
            .filter(|p| below(p))
            .map(|p| ac.privileges(userid, token, p).set)
            .fold(PrivSet::EMPTY, PrivSet::union);
        let map: BTreeMap<String, u8> = set.iter().map(|p| (p.name().to_owned(), 1)).collect();
        out.insert(name.into(), serde_json::json!(map));
    }
    serde_json::Value::Object(out)
}
