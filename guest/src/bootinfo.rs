//! What the VMM tells the guest: the PVH `hvm_start_info` (memory map) and the MP table
//! (how many vCPUs there are).

use core::ptr::read_unaligned;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
/// RAM regions we keep track of.
pub const MAX_REGIONS: usize = 8;

/// A range of guest-physical RAM.
#[derive(Clone, Copy, Default)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

/// The memory map, RAM entries only.
pub struct MemoryMap {
    pub regions: [Region; MAX_REGIONS],
    pub count: usize,
}

impl MemoryMap {
    /// Total RAM in bytes.
    pub fn total(&self) -> u64 {
        self.regions[..self.count]
            .iter()
            .map(|r| r.end - r.start)
            .sum()
    }
}

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Read the RAM regions from the PVH start info. None if the magic is wrong.
pub fn read_memory_map(start_info: u64) -> Option<MemoryMap> {
    // SAFETY: the VMM put hvm_start_info at this identity-mapped address (PVH ABI).
    let info = unsafe { read_unaligned(start_info as *const StartInfo) };
    if info.magic != XEN_HVM_START_MAGIC || info.version < 1 {
        return None;
    }
    let mut map = MemoryMap {
        regions: [Region::default(); MAX_REGIONS],
        count: 0,
    };
    for i in 0..info.memmap_entries as u64 {
        // SAFETY: memmap_entries entries follow memmap_paddr (PVH ABI, version >= 1).
        let e = unsafe { read_unaligned((info.memmap_paddr + i * 24) as *const MemmapEntry) };
        if e.kind == E820_RAM && map.count < MAX_REGIONS {
            map.regions[map.count] = Region {
                start: e.addr,
                end: e.addr + e.size,
            };
            map.count += 1;
        }
    }
    Some(map)
}

fn find_signature(from: u64, to: u64, sig: &[u8; 4]) -> Option<u64> {
    let mut addr = from;
    while addr + 16 <= to {
        // SAFETY: scans identity-mapped low memory (EBDA and BIOS area) in 16-byte steps.
        let word = unsafe { read_unaligned(addr as *const [u8; 4]) };
        if &word == sig {
            return Some(addr);
        }
        addr += 16;
    }
    None
}

/// Number of enabled processors in the MP table (Intel MP spec 1.4), or None without one.
pub fn mp_table_cpus() -> Option<u32> {
    let fp = find_signature(0x9_fc00, 0xa_0000, b"_MP_")
        .or_else(|| find_signature(0xf_0000, 0x10_0000, b"_MP_"))?;
    // SAFETY: the floating pointer structure was found at fp; its config table pointer is
    // at offset 4 and the VMM wrote the table into guest RAM.
    unsafe {
        let table = read_unaligned((fp + 4) as *const u32) as u64;
        if read_unaligned(table as *const [u8; 4]) != *b"PCMP" {
            return None;
        }
        let entries = read_unaligned((table + 34) as *const u16);
        let mut p = table + 44;
        let mut cpus = 0;
        for _ in 0..entries {
            let kind = read_unaligned(p as *const u8);
            if kind == 0 {
                let flags = read_unaligned((p + 3) as *const u8);
                if flags & 1 != 0 {
                    cpus += 1;
                }
                p += 20;
            } else {
                p += 8;
            }
        }
        Some(cpus)
    }
}
