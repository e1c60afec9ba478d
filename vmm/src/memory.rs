//! Guest memory: layout (RAM below the 32-bit MMIO hole, the rest above 4 GiB), the host
//! limit check, KVM memory slots, and how much of it is resident.

use kvm_ioctls::VmFd;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

/// Guest memory as the VMM holds it. A type alias so dirty-page tracking can switch the
/// bitmap type in one place (vm-memory feature `backend-bitmap`).
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

const MIB: u64 = 1 << 20;
/// Start of the 32-bit MMIO hole (IOAPIC at 0xfec0_0000, LAPIC at 0xfee0_0000 live in it).
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole: RAM continues here.
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// Smallest guest the VMM accepts: the boot structures below 1 MiB, an image at 1 MiB and
/// some room for it to work.
pub const MIN_MEMORY_MIB: u64 = 8;

/// Errors of guest memory setup.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Below the minimum.
    #[error("guest memory of {requested_mib} MiB is too small; give the VM at least {MIN_MEMORY_MIB} MiB")]
    TooSmall {
        /// What was asked.
        requested_mib: u64,
    },
    /// More than the host has.
    #[error(
        "guest memory of {requested_mib} MiB exceeds this host's memory ({host_ram_mib} MiB RAM + \
         {host_swap_mib} MiB swap); choose at most {host_ram_mib} MiB"
    )]
    ExceedsHost {
        /// What was asked.
        requested_mib: u64,
        /// MemTotal of the host.
        host_ram_mib: u64,
        /// SwapTotal of the host.
        host_swap_mib: u64,
    },
    /// /proc/meminfo could not be read.
    #[error("cannot read the host's memory size from /proc/meminfo")]
    HostMeminfo(#[source] std::io::Error),
    /// mmap of guest memory failed.
    #[error("cannot reserve {requested_mib} MiB of guest memory")]
    Allocate {
        /// What was asked.
        requested_mib: u64,
        /// Why.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// KVM refused a memory slot.
    #[error("KVM refused memory slot {slot} ({size_mib} MiB at {guest_addr:#x})")]
    MemorySlot {
        /// Slot number.
        slot: u32,
        /// Guest-physical start.
        guest_addr: u64,
        /// Size.
        size_mib: u64,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// The RAM ranges of a guest with `size` bytes: below the MMIO hole first, the rest at 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, u64)> {
    let low = size.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low)];
    if size > low {
        ranges.push((GuestAddress(MMIO_HOLE_END), size - low));
    }
    ranges
}

/// Host RAM and swap in MiB, from /proc/meminfo.
fn host_memory_mib() -> Result<(u64, u64), MemoryError> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(MemoryError::HostMeminfo)?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024)
            .unwrap_or(0)
    };
    Ok((field("MemTotal:"), field("SwapTotal:")))
}

/// Check a requested size against the minimum and the host (RAM + swap). Guest memory is
/// mapped with MAP_NORESERVE, so mmap alone would accept absurd sizes and fail later.
pub fn check_size(memory_mib: u64) -> Result<(), MemoryError> {
    if memory_mib < MIN_MEMORY_MIB {
        return Err(MemoryError::TooSmall {
            requested_mib: memory_mib,
        });
    }
    let (host_ram_mib, host_swap_mib) = host_memory_mib()?;
    if memory_mib > host_ram_mib + host_swap_mib {
        return Err(MemoryError::ExceedsHost {
            requested_mib: memory_mib,
            host_ram_mib,
            host_swap_mib,
        });
    }
    Ok(())
}

/// Reserve guest memory of `memory_mib` MiB (anonymous, touched lazily).
pub fn create(memory_mib: u64) -> Result<GuestMemory, MemoryError> {
    check_size(memory_mib)?;
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(memory_mib * MIB)
        .into_iter()
        .map(|(a, s)| (a, s as usize))
        .collect();
    GuestMemory::from_ranges(&ranges).map_err(|source| MemoryError::Allocate {
        requested_mib: memory_mib,
        source,
    })
}

/// Hand every region to KVM as a memory slot (slot = region index).
pub fn register(vm: &VmFd, mem: &GuestMemory) -> Result<(), MemoryError> {
    register_with_flags(vm, mem, 0)
}

/// Switch KVM's dirty-page logging on or off for every slot (re-registers the slots with
/// or without `KVM_MEM_LOG_DIRTY_PAGES`; KVM changes only the flags).
pub fn set_dirty_logging(vm: &VmFd, mem: &GuestMemory, on: bool) -> Result<(), MemoryError> {
    let flags = if on {
        kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES
    } else {
        0
    };
    register_with_flags(vm, mem, flags)
}

fn register_with_flags(vm: &VmFd, mem: &GuestMemory, flags: u32) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::MemorySlot {
                slot,
                guest_addr: region.start_addr().raw_value(),
                size_mib: region.len() / MIB,
                source: kvm_ioctls::Error::new(libc::EFAULT),
            })?;
        let slot_desc = kvm_bindings::kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mmap owned by `mem`, which the Vm keeps for as long as
        // the VM fd exists; the slot covers exactly that mapping.
        unsafe { vm.set_user_memory_region(slot_desc) }.map_err(|source| {
            MemoryError::MemorySlot {
                slot,
                guest_addr: slot_desc.guest_phys_addr,
                size_mib: slot_desc.memory_size / MIB,
                source,
            }
        })?;
    }
    Ok(())
}

/// Bytes of guest memory currently resident in host RAM (mincore over every region).
pub fn resident_bytes(mem: &GuestMemory) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let mut total = 0;
    for region in mem.iter() {
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let len = region.len();
        let pages = len.div_ceil(page) as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: `host..host+len` is one mapping owned by `mem`; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(host.cast(), len as usize, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page;
        }
    }
    total
}

/// Total guest memory in bytes.
pub fn size(mem: &GuestMemory) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_is_one_range_below_the_hole() {
        assert_eq!(ram_ranges(256 * MIB), vec![(GuestAddress(0), 256 * MIB)]);
    }

    #[test]
    fn large_guest_continues_above_4_gib() {
        let r = ram_ranges(4096 * MIB);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START));
        assert_eq!(
            r[1],
            (GuestAddress(MMIO_HOLE_END), 4096 * MIB - MMIO_HOLE_START)
        );
    }

    #[test]
    fn absurd_memory_is_refused_with_the_host_size() {
        let err = check_size(1 << 40).expect_err("a petabyte guest must be refused");
        assert!(
            err.to_string().contains("exceeds this host's memory"),
            "{err}"
        );
    }

    #[test]
    fn tiny_memory_is_refused() {
        assert!(matches!(check_size(1), Err(MemoryError::TooSmall { .. })));
    }
}
