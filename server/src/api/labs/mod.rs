//! `/api2/kiln/labs...` (Kiln extension): teaching labs, see [`crate::labs`]. Listing,
//! reading, creating, rescheduling and tearing down labs live here; the roster import in
//! [`roster`], deploying, starting/stopping all and resetting in [`actions`].

pub mod actions;
pub mod roster;

use axum::extract::{Path, State};
use kiln_api_types::access::{NoParams, PoolQuota};
use kiln_api_types::labs::{LabAccounts, LabCreate, LabDetail, LabEntry, LabStudent, LabUpdate};
use kiln_api_types::roster::describe;

use super::access::text;
use super::error::{ok, ApiError, ApiResult};
use super::nodes::known_node;
use super::params::{Body, Query};
use super::qemu::check_image_on_node;
use crate::access::ids::check_name;
use crate::access::Privilege;
use crate::auth::{authorize, AuthUser};
use crate::db::{unix_now, LabRecord, LabStudentRecord, NewLab, PoolRecord};
use crate::labs::{self, Phase, MAX_LABID};
use crate::state::AppState;
use crate::vms::observe;

/// Longest lab, in days after its end before it is torn down automatically.
const MAX_DELETE_AFTER_DAYS: u32 = 3650;

/// The caller's part in a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `Pool.Allocate` on the lab pool: runs the lab.
    Instructor,
    /// `Pool.Audit` on the lab pool: sees everything, changes nothing.
    Auditor,
    /// On the roster (or deployed for): sees its own VM.
    Student,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Instructor => "instructor",
            Role::Auditor => "auditor",
            Role::Student => "student",
        }
    }
}

/// The caller's part in `lab`, if any.
fn role_of(user: &AuthUser, lab: &LabRecord, records: &[LabStudentRecord]) -> Option<Role> {
    let pool = format!("/pool/{}", lab.labid);
    if authorize(user, &pool, Privilege::PoolAllocate).is_ok() {
        return Some(Role::Instructor);
    }
    if authorize(user, &pool, Privilege::PoolAudit).is_ok() {
        return Some(Role::Auditor);
    }
    let on_roster = user
        .access
        .user(&user.userid)
        .is_some_and(|u| u.groups.contains(&lab.groupid));
    (on_roster || records.iter().any(|r| r.userid == user.userid)).then_some(Role::Student)
}

/// Check a lab id (a pool id, short enough for the student pools below it).
fn check_labid(labid: &str) -> Result<(), ApiError> {
    check_name("pool", labid).map_err(|e| ApiError::param("labid", e.to_string()))?;
    if labid.len() > MAX_LABID {
        return Err(ApiError::param(
            "labid",
            format!("at most {MAX_LABID} characters (the students' pools are named <lab>-<user>)"),
        ));
    }
    Ok(())
}

/// The same answer for a lab that does not exist and one the caller has no part in, so that
/// lab ids cannot be probed.
fn no_lab(labid: &str) -> ApiError {
    ApiError::NotFound(format!(
        "there is no lab '{labid}' that you teach or attend; GET /api2/kiln/labs lists yours"
    ))
}

/// Lab `labid` and the caller's part in it.
async fn visible(
    app: &AppState,
    user: &AuthUser,
    labid: &str,
) -> Result<(LabRecord, Vec<LabStudentRecord>, Role), ApiError> {
    check_labid(labid)?;
    let lab = app.db.lab(labid).await?.ok_or_else(|| no_lab(labid))?;
    let records = app.db.lab_students(labid).await?;
    let role = role_of(user, &lab, &records).ok_or_else(|| no_lab(labid))?;
    Ok((lab, records, role))
}

/// Lab `labid`, which the caller runs (the route checked `Pool.Allocate` on its pool).
pub(super) async fn taught(app: &AppState, labid: &str) -> Result<LabRecord, ApiError> {
    check_labid(labid)?;
    app.db.lab(labid).await?.ok_or_else(|| no_lab(labid))
}

