//! Virtual machine configurations and placement.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// A VM's stored configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRecord {
    /// VM id.
    pub vmid: u32,
    /// Name.
    pub name: String,
    /// Node it is placed on.
    pub node: String,
    /// vCPUs.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Boot image.
    pub image: String,
    /// Extra kernel command line.
    pub args: Option<String>,
    /// Free text.
    pub description: String,
    /// Start with the cluster.
    pub onboot: bool,
    /// What the last action asked for: `running` or `stopped`.
    pub desired: String,
    /// A template: cloned, never started.
    pub template: bool,
}

const COLUMNS: &str =
    "vmid, name, node, cores, memory_mib, image, args, description, onboot, desired, template";

/// Insert a VM through `executor` (the pool, or a transaction that does more); `false` if the
/// id is taken.
pub(super) async fn insert_vm_with<'e, E>(executor: E, vm: &VmRecord) -> Result<bool, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let done = sqlx::query(
        "INSERT INTO vms (vmid, name, node, cores, memory_mib, image, args, description, onboot, desired, template, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vmid) DO NOTHING",
    )
    .bind(i64::from(vm.vmid))
    .bind(&vm.name)
    .bind(&vm.node)
    .bind(i64::from(vm.cores))
    .bind(i64::from(vm.memory_mib))
    .bind(&vm.image)
    .bind(&vm.args)
    .bind(&vm.description)
    .bind(i64::from(vm.onboot))
    .bind(&vm.desired)
    .bind(i64::from(vm.template))
    .bind(unix_now())
    .execute(executor)
    .await
    .ctx("creating a VM")?;
    Ok(done.rows_affected() == 1)
}

fn from_row(r: sqlx::sqlite::SqliteRow) -> VmRecord {
    VmRecord {
        vmid: r.get::<i64, _>("vmid") as u32,
        name: r.get("name"),
        node: r.get("node"),
        cores: r.get::<i64, _>("cores") as u32,
        memory_mib: r.get::<i64, _>("memory_mib") as u32,
        image: r.get("image"),
        args: r.get("args"),
        description: r.get("description"),
        onboot: r.get::<i64, _>("onboot") != 0,
        desired: r.get("desired"),
        template: r.get::<i64, _>("template") != 0,
    }
}

impl Db {
    /// All VMs, by id.
    pub async fn vms(&self) -> Result<Vec<VmRecord>, DbError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vms ORDER BY vmid"))
            .fetch_all(&self.pool)
            .await
            .ctx("listing VMs")?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One VM.
    pub async fn vm(&self, vmid: u32) -> Result<Option<VmRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vms WHERE vmid = ?"))
            .bind(i64::from(vmid))
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a VM")?;
        Ok(row.map(from_row))
    }

    /// Store a new VM; `false` if the id is taken (nothing changed then).
    pub async fn insert_vm(&self, vm: &VmRecord) -> Result<bool, DbError> {
        insert_vm_with(&self.pool, vm).await
    }

    /// Replace a VM's configuration (not its id).
    pub async fn update_vm(&self, vm: &VmRecord) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE vms SET name = ?, node = ?, cores = ?, memory_mib = ?, image = ?, args = ?, \
             description = ?, onboot = ?, desired = ?, template = ? WHERE vmid = ?",
        )
        .bind(&vm.name)
        .bind(&vm.node)
        .bind(i64::from(vm.cores))
        .bind(i64::from(vm.memory_mib))
        .bind(&vm.image)
        .bind(&vm.args)
        .bind(&vm.description)
        .bind(i64::from(vm.onboot))
        .bind(&vm.desired)
        .bind(i64::from(vm.template))
        .bind(i64::from(vm.vmid))
        .execute(&self.pool)
        .await
        .ctx("updating a VM")?;
        Ok(())
    }

    /// Record the node a VM belongs to (a migration's handover).
    pub async fn set_vm_node(&self, vmid: u32, node: &str) -> Result<(), DbError> {
        let done = sqlx::query("UPDATE vms SET node = ? WHERE vmid = ?")
            .bind(node)
            .bind(i64::from(vmid))
            .execute(&self.pool)
            .await
            .ctx("recording a VM's node")?;
        if done.rows_affected() != 1 {
            return Err(DbError::Query {
                context: "recording a VM's node",
                source: sqlx::Error::RowNotFound,
            });
        }
        Ok(())
    }

    /// Mark a VM as a template (there is no way back, as in Proxmox).
    pub async fn set_vm_template(&self, vmid: u32) -> Result<(), DbError> {
        let done = sqlx::query("UPDATE vms SET template = 1, desired = 'stopped' WHERE vmid = ?")
            .bind(i64::from(vmid))
            .execute(&self.pool)
            .await
            .ctx("marking a VM as template")?;
        if done.rows_affected() != 1 {
            return Err(DbError::Query {
                context: "marking a VM as template",
                source: sqlx::Error::RowNotFound,
            });
        }
        Ok(())
    }

    /// Record what the last action asked of a VM.
    pub async fn set_vm_desired(&self, vmid: u32, desired: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE vms SET desired = ? WHERE vmid = ?")
            .bind(desired)
            .bind(i64::from(vmid))
            .execute(&self.pool)
            .await
            .ctx("updating a VM")?;
        Ok(())
    }

    /// Remove a VM.
    pub async fn delete_vm(&self, vmid: u32) -> Result<(), DbError> {
        sqlx::query("DELETE FROM vms WHERE vmid = ?")
            .bind(i64::from(vmid))
            .execute(&self.pool)
            .await
            .ctx("deleting a VM")?;
        Ok(())
    }

    /// The smallest free VM id ≥ `from`.
    pub async fn next_free_vmid(&self, from: u32) -> Result<u32, DbError> {
        let ids: Vec<i64> = sqlx::query("SELECT vmid FROM vms WHERE vmid >= ? ORDER BY vmid")
            .bind(i64::from(from))
            .fetch_all(&self.pool)
            .await
            .ctx("finding a free VM id")?
            .into_iter()
            .map(|r| r.get("vmid"))
            .collect();
        let mut next = i64::from(from);
        for id in ids {
            if id != next {
                break;
            }
            next += 1;
        }
        Ok(next as u32)
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
    async fn vm_ids_are_unique_and_next_id_fills_gaps() {
        let (db, _dir) = temp_db().await;
        assert_eq!(db.next_free_vmid(100).await.unwrap(), 100);
        assert!(db.insert_vm(&vm(100)).await.unwrap());
        assert!(db.insert_vm(&vm(102)).await.unwrap());
        assert!(!db.insert_vm(&vm(100)).await.unwrap());
        assert_eq!(db.next_free_vmid(100).await.unwrap(), 101);
        assert!(db.insert_vm(&vm(101)).await.unwrap());
        assert_eq!(db.next_free_vmid(100).await.unwrap(), 103);
        let mut v = db.vm(101).await.unwrap().unwrap();
        v.memory_mib = 256;
        db.update_vm(&v).await.unwrap();
        assert_eq!(db.vm(101).await.unwrap().unwrap().memory_mib, 256);
        db.delete_vm(101).await.unwrap();
        assert_eq!(db.vms().await.unwrap().len(), 2);
        db.set_vm_template(102).await.unwrap();
        assert!(db.vm(102).await.unwrap().unwrap().template);
        assert!(db.set_vm_template(101).await.is_err());
    }
}
