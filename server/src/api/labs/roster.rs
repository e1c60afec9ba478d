//! `POST /api2/kiln/labs/{labid}/students`: add students to a lab from a roster CSV, sent as
//! `text/csv` (the file's bytes, so that a file that is not UTF-8 is reported by line) or as
//! JSON `{"csv": "..."}`. Every line is checked first; nothing is created unless all are right.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use kiln_api_types::labs::{LabAccounts, LabImport};
use kiln_api_types::roster::describe;

use super::taught;
use crate::access::Privilege;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::MAX_BODY;
use crate::auth::{authorize, AuthUser};
use crate::labs;
use crate::state::AppState;

/// The roster's bytes, from a `text/csv` body or the `csv` field of a JSON body.
#[derive(Debug)]
pub struct CsvBody(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ctype = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_BODY / 1024))?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::TooLarge(MAX_BODY / 1024));
        }
        match ctype.as_str() {
            "text/csv" | "text/plain" => Ok(CsvBody(bytes.to_vec())),
            "application/json" => serde_json::from_slice::<LabImport>(&bytes)
                .map(|i| CsvBody(i.csv.into_bytes()))
                .map_err(|e| ApiError::param("csv", format!("expected {{\"csv\": \"...\"}}: {e}"))),
            _ => Err(ApiError::param(
                "csv",
                "send the roster as text/csv, or as JSON {\"csv\": \"...\"}",
            )),
        }
    }
}

/// `POST /api2/kiln/labs/{labid}/students`: the new accounts, with their one-time passwords,
/// join the lab's roster group. Deploy the lab again to give them their VMs.
pub async fn import(
    State(app): State<AppState>,
    user: AuthUser,
    Path(labid): Path<String>,
    CsvBody(bytes): CsvBody,
) -> ApiResult<LabAccounts> {
    // The route checked Pool.Allocate on /pool/{labid}.
    let lab = taught(&app, &labid).await?;
    if !lab.own_group {
        // Adding users to someone else's group is changing that group.
        authorize(
            &user,
            &format!("/access/groups/{}", lab.groupid),
            Privilege::UserModify,
        )
        .map_err(|d| {
            ApiError::NotPermitted(format!(
                "lab {labid}'s roster is group {}, which you may not change: {d}",
                lab.groupid
            ))
        })?;
    }
    let entries = labs::roster::check(&bytes, &app.access.current())
        .map_err(|lines| ApiError::param("csv", describe(&lines)))?;
    let accounts = labs::roster::accounts(entries, &format!("lab {labid}"))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let lock = app.access.lock().await;
    if !app
        .db
        .insert_roster_users(&accounts.records, &lab.groupid)
        .await?
    {
        return Err(ApiError::Conflict(
            "an account of the list was created by someone else meanwhile; nothing was created, send the list again"
                .into(),
        ));
    }
    app.access.reload(&app.db, &lock).await?;
    app.changes.notify();
    tracing::info!(by = %user.auth_id(), "added {} student(s) to lab {labid}", accounts.handout.len());
    Ok(ok(LabAccounts {
        labid,
        accounts: accounts.handout,
    }))
}
