//! Checks a [`VmSpec`] against the node before anything is spawned.

use kiln_node_client::wire::{VmSpec, VMID_MAX, VMID_MIN, VM_MEMORY_MIN_MIB, VM_NAME_MAX};

use super::images::check_image_name;

/// The most vCPUs per host CPU a VM may have.
const VCPUS_PER_HOST_CPU: u32 = 4;
/// kiln-vmm takes the vCPU count as a byte (and the MP table has 8-bit APIC ids).
const VCPUS_MAX: u32 = 254;

/// What the host offers, for validating specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Host RAM in MiB.
    pub memory_mib: u64,
    /// Logical host CPUs.
    pub cpus: u32,
}

impl HostLimits {
    /// Most vCPUs one VM may have on this host.
    pub fn max_vcpus(&self) -> u32 {
        self.cpus
            .max(1)
            .saturating_mul(VCPUS_PER_HOST_CPU)
            .min(VCPUS_MAX)
    }
}

/// Checks `spec` for the VM `path_vmid`; the message says what to change.
pub fn check_spec(spec: &VmSpec, path_vmid: u32, host: HostLimits) -> Result<(), String> {
    check_vmid(path_vmid)?;
    if spec.vmid != path_vmid {
        return Err(format!(
            "the spec is for VM {} but the request is for VM {path_vmid}",
            spec.vmid
        ));
    }
    let name_len = spec.name.chars().count();
    if spec.name.trim().is_empty() || name_len > VM_NAME_MAX {
        return Err(format!(
            "VM name must be 1 to {VM_NAME_MAX} characters (got {name_len})"
        ));
    }
    if spec.name.chars().any(char::is_control) {
        return Err("VM name must not contain control characters".to_owned());
    }
    if u64::from(spec.memory_mib) < u64::from(VM_MEMORY_MIN_MIB)
        || u64::from(spec.memory_mib) > host.memory_mib
    {
        return Err(format!(
            "memory must be {VM_MEMORY_MIN_MIB} to {} MiB (this node's RAM); got {} MiB",
            host.memory_mib, spec.memory_mib
        ));
    }
    let max_vcpus = host.max_vcpus();
    if spec.vcpus == 0 || spec.vcpus > max_vcpus {
        return Err(format!(
            "vcpus must be 1 to {max_vcpus} on this node ({} host CPUs); got {}",
            host.cpus, spec.vcpus
        ));
    }
    check_image_name(&spec.image).map_err(|e| e.to_string())?;
    if let Some(cmdline) = &spec.cmdline {
        if cmdline.len() > 4096 || cmdline.contains('\0') {
            return Err("cmdline must be at most 4096 bytes without NUL characters".to_owned());
        }
    }
    Ok(())
}

/// Checks a VM id from a path.
pub fn check_vmid(vmid: u32) -> Result<(), String> {
    if (VMID_MIN..=VMID_MAX).contains(&vmid) {
        Ok(())
    } else {
        Err(format!(
            "VM id {vmid} is out of range: use {VMID_MIN} to {VMID_MAX}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostLimits = HostLimits {
        memory_mib: 1024,
        cpus: 2,
    };

    fn spec() -> VmSpec {
        VmSpec {
            vmid: 101,
            name: "web".into(),
            memory_mib: 64,
            vcpus: 1,
            image: "kiln-test-guest".into(),
            cmdline: None,
            ha: false,
        }
    }

    #[test]
    fn specs_are_checked_table_style() {
        let cases: Vec<(&str, VmSpec, u32, Option<&str>)> = vec![
            ("valid", spec(), 101, None),
            ("path mismatch", spec(), 102, Some("request is for VM 102")),
            (
                "vmid too small",
                VmSpec { vmid: 99, ..spec() },
                99,
                Some("out of range"),
            ),
            (
                "empty name",
                VmSpec {
                    name: " ".into(),
                    ..spec()
                },
                101,
                Some("1 to 64"),
            ),
            (
                "long name",
                VmSpec {
                    name: "x".repeat(65),
                    ..spec()
                },
                101,
                Some("1 to 64"),
            ),
            (
                "too little memory",
                VmSpec {
                    memory_mib: 15,
                    ..spec()
                },
                101,
                Some("16 to 1024 MiB"),
            ),
            (
                "more than the host",
                VmSpec {
                    memory_mib: 1025,
                    ..spec()
                },
                101,
                Some("1024 MiB"),
            ),
            (
                "no vcpus",
                VmSpec { vcpus: 0, ..spec() },
                101,
                Some("1 to 8"),
            ),
            (
                "too many vcpus",
                VmSpec { vcpus: 9, ..spec() },
                101,
                Some("1 to 8"),
            ),
            (
                "bad image",
                VmSpec {
                    image: "../etc/passwd".into(),
                    ..spec()
                },
                101,
                Some("invalid image name"),
            ),
        ];
        for (what, spec, vmid, want) in cases {
            match (check_spec(&spec, vmid, HOST), want) {
                (Ok(()), None) => {}
                (Err(msg), Some(part)) => assert!(msg.contains(part), "{what}: {msg}"),
                (got, want) => panic!("{what}: got {got:?}, want an error containing {want:?}"),
            }
        }
    }
}