fn entry(
    app: &AppState,
    lab: &LabRecord,
    records: &[LabStudentRecord],
    deployed: u32,
    role: Role,
) -> LabEntry {
    LabEntry {
        labid: lab.labid.clone(),
        comment: lab.comment.clone(),
        template: lab.template,
        node: lab.node.clone(),
        group: lab.groupid.clone(),
        start: lab.starts_at,
        end: lab.ends_at,
        delete_after: lab.delete_after_days,
        state: Phase::now(lab).as_str().into(),
        role: role.as_str().into(),
        students: labs::roster(&app.access.current(), lab)
            .len()
            .max(records.len()) as u32,
        deployed,
        quota: PoolQuota {
            max_vms: lab.max_vms,
            max_vcpus: lab.max_vcpus,
            max_memory: lab.max_memory_mib,
        },
        busy: app.lab_locks.holder(&lab.labid).map(str::to_owned),
    }
}

/// The students of a lab as its dashboard shows them (`only`: just this user).
async fn members(
    app: &AppState,
    lab: &LabRecord,
    records: &[LabStudentRecord],
    only: Option<&str>,
) -> Result<Vec<LabStudent>, ApiError> {
    let ac = app.access.current();
    let enrolled = labs::roster(&ac, lab);
    let mut ids: Vec<String> = enrolled
        .iter()
        .cloned()
        .chain(records.iter().map(|r| r.userid.clone()))
        .filter(|u| only.is_none_or(|o| o == u))
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for userid in ids {
        let info = ac.user(&userid);
        let record = records.iter().find(|r| r.userid == userid);
        let vm = match record.and_then(|r| r.vmid) {
            Some(vmid) => app.db.vm(vmid).await?,
            None => None,
        };
        out.push(LabStudent {
            userid: userid.clone(),
            firstname: info.map(|u| u.firstname.clone()).unwrap_or_default(),
            lastname: info.map(|u| u.lastname.clone()).unwrap_or_default(),
            email: info.map(|u| u.email.clone()).unwrap_or_default(),
            pool: record.map(|r| r.poolid.clone()),
            vmid: vm.as_ref().map(|v| v.vmid),
            node: vm.as_ref().map(|v| v.node.clone()),
            status: vm
                .as_ref()
                .map_or("missing", |v| observe(app, v).state_word())
                .into(),
            error: record.and_then(|r| r.error.clone()),
            enrolled: enrolled.contains(&userid),
        });
    }
    Ok(out)
}

