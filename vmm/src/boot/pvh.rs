//! PVH boot (Xen's HVM direct boot ABI, as used by Linux's CONFIG_PVH and the Kiln test
//! guest): load the ELF, write `hvm_start_info` with the memory map, and start the boot vCPU
//! in 32-bit protected mode, paging off, at the note's entry with EBX = start info.

use std::fs::File;
use std::path::Path;

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, Error as ElfError, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use super::{layout, BootEntry, BootError};
use crate::memory::GuestMemory;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// Load a PVH ELF image and write the start info (memory map, command line).
pub fn load(
    mem: &GuestMemory,
    kernel: &Path,
    cmdline: Option<&str>,
) -> Result<BootEntry, BootError> {
    let mut file = File::open(kernel).map_err(|source| BootError::OpenImage {
        path: kernel.to_path_buf(),
        source,
    })?;
    let loaded = Elf::load(
        mem,
        None,
        &mut file,
        Some(GuestAddress(layout::HIGH_MEMORY_START)),
    )
    .map_err(|source| match source {
        linux_loader::loader::Error::Elf(ElfError::InvalidElfMagicNumber)
        | linux_loader::loader::Error::Elf(ElfError::ReadElfHeader) => BootError::NotElf {
            path: kernel.to_path_buf(),
        },
        source => BootError::Load {
            path: kernel.to_path_buf(),
            source,
        },
    })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(BootError::NoPvhNote {
            path: kernel.to_path_buf(),
        });
    };

    let mut start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        memmap_paddr: layout::PVH_MEMMAP,
        ..Default::default()
    };
    if let Some(cmdline) = cmdline {
        if cmdline.len() >= layout::CMDLINE_MAX {
            return Err(BootError::CmdlineTooLong { len: cmdline.len() });
        }
        let mut bytes = cmdline.as_bytes().to_vec();
        bytes.push(0);
        mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))
            .map_err(|source| BootError::WriteGuest {
                what: "kernel command line",
                source,
            })?;
        start_info.cmdline_paddr = layout::CMDLINE;
    }
    let memmap = memory_map(mem);
    start_info.memmap_entries = memmap.len() as u32;
    let mut params = BootParams::new(&start_info, GuestAddress(layout::PVH_START_INFO));
    params.set_sections(&memmap, GuestAddress(layout::PVH_MEMMAP));
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(BootError::StartInfo)?;
    write_boot_gdt(mem)?;
    Ok(BootEntry {
        entry: entry.raw_value(),
        start_info: layout::PVH_START_INFO,
    })
}

/// The E820-style map: low RAM, the reserved EBDA/BIOS hole, then every RAM region.
fn memory_map(mem: &GuestMemory) -> Vec<hvm_memmap_table_entry> {
    let entry = |addr: u64, size: u64, type_: u32| hvm_memmap_table_entry {
        addr,
        size,
        type_,
        reserved: 0,
    };
    let mut map = vec![
        entry(0, layout::EBDA_START, E820_RAM),
        entry(
            layout::EBDA_START,
            layout::HIGH_MEMORY_START - layout::EBDA_START,
            E820_RESERVED,
        ),
    ];
    for region in mem.iter() {
        let start = region
            .start_addr()
            .raw_value()
            .max(layout::HIGH_MEMORY_START);
        let end = region.start_addr().raw_value() + region.len();
        if end > start {
            map.push(entry(start, end - start, E820_RAM));
        }
    }
    map
}

// Segment descriptors of the boot GDT: flat 32-bit code, flat data, a TSS.
const GDT_CODE: u64 = gdt_entry(0xc09b, 0, 0xfffff);
const GDT_DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
const GDT_TSS: u64 = gdt_entry(0x008b, 0, 0x67);
const BOOT_GDT: [u64; 5] = [0, 0, GDT_CODE, GDT_DATA, GDT_TSS];

/// A GDT descriptor from (flags << 8 | access byte), base and 20-bit limit.
const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0x0000_f0ff) << 40)
}

/// The KVM view of descriptor `index` of the boot GDT.
fn segment(index: u16) -> kvm_segment {
    let e = BOOT_GDT[index as usize];
    let access = ((e >> 40) & 0xff) as u8;
    let flags = ((e >> 52) & 0xf) as u8;
    let raw_limit = ((e & 0xffff) | ((e >> 32) & 0xf_0000)) as u32;
    let g = (flags >> 3) & 1;
    kvm_segment {
        base: ((e >> 16) & 0xff_ffff) | ((e >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: access & 0xf,
        present: (access >> 7) & 1,
        dpl: (access >> 5) & 3,
        db: (flags >> 2) & 1,
        s: (access >> 4) & 1,
        l: (flags >> 1) & 1,
        g,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn write_boot_gdt(mem: &GuestMemory) -> Result<(), BootError> {
    for (i, e) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::BOOT_GDT + 8 * i as u64))
            .map_err(|source| BootError::WriteGuest {
                what: "boot GDT",
                source,
            })?;
    }
    Ok(())
}

/// Special registers for the PVH entry: protected mode, paging off, flat segments.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = segment(2);
    let data = segment(3);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(4);
    sregs.gdt.base = layout::BOOT_GDT;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// General registers for the PVH entry.
pub fn boot_regs(entry: &BootEntry) -> kvm_regs {
    kvm_regs {
        rip: entry.entry,
        rbx: entry.start_info,
        rflags: 0x2,
        ..Default::default()
    }
}

/// FPU state after reset (x87 control word, MXCSR).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_code_segment_is_flat_32_bit() {
        let cs = segment(2);
        assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 0x10));
        assert_eq!(
            (cs.type_, cs.present, cs.db, cs.l, cs.s, cs.g),
            (0xb, 1, 1, 0, 1, 1)
        );
        let tr = segment(4);
        assert_eq!((tr.limit, tr.type_, tr.s, tr.g), (0x67, 0xb, 0, 0));
    }

    #[test]
    fn memory_map_reserves_the_bios_hole() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("16 MiB");
        let map = memory_map(&mem);
        let view: Vec<(u64, u64, u32)> = map.iter().map(|e| (e.addr, e.size, e.type_)).collect();
        assert_eq!(
            view,
            vec![
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED),
                (0x100000, (16 << 20) - 0x100000, E820_RAM),
            ]
        );
    }
}
