//! Per-VM cgroups: every `kiln-vmm` runs in a cgroup of its own, `kiln/<node>/vm-<vmid>`,
//! in each cgroup v1 controller used here (cpu, cpuacct, memory, pids) or in the cgroup v2
//! hierarchy, so its CPU time and memory are accounted per VM (as Proxmox's
//! `qemu.slice/<vmid>.scope`) and a VM's threads cannot escape it. `kiln-vmm` joins its
//! cgroup (`--cgroup`) before it allocates guest memory, so none of it is charged elsewhere.
//!
//! Where cgroups cannot be written (a container, not root) VMs run without one; the agent
//! says so once at start.

use std::io;
use std::path::{Path, PathBuf};

use kiln_node_client::NodeName;

/// cgroup v1 controllers a VM's cgroup is created in (those mounted on the host).
const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// Where this node's VM cgroups live.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// `<hierarchy>/kiln/<node>` for each hierarchy used.
    bases: Vec<PathBuf>,
}

/// One VM's cgroup, which its `kiln-vmm` joins when it starts.
#[derive(Debug)]
pub struct VmCgroup {
    /// Its directory in each hierarchy.
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Finds the hierarchies under `root` (normally `/sys/fs/cgroup`) and creates
    /// `kiln/<node>` in each; `None` (with the reason) where that is not possible.
    pub fn detect(root: &Path, node: &NodeName) -> Result<Cgroups, String> {
        let mut hierarchies: Vec<PathBuf> = V1_CONTROLLERS
            .iter()
            .map(|c| root.join(c))
            .filter(|p| p.join("cgroup.procs").exists())
            .collect();
        if hierarchies.is_empty() && root.join("cgroup.controllers").exists() {
            hierarchies.push(root.to_owned());
        }
        if hierarchies.is_empty() {
            return Err(format!("no cgroup hierarchy under {}", root.display()));
        }
        let bases: Vec<PathBuf> = hierarchies
            .iter()
            .map(|h| h.join("kiln").join(node.as_str()))
            .collect();
        for base in &bases {
            std::fs::create_dir_all(base)
                .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        }
        if root.join("cgroup.controllers").exists() && bases.len() == 1 {
            // cgroup v2: controllers must be enabled on the way down (best effort; without
            // them the VM is still placed and its CPU time accounted).
            let kiln = root.join("kiln");
            for dir in [&kiln, &bases[0]] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
            }
        }
        Ok(Cgroups { bases })
    }

    fn dirs(&self, vmid: u32) -> impl Iterator<Item = PathBuf> + '_ {
        self.bases.iter().map(move |b| b.join(format!("vm-{vmid}")))
    }

    /// Creates VM `vmid`'s cgroup (kept if it exists). Blocking.
    pub fn prepare(&self, vmid: u32) -> io::Result<VmCgroup> {
        let mut dirs = Vec::new();
        for dir in self.dirs(vmid) {
            std::fs::create_dir_all(&dir)?;
            dirs.push(dir);
        }
        Ok(VmCgroup { dirs })
    }

    /// Removes VM `vmid`'s cgroup once its processes are gone (a busy one stays). Blocking.
    pub fn remove(&self, vmid: u32) {
        for dir in self.dirs(vmid) {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::debug!("VM {vmid}: cannot remove cgroup {}: {e}", dir.display());
                }
                _ => {}
            }
        }
    }
}

impl VmCgroup {
    /// `kiln-vmm` arguments that make it join this cgroup first thing.
    pub fn vmm_args(&self) -> Vec<std::ffi::OsString> {
        self.dirs
            .iter()
            .flat_map(|d| ["--cgroup".into(), d.clone().into_os_string()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_without_hierarchies_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("kiln-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let err = Cgroups::detect(&dir, &"n1".parse().expect("name")).expect_err("none");
        assert!(err.contains("no cgroup hierarchy"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn v1_controllers_get_a_directory_per_vm() {
        let dir = std::env::temp_dir().join(format!("kiln-cg1-{}", std::process::id()));
        for c in ["cpu", "memory"] {
            std::fs::create_dir_all(dir.join(c)).expect("dir");
            std::fs::write(dir.join(c).join("cgroup.procs"), "").expect("procs");
        }
        let cg = Cgroups::detect(&dir, &"n1".parse().expect("name")).expect("cgroups");
        let vm = cg.prepare(100).expect("prepare");
        assert_eq!(vm.dirs.len(), 2);
        assert_eq!(vm.vmm_args().len(), 4);
        assert!(dir.join("cpu/kiln/n1/vm-100").is_dir());
        assert!(dir.join("memory/kiln/n1/vm-100").is_dir());
        cg.remove(100);
        assert!(!dir.join("cpu/kiln/n1/vm-100").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
