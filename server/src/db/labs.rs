//! Teaching labs: the lab (template, roster group, per-student quota, schedule) and what
//! its deployment made for each student (pool, VM).

use sqlx::Row;

use super::pools::PoolRecord;
use super::users::UserRecord;
use super::{unix_now, Db, DbError, QueryContext};

/// A lab row. The lab lives in the pool of the same id; its students' pools are that pool's
/// children.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabRecord {
    /// Lab id = the lab's pool.
    pub labid: String,
    /// Free text.
    pub comment: String,
    /// The template VM students get a clone of.
    pub template: u32,
    /// Node of the students' VMs; empty: the template's node.
    pub node: String,
    /// The roster: the group whose members are the students.
    pub groupid: String,
    /// Whether the lab created the group (from a CSV roster).
    pub own_group: bool,
    /// Quota of each student's pool: most VMs.
    pub max_vms: Option<u32>,
    /// Quota of each student's pool: most vCPUs of running VMs.
    pub max_vcpus: Option<u32>,
    /// Quota of each student's pool: most memory (MiB) of running VMs.
    pub max_memory_mib: Option<u64>,
    /// Students may use their VMs from (Unix seconds).
    pub starts_at: i64,
    /// Until (Unix seconds); the VMs are stopped then.
    pub ends_at: i64,
    /// Tear the lab down this many days after its end (`None`: keep it).
    pub delete_after_days: Option<u32>,
    /// Whether the end was handled (the VMs stopped); cleared when the end moves later.
    pub ended: bool,
    /// Who created it.
    pub created_by: String,
}

/// What a lab's deployment made for one student.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabStudentRecord {
    /// The student.
    pub userid: String,
    /// The student's pool.
    pub poolid: String,
    /// The student's VM, once cloned.
    pub vmid: Option<u32>,
    /// Why the last deployment failed for this student.
    pub error: Option<String>,
}

/// What creating a lab stores at once (all or nothing).
#[derive(Debug, Clone, Default)]
pub struct NewLab {
    /// The lab.
    pub lab: LabRecord,
    /// The lab's pool, when it does not exist yet.
    pub pool: Option<PoolRecord>,
    /// The roster group to create, with its comment, when the lab brings its own.
    pub group: Option<String>,
    /// Accounts to create (members of the roster group).
    pub users: Vec<UserRecord>,
}

const LAB_COLUMNS: &str =
    "labid, comment, template, node, groupid, own_group, max_vms, max_vcpus, \
     max_memory_mib, starts_at, ends_at, delete_after_days, ended, created_by";

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn lab_from_row(r: sqlx::sqlite::SqliteRow) -> LabRecord {
    LabRecord {
        labid: r.get("labid"),
        comment: r.get("comment"),
        template: r.get::<i64, _>("template") as u32,
        node: r.get("node"),
        groupid: r.get("groupid"),
        own_group: r.get::<i64, _>("own_group") != 0,
        max_vms: opt_u32(r.get("max_vms")),
        max_vcpus: opt_u32(r.get("max_vcpus")),
        max_memory_mib: r
            .get::<Option<i64>, _>("max_memory_mib")
            .and_then(|v| u64::try_from(v).ok()),
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        delete_after_days: opt_u32(r.get("delete_after_days")),
        ended: r.get::<i64, _>("ended") != 0,
        created_by: r.get("created_by"),
    }
}

fn student_from_row(r: sqlx::sqlite::SqliteRow) -> LabStudentRecord {
    LabStudentRecord {
        userid: r.get("userid"),
        poolid: r.get("poolid"),
        vmid: r.get::<Option<i64>, _>("vmid").map(|v| v as u32),
        error: r.get("error"),
    }
}

impl Db {
    /// All labs, by id.
    pub async fn labs(&self) -> Result<Vec<LabRecord>, DbError> {
        let rows = sqlx::query(&format!("SELECT {LAB_COLUMNS} FROM labs ORDER BY labid"))
            .fetch_all(&self.pool)
            .await
            .ctx("listing labs")?;
        Ok(rows.into_iter().map(lab_from_row).collect())
    }