async fn deployed_count(app: &AppState, records: &[LabStudentRecord]) -> Result<u32, ApiError> {
    let mut n = 0;
    for vmid in records.iter().filter_map(|r| r.vmid) {
        if app.db.vm(vmid).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// `GET /api2/kiln/labs`: the labs the caller runs, audits or attends.
pub async fn list(State(app): State<AppState>, user: AuthUser) -> ApiResult<Vec<LabEntry>> {
    let mut out = Vec::new();
    for lab in app.db.labs().await? {
        let records = app.db.lab_students(&lab.labid).await?;
        let Some(role) = role_of(&user, &lab, &records) else {
            continue;
        };
        let mine: Vec<LabStudentRecord> = match role {
            Role::Student => records
                .iter()
                .filter(|r| r.userid == user.userid)
                .cloned()
                .collect(),
            _ => records.clone(),
        };
        let deployed = deployed_count(&app, &mine).await?;
        let mut e = entry(&app, &lab, &records, deployed, role);
        if role == Role::Student {
            e.students = 1;
        }
        out.push(e);
    }
    Ok(ok(out))
}

/// `GET /api2/kiln/labs/{labid}`: the lab and its students (a student sees only itself).
pub async fn read(
    State(app): State<AppState>,
    user: AuthUser,
    Path(labid): Path<String>,
) -> ApiResult<LabDetail> {
    let (lab, records, role) = visible(&app, &user, &labid).await?;
    let only = (role == Role::Student).then_some(user.userid.as_str());
    let members = members(&app, &lab, &records, only).await?;
    let deployed = members.iter().filter(|m| m.vmid.is_some()).count() as u32;
    let mut lab_entry = entry(&app, &lab, &records, deployed, role);
    if role == Role::Student {
        lab_entry.students = 1;
    }
    Ok(ok(LabDetail {
        lab: lab_entry,
        members,
    }))
}

/// 0 means "no limit", as the pools' limits.
fn limit<T: PartialEq + Default>(v: Option<T>) -> Option<T> {
    v.filter(|v| *v != T::default())
}

fn check_delete_after(v: Option<u32>) -> Result<Option<u32>, ApiError> {
    match v {
        Some(d) if d > MAX_DELETE_AFTER_DAYS => Err(ApiError::param(
            "delete-after",
            format!("at most {MAX_DELETE_AFTER_DAYS} days (0 or absent: keep the lab)"),
        )),
        other => Ok(limit(other)),
    }
}

/// `POST /api2/kiln/labs`: a lab in the pool of the same id (created if missing), with an
/// existing group or a CSV as its roster; answers the accounts a CSV created, with their
/// one-time passwords.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<LabCreate>,
) -> ApiResult<LabAccounts> {
    // The route checked Pool.Allocate and VM.Allocate on /pool/{labid}.
    let labid = req.labid.clone();
    check_labid(&labid)?;
    let comment = text(req.comment.clone(), "comment", 1024)?.unwrap_or_default();
    let template_path = format!("/vms/{}", req.template);
    let template = match app.db.vm(req.template).await? {
        Some(vm) if authorize(&user, &template_path, Privilege::VmAudit).is_ok() => vm,
        _ => {
            return Err(ApiError::param(
                "template",
                format!("VM {} does not exist or you may not see it", req.template),
            ))
        }
    };
    if !template.template {
        return Err(ApiError::param(
            "template",
            format!(
                "VM {id} is not a template; make it one with POST /api2/json/nodes/{}/qemu/{id}/template",
                template.node,
                id = template.vmid
            ),
        ));
    }
    authorize(&user, &template_path, Privilege::VmClone)?;
    let node = match &req.node {
        Some(n) if !n.is_empty() => n.clone(),
        _ => String::new(),
    };
    let target = if node.is_empty() {
        &template.node
    } else {
        &node
    };
    let target_rec = known_node(&app, target).await.map_err(|e| match e {
        ApiError::NotFound(m) => ApiError::param("node", m),
        other => other,
    })?;
    check_image_on_node(&app, &target_rec, &template.image, "node").await?;
    let (max_vms, max_vcpus, max_memory) = (
        limit(req.max_vms),
        limit(req.max_vcpus),
        limit(req.max_memory),
    );
    if let Some(max) = max_vcpus.filter(|m| *m < template.cores) {
        return Err(ApiError::param(
            "max-vcpus",
            format!(
                "the template has {} vCPU(s): with max-vcpus {max} no student could start a VM",
                template.cores
            ),
        ));
    }
    if let Some(max) = max_memory.filter(|m| *m < u64::from(template.memory_mib)) {
        return Err(ApiError::param(
            "max-memory",
            format!(
                "the template has {} MiB: with max-memory {max} no student could start a VM",
                template.memory_mib
            ),
        ));
    }
    let now = unix_now();
    let start = req.start.unwrap_or(now);
    if start < 0 {
        return Err(ApiError::param("start", "Unix seconds, or absent for now"));
    }
    if req.end <= start {
        return Err(ApiError::param(
            "end",
            format!("the end must come after the start ({})", labs::when(start)),
        ));
    }
    if req.end <= now {
        return Err(ApiError::param(
            "end",
            format!("the end ({}) has passed already", labs::when(req.end)),
        ));
    }
    let delete_after = check_delete_after(req.delete_after)?;
    // The roster.
    let ac = app.access.current();
    let (groupid, own_group, accounts) = match (&req.group, &req.csv) {
        (Some(_), Some(_)) => {
            return Err(ApiError::param(
                "group",
                "give either group (an existing group) or csv (new accounts), not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::param(
                "group",
                "a lab needs a roster: group (an existing group) or csv (one student per line)",
            ))
        }
        (Some(g), None) => {
            check_name("group", g).map_err(|e| ApiError::param("group", e.to_string()))?;
            if ac.group(g).is_none() {
                return Err(ApiError::param(
                    "group",
                    format!("group '{g}' does not exist; GET /api2/json/access/groups lists them"),
                ));
            }
            let path = format!("/access/groups/{g}");
            let may_read = [
                Privilege::SysAudit,
                Privilege::GroupAllocate,
                Privilege::UserModify,
            ]
            .into_iter()
            .any(|p| authorize(&user, &path, p).is_ok());
            if !may_read {
                authorize(&user, &path, Privilege::SysAudit)?;
            }
            (g.clone(), false, labs::roster::Accounts::default())
        }
        (None, Some(csv)) => {
            let groupid = labs::own_group_id(&labid);
            if ac.group(&groupid).is_some() {
                return Err(ApiError::param(
                    "labid",
                    format!("group {groupid} exists already; give it as the roster (group), or remove it"),
                ));
            }
            let entries = labs::roster::check(csv.as_bytes(), &ac)
                .map_err(|lines| ApiError::param("csv", describe(&lines)))?;
            let accounts = labs::roster::accounts(entries, &format!("lab {labid}"))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (groupid, true, accounts)
        }
    };
    let lab = LabRecord {
        labid: labid.clone(),
        comment: comment.clone(),
        template: template.vmid,
        node,
        groupid,
        own_group,
        max_vms,
        max_vcpus,
        max_memory_mib: max_memory,
        starts_at: start,
        ends_at: req.end,
        delete_after_days: delete_after,
        ended: false,
        created_by: user.auth_id(),
    };
    let lock = app.access.lock().await;
    if app.db.lab(&labid).await?.is_some() {
        return Err(ApiError::Conflict(format!("lab {labid} exists already")));
    }
    let pool = match app.access.current().pool(&labid) {
        Some(p) if p.parent.is_some() => {
            return Err(ApiError::param(
                "labid",
                format!("pool {labid} is a student pool of another lab; choose another id"),
            ))
        }
        Some(_) => None,
        None => Some(PoolRecord {
            poolid: labid.clone(),
            comment: format!("lab {labid}"),
            ..Default::default()
        }),
    };
    let new = NewLab {
        lab,
        pool,
        group: own_group.then(|| format!("students of lab {labid}")),
        users: accounts.records,
    };
    if !app.db.insert_lab(&new).await? {
        return Err(ApiError::Conflict(format!(
            "the pool, group or an account of lab {labid} was created by someone else meanwhile; nothing was created, send the request again"
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    app.changes.notify();
    tracing::info!(by = %user.auth_id(), "created lab {labid}");
    Ok(ok(LabAccounts {
        labid,
        accounts: accounts.handout,
    }))
}

/// `PUT /api2/kiln/labs/{labid}`: change the comment or the schedule (extend the end, or end
/// it now with `end` = now).
pub async fn update(
    State(app): State<AppState>,
    _user: AuthUser,
    Path(labid): Path<String>,
    Body(req): Body<LabUpdate>,
) -> ApiResult<()> {
    let mut lab = taught(&app, &labid).await?;
    if let Some(c) = text(req.comment, "comment", 1024)? {
        lab.comment = c;
    }
    if let Some(s) = req.start {
        if s < 0 {
            return Err(ApiError::param("start", "Unix seconds"));
        }
        lab.starts_at = s;
    }
    if let Some(e) = req.end {
        if e != lab.ends_at {
            lab.ends_at = e;
            // A new end is a new end: handled when it comes.
            lab.ended = false;
        }
    }
    if lab.ends_at <= lab.starts_at {
        return Err(ApiError::param(
            "end",
            format!(
                "the end ({}) must come after the start ({})",
                labs::when(lab.ends_at),
                labs::when(lab.starts_at)
            ),
        ));
    }
    if req.delete_after.is_some() {
        lab.delete_after_days = check_delete_after(req.delete_after)?;
    }
    app.db.update_lab(&lab).await?;
    app.changes.notify();
    Ok(ok(()))
}

/// `DELETE /api2/kiln/labs/{labid}`: tear the lab down (task `labdestroy`).
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path(labid): Path<String>,
    Query(_): Query<NoParams>,
) -> ApiResult<String> {
    let lab = taught(&app, &labid).await?;
    let guard = app
        .lab_locks
        .lock(&labid, "labdestroy")
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let node = labs::task_node(&app, &lab).await;
    let (task_app, task_lab) = (app.clone(), labid.clone());
    let upid = app
        .tasks
        .spawn(
            &node,
            "labdestroy",
            &labid,
            &user.auth_id(),
            guard,
            move |log| labs::teardown::run(task_app, task_lab, log),
        )
        .await?;
    Ok(ok(upid))
}
