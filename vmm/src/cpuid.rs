//! CPUID for the guest: what KVM supports on this host, minus what a snapshot or migration
//! could not carry, with per-vCPU APIC IDs.
//!
//! Removed: AMX tile state (XTILECFG/XTILEDATA), which needs KVM_GET_XSAVE2 and does not fit
//! the 4 KiB `kvm_xsave` area that save/restore uses. Added: the hypervisor bit.
//! (Under PVM `set_cpuid2` is accepted but the guest still sees the host's CPUID.)

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

/// Errors of CPUID setup.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("cannot read the CPUID that KVM supports on this host")]
    Supported(#[source] kvm_ioctls::Error),
}

const LEAF_FEATURES: u32 = 0x1;
const LEAF_EXT_FEATURES: u32 = 0x7;
const LEAF_XSAVE: u32 = 0xd;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 7 EDX: AMX-BF16, AMX-TILE, AMX-INT8.
const EDX_AMX: u32 = (1 << 22) | (1 << 24) | (1 << 25);
/// XCR0 bits 17 and 18: XTILECFG and XTILEDATA.
const XCR0_AMX: u32 = (1 << 17) | (1 << 18);

/// The host's supported CPUID, filtered (see the module doc). Per-vCPU fields are set by
/// [`for_vcpu`].
pub fn base(kvm: &Kvm) -> Result<CpuId, CpuidError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(CpuidError::Supported)?;
    for e in cpuid.as_mut_slice() {
        match (e.function, e.index) {
            (LEAF_FEATURES, _) => e.ecx |= ECX_HYPERVISOR,
            (LEAF_EXT_FEATURES, 0) => e.edx &= !EDX_AMX,
            (LEAF_XSAVE, 0) => e.eax &= !XCR0_AMX,
            (LEAF_XSAVE, 17 | 18) => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            _ => {}
        }
    }
    Ok(cpuid)
}

/// `base` with this vCPU's APIC ID and the vCPU count.
pub fn for_vcpu(base: &CpuId, vcpu_id: u8, vcpu_count: u8) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            LEAF_FEATURES => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
                e.ebx = (e.ebx & 0x0000_ffff)
                    | (u32::from(vcpu_id) << 24)
                    | (u32::from(vcpu_count) << 16);
                if vcpu_count > 1 {
                    e.edx |= 1 << 28; // HTT: the count field is valid
                }
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => e.edx = u32::from(vcpu_id),
            _ => {}
        }
    }
    cpuid
}
