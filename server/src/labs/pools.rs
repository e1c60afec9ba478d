//! The access side of a lab's students: their pools (children of the lab pool, with the
//! lab's per-student quota) and their role on their own VM. Every change happens under the
//! access store's write lock and is followed by a reload, as all access changes are.

use super::STUDENT_ROLE;
use crate::db::{LabRecord, PoolRecord};
use crate::state::AppState;

/// Make sure `poolid` is a student pool of `lab`; `Ok(true)` when it was created now.
pub async fn ensure_student_pool(
    app: &AppState,
    lab: &LabRecord,
    poolid: &str,
    userid: &str,
) -> Result<bool, String> {
    let lock = app.access.lock().await;
    if let Some(p) = app.access.current().pool(poolid) {
        return if p.parent.as_deref() == Some(lab.labid.as_str()) {
            Ok(false)
        } else {
            Err(format!(
                "pool {poolid} exists but is not a student pool of lab {}; rename or remove it",
                lab.labid
            ))
        };
    }
    let record = PoolRecord {
        poolid: poolid.to_owned(),
        comment: format!("lab {}: {userid}", lab.labid),
        max_vms: lab.max_vms,
        max_vcpus: lab.max_vcpus,
        max_memory_mib: lab.max_memory_mib,
        parent: Some(lab.labid.clone()),
    };
    if !app
        .db
        .insert_pool(&record)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "pool {poolid} was created by someone else meanwhile"
        ));
    }
    app.access
        .reload(&app.db, &lock)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Remove a student pool, which must be empty (a missing pool is fine).
pub async fn remove_student_pool(app: &AppState, poolid: &str) -> Result<(), String> {
    let lock = app.access.lock().await;
    match app.access.current().pool(poolid) {
        None => return Ok(()),
        Some(p) if !p.vms.is_empty() => {
            return Err(format!(
                "pool {poolid} still holds VM(s) {}",
                p.vms
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        Some(_) => {}
    }
    app.db
        .delete_pool(poolid)
        .await
        .map_err(|e| e.to_string())?;
    app.access
        .reload(&app.db, &lock)
        .await
        .map_err(|e| e.to_string())
}

/// Give `userid` the student role on VM `vmid` (and nothing else).
pub async fn grant_student(app: &AppState, vmid: u32, userid: &str) -> Result<(), String> {
    let lock = app.access.lock().await;
    app.db
        .set_acl(&format!("/vms/{vmid}"), "user", userid, STUDENT_ROLE, true)
        .await
        .map_err(|e| e.to_string())?;
    app.access
        .reload(&app.db, &lock)
        .await
        .map_err(|e| e.to_string())
}
