//! Pools of VMs and their quotas.

use sqlx::Row;

use super::vms::{insert_vm_with, VmRecord};
use super::{unix_now, Db, DbError, QueryContext};

/// A pool row; `None` limits mean none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolRecord {
    /// Pool id.
    pub poolid: String,
    /// Free text.
    pub comment: String,
    /// Most VMs in the pool.
    pub max_vms: Option<u32>,
    /// Most vCPUs of running VMs.
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) of running VMs.
    pub max_memory_mib: Option<u64>,
    /// The parent pool (one level; a lab's student pools are children of the lab's pool).
    pub parent: Option<String>,
}

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

impl Db {
    /// All pools, by id.
    pub async fn pools(&self) -> Result<Vec<PoolRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT poolid, comment, max_vms, max_vcpus, max_memory_mib, parent FROM pools ORDER BY poolid",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("listing pools")?;
        Ok(rows
            .into_iter()
            .map(|r| PoolRecord {
                poolid: r.get("poolid"),
                comment: r.get("comment"),
                max_vms: opt_u32(r.get("max_vms")),
                max_vcpus: opt_u32(r.get("max_vcpus")),
                max_memory_mib: r
                    .get::<Option<i64>, _>("max_memory_mib")
                    .and_then(|v| u64::try_from(v).ok()),
                parent: r.get("parent"),
            })
            .collect())
    }

    /// Create a pool; `false` if the id is taken.
    pub async fn insert_pool(&self, p: &PoolRecord) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO pools (poolid, comment, max_vms, max_vcpus, max_memory_mib, parent, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (poolid) DO NOTHING",
        )
        .bind(&p.poolid)
        .bind(&p.comment)
        .bind(p.max_vms.map(i64::from))
        .bind(p.max_vcpus.map(i64::from))
        .bind(p.max_memory_mib.map(|m| m as i64))
        .bind(&p.parent)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("creating a pool")?;
        Ok(done.rows_affected() == 1)
    }

    /// Change a pool's comment and limits.
    pub async fn update_pool(&self, p: &PoolRecord) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE pools SET comment = ?, max_vms = ?, max_vcpus = ?, max_memory_mib = ? WHERE poolid = ?",
        )
        .bind(&p.comment)
        .bind(p.max_vms.map(i64::from))
        .bind(p.max_vcpus.map(i64::from))
        .bind(p.max_memory_mib.map(|m| m as i64))
        .bind(&p.poolid)
        .execute(&self.pool)
        .await
        .ctx("changing a pool")?;
        Ok(())
    }

    /// Remove an empty pool and the ACL entries on it; `false` if there was none.
    pub async fn delete_pool(&self, poolid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a pool")?;
        sqlx::query("DELETE FROM acl WHERE path = ?")
            .bind(format!("/pool/{poolid}"))
            .execute(&mut *tx)
            .await
            .ctx("removing a pool's ACL entries")?;
        let done = sqlx::query("DELETE FROM pools WHERE poolid = ?")
            .bind(poolid)
            .execute(&mut *tx)
            .await
            .ctx("removing a pool")?;
        tx.commit().await.ctx("removing a pool")?;
        Ok(done.rows_affected() == 1)
    }

    /// Put VMs into a pool (moving them out of any other), in one transaction.
    pub async fn add_pool_members(&self, poolid: &str, vmids: &[u32]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.ctx("adding VMs to a pool")?;
        for vmid in vmids {
            sqlx::query(
                "INSERT INTO pool_members (vmid, poolid) VALUES (?, ?) \
                 ON CONFLICT (vmid) DO UPDATE SET poolid = excluded.poolid",
            )
            .bind(i64::from(*vmid))
            .bind(poolid)
            .execute(&mut *tx)
            .await
            .ctx("adding VMs to a pool")?;
        }
        tx.commit().await.ctx("adding VMs to a pool")
    }

    /// Take VMs out of a pool.
    pub async fn remove_pool_members(&self, poolid: &str, vmids: &[u32]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.ctx("removing VMs from a pool")?;
        for vmid in vmids {
            sqlx::query("DELETE FROM pool_members WHERE vmid = ? AND poolid = ?")
                .bind(i64::from(*vmid))
                .bind(poolid)
                .execute(&mut *tx)
                .await
                .ctx("removing VMs from a pool")?;
        }
        tx.commit().await.ctx("removing VMs from a pool")
    }

    /// Store a new VM as a member of `poolid`, both or neither; `false` if the VM id is taken.
    pub async fn insert_vm_in_pool(&self, vm: &VmRecord, poolid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("creating a VM in a pool")?;
        if !insert_vm_with(&mut *tx, vm).await? {
            return Ok(false);
        }
        sqlx::query("INSERT INTO pool_members (vmid, poolid) VALUES (?, ?)")
            .bind(i64::from(vm.vmid))
            .bind(poolid)
            .execute(&mut *tx)
            .await
            .ctx("creating a VM in a pool")?;
        tx.commit().await.ctx("creating a VM in a pool")?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    fn vm(vmid: u32) -> VmRecord {
        VmRecord {
            vmid,
            name: format!("vm{vmid}"),
            node: "n1".into(),
            cores: 1,
            memory_mib: 64,
            image: "kiln-test-guest".into(),
            args: None,
            description: String::new(),
            onboot: false,
            desired: "stopped".into(),
            template: false,
        }
    }

    #[tokio::test]
    async fn a_vm_created_in_a_pool_is_a_member_and_removal_forgets_it() {
        let (db, _dir) = temp_db().await;
        let pool = PoolRecord {
            poolid: "lab1".into(),
            max_vcpus: Some(4),
            ..Default::default()
        };
        assert!(db.insert_pool(&pool).await.unwrap());
        assert_eq!(db.pools().await.unwrap(), vec![pool]);
        assert!(db.insert_vm_in_pool(&vm(100), "lab1").await.unwrap());
        assert!(!db.insert_vm_in_pool(&vm(100), "lab1").await.unwrap());
        db.insert_vm(&vm(101)).await.unwrap();
        db.add_pool_members("lab1", &[101]).await.unwrap();
        let rows = db.access_rows().await.unwrap();
        assert_eq!(rows.pool_members.len(), 2);
        db.remove_vm_access(100).await.unwrap();
        db.remove_pool_members("lab1", &[101]).await.unwrap();
        assert!(db.access_rows().await.unwrap().pool_members.is_empty());
        assert!(db.delete_pool("lab1").await.unwrap());
    }
}
