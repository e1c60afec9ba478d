//! Identity mapping above the 4 GiB that boot.rs maps, for RAM the VMM placed above the
//! 32-bit MMIO hole. 2 MiB pages, user-accessible like the rest.

use core::ptr::addr_of_mut;

use crate::boot::BOOT_MAPPED_BYTES;

/// Highest address the test guest can map (64 GiB): enough for a test guest.
pub const MAX_MAPPED_BYTES: u64 = 64 << 30;
const EXTRA_PDS: usize = ((MAX_MAPPED_BYTES - BOOT_MAPPED_BYTES) >> 30) as usize;

#[repr(C, align(4096))]
struct PageTable([u64; 512]);

static mut EXTRA_PD: [PageTable; EXTRA_PDS] = [const { PageTable([0; 512]) }; EXTRA_PDS];

extern "C" {
    static mut boot_pml4: [u64; 512];
}

/// Map [4 GiB, end) identity; returns the end actually mapped (capped at MAX_MAPPED_BYTES).
pub fn map_up_to(end: u64) -> u64 {
    let end = end.min(MAX_MAPPED_BYTES);
    if end <= BOOT_MAPPED_BYTES {
        return end;
    }
    // SAFETY: runs once at boot before anything uses addresses above 4 GiB; PML4[0] points to
    // the boot PDPT, whose entries 4.. are still empty and get our static page directories.
    unsafe {
        let pdpt = ((*addr_of_mut!(boot_pml4))[0] & !0xfff) as *mut u64;
        let gib_end = end.div_ceil(1 << 30);
        for gib in (BOOT_MAPPED_BYTES >> 30)..gib_end {
            let pd = &mut (*addr_of_mut!(EXTRA_PD))[(gib - (BOOT_MAPPED_BYTES >> 30)) as usize];
            for (i, e) in pd.0.iter_mut().enumerate() {
                *e = ((gib << 30) + ((i as u64) << 21)) | 0x87;
            }
            *pdpt.add(gib as usize) = (pd as *mut PageTable as u64) | 7;
        }
        core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
    }
    end
}