    /// One lab.
    pub async fn lab(&self, labid: &str) -> Result<Option<LabRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {LAB_COLUMNS} FROM labs WHERE labid = ?"))
            .bind(labid)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a lab")?;
        Ok(row.map(lab_from_row))
    }

    /// Create a lab with its pool, roster group and accounts, all or nothing; `false` if a
    /// lab, pool, group or user of that id exists already (nothing changed then).
    pub async fn insert_lab(&self, new: &NewLab) -> Result<bool, DbError> {
        const CTX: &str = "creating a lab";
        let mut tx = self.pool.begin().await.ctx(CTX)?;
        let now = unix_now();
        if let Some(p) = &new.pool {
            let done = sqlx::query(
                "INSERT INTO pools (poolid, comment, max_vms, max_vcpus, max_memory_mib, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (poolid) DO NOTHING",
            )
            .bind(&p.poolid)
            .bind(&p.comment)
            .bind(p.max_vms.map(i64::from))
            .bind(p.max_vcpus.map(i64::from))
            .bind(p.max_memory_mib.map(|m| m as i64))
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx(CTX)?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if let Some(comment) = &new.group {
            let done = sqlx::query(
                "INSERT INTO user_groups (groupid, comment, created_at) VALUES (?, ?, ?) \
                 ON CONFLICT (groupid) DO NOTHING",
            )
            .bind(&new.lab.groupid)
            .bind(comment)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx(CTX)?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if !insert_users(&mut tx, &new.users, &new.lab.groupid).await? {
            return Ok(false);
        }
        let l = &new.lab;
        let done = sqlx::query(
            "INSERT INTO labs (labid, comment, template, node, groupid, own_group, max_vms, max_vcpus, \
             max_memory_mib, starts_at, ends_at, delete_after_days, ended, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (labid) DO NOTHING",
        )
        .bind(&l.labid)
        .bind(&l.comment)
        .bind(i64::from(l.template))
        .bind(&l.node)
        .bind(&l.groupid)
        .bind(i64::from(l.own_group))
        .bind(l.max_vms.map(i64::from))
        .bind(l.max_vcpus.map(i64::from))
        .bind(l.max_memory_mib.map(|m| m as i64))
        .bind(l.starts_at)
        .bind(l.ends_at)
        .bind(l.delete_after_days.map(i64::from))
        .bind(i64::from(l.ended))
        .bind(&l.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx(CTX)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        tx.commit().await.ctx(CTX)?;
        Ok(true)
    }

    /// Create accounts as members of `groupid`, all or nothing; `false` if one exists already.
    pub async fn insert_roster_users(
        &self,
        users: &[UserRecord],
        groupid: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("creating accounts")?;
        if !insert_users(&mut tx, users, groupid).await? {
            return Ok(false);
        }
        tx.commit().await.ctx("creating accounts")?;
        Ok(true)
    }

    /// Change a lab's comment and schedule (and whether its end was handled).
    pub async fn update_lab(&self, l: &LabRecord) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE labs SET comment = ?, starts_at = ?, ends_at = ?, delete_after_days = ?, ended = ? \
             WHERE labid = ?",
        )
        .bind(&l.comment)
        .bind(l.starts_at)
        .bind(l.ends_at)
        .bind(l.delete_after_days.map(i64::from))
        .bind(i64::from(l.ended))
        .bind(&l.labid)
        .execute(&self.pool)
        .await
        .ctx("changing a lab")?;
        Ok(())
    }

    /// Record that a lab's end was handled, unless its end moved in the meantime; `false`
    /// if it moved (or the lab is gone).
    pub async fn mark_lab_ended(&self, labid: &str, ends_at: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE labs SET ended = 1 WHERE labid = ? AND ends_at = ?")
            .bind(labid)
            .bind(ends_at)
            .execute(&self.pool)
            .await
            .ctx("recording a lab's end")?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove a lab and its student records (its pool, group, accounts and VMs are the
    /// caller's business).
    pub async fn delete_lab(&self, labid: &str) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a lab")?;
        sqlx::query("DELETE FROM lab_students WHERE labid = ?")
            .bind(labid)
            .execute(&mut *tx)
            .await
            .ctx("removing a lab's students")?;
        sqlx::query("DELETE FROM labs WHERE labid = ?")
            .bind(labid)
            .execute(&mut *tx)
            .await
            .ctx("removing a lab")?;
        tx.commit().await.ctx("removing a lab")
    }

    /// What a lab's deployments made, by user.
    pub async fn lab_students(&self, labid: &str) -> Result<Vec<LabStudentRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT userid, poolid, vmid, error FROM lab_students WHERE labid = ? ORDER BY userid",
        )
        .bind(labid)
        .fetch_all(&self.pool)
        .await
        .ctx("listing a lab's students")?;
        Ok(rows.into_iter().map(student_from_row).collect())
    }

    /// Record what a deployment made (or why it failed) for one student.
    pub async fn set_lab_student(&self, labid: &str, s: &LabStudentRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO lab_students (labid, userid, poolid, vmid, error) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (labid, userid) DO UPDATE SET poolid = excluded.poolid, \
             vmid = excluded.vmid, error = excluded.error",
        )
        .bind(labid)
        .bind(&s.userid)
        .bind(&s.poolid)
        .bind(s.vmid.map(i64::from))
        .bind(&s.error)
        .execute(&self.pool)
        .await
        .ctx("recording a lab student")?;
        Ok(())
    }

    /// Forget one student's record (after its VM and pool were removed).
    pub async fn delete_lab_student(&self, labid: &str, userid: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM lab_students WHERE labid = ? AND userid = ?")
            .bind(labid)
            .bind(userid)
            .execute(&self.pool)
            .await
            .ctx("removing a lab student")?;
        Ok(())
    }

    /// The lab and student a VM was deployed for, if any.
    pub async fn lab_of_vm(&self, vmid: u32) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT labid, userid FROM lab_students WHERE vmid = ?")
            .bind(i64::from(vmid))
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a VM's lab")?;
        Ok(row.map(|r| (r.get("labid"), r.get("userid"))))
    }

    /// The labs a user is a student of (a row was deployed for it).
    pub async fn labs_of_student(&self, userid: &str) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT labid FROM lab_students WHERE userid = ? ORDER BY labid")
            .bind(userid)
            .fetch_all(&self.pool)
            .await
            .ctx("listing a student's labs")?;
        Ok(rows.into_iter().map(|r| r.get("labid")).collect())
    }

    /// The labs using VM `vmid` as their template.
    pub async fn labs_using_template(&self, vmid: u32) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT labid FROM labs WHERE template = ? ORDER BY labid")
            .bind(i64::from(vmid))
            .fetch_all(&self.pool)
            .await
            .ctx("listing the labs of a template")?;
        Ok(rows.into_iter().map(|r| r.get("labid")).collect())
    }
}

