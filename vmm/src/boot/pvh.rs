//! PVH boot (Xen's HVM direct boot ABI, as used by Linux's CONFIG_PVH and the Kiln test
//! guest): load the ELF, write `hvm_start_info` with the memory map, and start the boot vCPU
//! in 32-bit protected mode, paging off, at the note's entry with EBX = start info.

use std::fs::File;
use std::path::Path;

use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, Error as ElfError, PvhBootCapability};
use linux_loader::loader::{KernelLoader, KernelLoaderResult};
use vm_memory::{Address, GuestAddress};

use super::{gdt, layout, BootEntry, BootError, Initrd};
use crate::memory::GuestMemory;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// Load a PVH ELF image and write the start info (memory map, command line).
pub fn load(
    mem: &GuestMemory,
    kernel: &Path,
    cmdline: Option<&str>,
) -> Result<BootEntry, BootError> {
    let loaded = load_elf(mem, kernel)?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(BootError::NoPvhNote {
            path: kernel.to_path_buf(),
        });
    };
    configure(mem, entry.raw_value(), cmdline, None)
}

/// Load an ELF image at its physical addresses (not below 1 MiB).
pub(super) fn load_elf(mem: &GuestMemory, kernel: &Path) -> Result<KernelLoaderResult, BootError> {
    let mut file = File::open(kernel).map_err(|source| BootError::OpenImage {
        path: kernel.to_path_buf(),
        source,
    })?;
    Elf::load(
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
    })
}

/// Write `hvm_start_info` (memory map, command line, the initrd as module 0 — where Linux's
/// PVH entry looks for it), the boot GDT, and return the entry.
pub(super) fn configure(
    mem: &GuestMemory,
    entry: u64,
    cmdline: Option<&str>,
    initrd: Option<Initrd>,
) -> Result<BootEntry, BootError> {
    let mut start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        memmap_paddr: layout::PVH_MEMMAP,
        rsdp_paddr: super::acpi::RSDP_ADDR,
        ..Default::default()
    };
    if let Some(cmdline) = cmdline {
        super::write_cmdline(mem, cmdline, layout::CMDLINE_MAX)?;
        start_info.cmdline_paddr = layout::CMDLINE;
    }
    let memmap: Vec<hvm_memmap_table_entry> = super::memory_map(mem)
        .into_iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    start_info.memmap_entries = memmap.len() as u32;
    let modules: Vec<hvm_modlist_entry> = initrd
        .iter()
        .map(|i| hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        })
        .collect();
    if !modules.is_empty() {
        start_info.nr_modules = modules.len() as u32;
        start_info.modlist_paddr = layout::PVH_MODLIST;
    }
    let mut params = BootParams::new(&start_info, GuestAddress(layout::PVH_START_INFO));
    params.set_sections(&memmap, GuestAddress(layout::PVH_MEMMAP));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(layout::PVH_MODLIST));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(BootError::StartInfo)?;
    gdt::write(mem, &gdt::PVH_GDT)?;
    Ok(BootEntry::Pvh {
        entry,
        start_info: layout::PVH_START_INFO,
    })
}

/// Special registers for the PVH entry: protected mode, paging off, flat segments.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    gdt::load_segments(&mut sregs, &gdt::PVH_GDT);
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// General registers for the PVH entry: EBX = start info.
pub fn boot_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rbx: start_info,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_loader::loader::elf::start_info::hvm_start_info;
    use vm_memory::Bytes;

    #[test]
    fn start_info_lists_the_memory_map_command_line_and_initrd_module() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 64 << 20)]).expect("64 MiB");
        let initrd = Initrd {
            addr: 0x300_0000,
            size: 0x1234,
        };
        let entry =
            configure(&mem, 0x100_0000, Some("console=ttyS0"), Some(initrd)).expect("configure");
        assert!(matches!(
            entry,
            BootEntry::Pvh {
                entry: 0x100_0000,
                start_info: layout::PVH_START_INFO
            }
        ));
        let info: hvm_start_info = mem
            .read_obj(GuestAddress(layout::PVH_START_INFO))
            .expect("start info");
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(info.rsdp_paddr, crate::boot::acpi::RSDP_ADDR);
        assert_eq!(info.cmdline_paddr, layout::CMDLINE);
        assert_eq!(
            (info.nr_modules, info.modlist_paddr),
            (1, layout::PVH_MODLIST)
        );
        assert_eq!(info.memmap_entries, 3);
        let module: hvm_modlist_entry = mem
            .read_obj(GuestAddress(layout::PVH_MODLIST))
            .expect("module");
        assert_eq!((module.paddr, module.size), (0x300_0000, 0x1234));
        let mut cmdline = [0u8; 14];
        mem.read_slice(&mut cmdline, GuestAddress(layout::CMDLINE))
            .expect("cmdline");
        assert_eq!(&cmdline, b"console=ttyS0\0");
    }

    #[test]
    fn without_initrd_there_are_no_modules() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("16 MiB");
        configure(&mem, 0x10_0000, None, None).expect("configure");
        let info: hvm_start_info = mem
            .read_obj(GuestAddress(layout::PVH_START_INFO))
            .expect("start info");
        assert_eq!(
            (info.nr_modules, info.modlist_paddr, info.cmdline_paddr),
            (0, 0, 0)
        );
    }
}