/// Insert accounts and their membership of `groupid` in `tx`; `false` if one exists.
async fn insert_users(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    users: &[UserRecord],
    groupid: &str,
) -> Result<bool, DbError> {
    const CTX: &str = "creating accounts";
    for u in users {
        let done = sqlx::query(
            "INSERT INTO users (userid, password_hash, enabled, expire, firstname, lastname, email, comment, \
             tfa_required, must_change_password, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (userid) DO NOTHING",
        )
        .bind(&u.userid)
        .bind(&u.password_hash)
        .bind(i64::from(u.enabled))
        .bind(u.expire)
        .bind(&u.firstname)
        .bind(&u.lastname)
        .bind(&u.email)
        .bind(&u.comment)
        .bind(i64::from(u.tfa_required))
        .bind(i64::from(u.must_change_password))
        .bind(unix_now())
        .execute(&mut **tx)
        .await
        .ctx(CTX)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO group_members (groupid, userid) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(groupid)
        .bind(&u.userid)
        .execute(&mut **tx)
        .await
        .ctx(CTX)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    fn lab(id: &str) -> NewLab {
        NewLab {
            lab: LabRecord {
                labid: id.into(),
                template: 900,
                groupid: format!("lab-{id}"),
                own_group: true,
                max_vcpus: Some(1),
                starts_at: 10,
                ends_at: 20,
                created_by: "root@kiln".into(),
                ..Default::default()
            },
            pool: Some(PoolRecord {
                poolid: id.into(),
                ..Default::default()
            }),
            group: Some("students".into()),
            users: vec![UserRecord {
                userid: "ada@kiln".into(),
                enabled: true,
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn a_lab_is_created_whole_or_not_at_all() {
        let (db, _dir) = temp_db().await;
        db.create_user("bob@kiln", "").await.unwrap();
        let mut clash = lab("l1");
        clash.users.push(UserRecord {
            userid: "bob@kiln".into(),
            ..Default::default()
        });
        assert!(!db.insert_lab(&clash).await.unwrap());
        let rows = db.access_rows().await.unwrap();
        assert!(
            rows.pools.is_empty() && rows.groups.is_empty(),
            "rolled back"
        );
        assert!(db.user("ada@kiln").await.unwrap().is_none());

        assert!(db.insert_lab(&lab("l1")).await.unwrap());
        let stored = db.lab("l1").await.unwrap().unwrap();
        assert_eq!(stored.groupid, "lab-l1");
        assert_eq!(stored.max_vcpus, Some(1));
        let rows = db.access_rows().await.unwrap();
        assert_eq!(rows.members, vec![("lab-l1".into(), "ada@kiln".into())]);

        let student = LabStudentRecord {
            userid: "ada@kiln".into(),
            poolid: "l1-ada".into(),
            vmid: Some(101),
            error: None,
        };
        db.set_lab_student("l1", &student).await.unwrap();
        assert_eq!(db.lab_students("l1").await.unwrap(), vec![student]);
        assert_eq!(
            db.lab_of_vm(101).await.unwrap(),
            Some(("l1".into(), "ada@kiln".into()))
        );
        assert_eq!(db.labs_using_template(900).await.unwrap(), vec!["l1"]);
        assert!(db.mark_lab_ended("l1", 20).await.unwrap());
        assert!(!db.mark_lab_ended("l1", 21).await.unwrap());
        db.delete_lab("l1").await.unwrap();
        assert!(db.lab("l1").await.unwrap().is_none());
        assert!(db.lab_students("l1").await.unwrap().is_empty());
    }
}
