//! Boot paths:
//! - [`pvh`]: ELF images with a PVH entry note (the Kiln test guest), 32-bit entry, EBX =
//!   `hvm_start_info`.
//! - [`linux`]: a Linux kernel, either an uncompressed `vmlinux` ELF (through its PVH note
//!   when it has one, else the 64-bit boot protocol) or a bzImage (64-bit boot protocol:
//!   zero page with setup header, E820 map, command line, initrd), plus an initramfs.
//!
//! Both share the memory map ([`memory_map`]), the MP table ([`mptable`]), the ACPI tables
//! ([`acpi`]) and the boot GDT selectors ([`gdt`]).

pub mod acpi;
pub mod gdt;
pub mod linux;
pub mod mptable;
pub mod pvh;

use std::path::PathBuf;

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use crate::memory::GuestMemory;

/// Guest-physical layout of the boot structures, all below 1 MiB.
pub mod layout {
    /// GDT describing the entry segments.
    pub const BOOT_GDT: u64 = 0x500;
    /// `hvm_start_info`.
    pub const PVH_START_INFO: u64 = 0x6000;
    /// PVH memory map (E820-style entries).
    pub const PVH_MEMMAP: u64 = 0x7000;
    /// PVH module list (the initrd).
    pub const PVH_MODLIST: u64 = 0x7800;
    /// Linux `boot_params` ("zero page"), 4 KiB.
    pub const ZERO_PAGE: u64 = 0x8000;
    /// Identity-mapping page tables for the 64-bit entry: PML4, PDPT, then four PDs.
    pub const PML4: u64 = 0x9000;
    /// Page-directory-pointer table.
    pub const PDPT: u64 = 0xa000;
    /// First of four page directories (2 MiB pages covering 0..4 GiB).
    pub const PD: u64 = 0xb000;
    /// Initial stack pointer of the 64-bit entry (the stack page is 0xf000..0x10000).
    pub const BOOT_STACK: u64 = 0xfff0;
    /// Kernel command line (up to `CMDLINE_MAX` bytes).
    pub const CMDLINE: u64 = 0x2_0000;
    /// Longest command line accepted.
    pub const CMDLINE_MAX: usize = 4096;
    /// Start of the extended BIOS data area: the MP table lives here; reserved in the map.
    pub const EBDA_START: u64 = 0x9_fc00;
    /// The ACPI RSDP, followed by the other ACPI tables: the start of the BIOS area that
    /// Linux scans for the RSDP (0xe0000..0x100000); reserved in the map.
    pub const ACPI_START: u64 = 0xe_0000;
    /// End of the room for the ACPI tables.
    pub const ACPI_END: u64 = 0xf_0000;
    /// First byte above the legacy hole (VGA, BIOS): images load from here.
    pub const HIGH_MEMORY_START: u64 = 0x10_0000;
}

/// What to boot.
#[derive(Debug, Clone)]
pub enum BootSource {
    /// An ELF image with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY).
    PvhElf {
        /// The image.
        kernel: PathBuf,
        /// Command line handed over in `hvm_start_info` (the test guest ignores it).
        cmdline: Option<String>,
    },
    /// A Linux kernel: `vmlinux` ELF or bzImage, with an optional initramfs.
    Linux {
        /// The kernel image.
        kernel: PathBuf,
        /// The initramfs (cpio, possibly compressed).
        initrd: Option<PathBuf>,
        /// Kernel command line; [`linux::DEFAULT_CMDLINE`] when absent.
        cmdline: Option<String>,
    },
}

/// How `--boot` chooses the boot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootKind {
    /// From the image: a bzImage, or anything with an initrd, boots as Linux; an ELF
    /// without an initrd boots through its PVH note.
    #[default]
    Auto,
    /// [`BootSource::PvhElf`].
    Pvh,
    /// [`BootSource::Linux`].
    Linux,
}

impl BootSource {
    /// Choose the boot path for `kernel` (see [`BootKind::Auto`]).
    pub fn resolve(
        kind: BootKind,
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: Option<String>,
    ) -> Result<BootSource, BootError> {
        let linux = match kind {
            BootKind::Linux => true,
            BootKind::Pvh => false,
            BootKind::Auto => {
                initrd.is_some() || linux::sniff(&kernel)? == Some(linux::ImageFormat::BzImage)
            }
        };
        if linux {
            return Ok(BootSource::Linux {
                kernel,
                initrd,
                cmdline,
            });
        }
        if let Some(initrd) = initrd {
            return Err(BootError::InitrdNeedsLinux { initrd });
        }
        Ok(BootSource::PvhElf { kernel, cmdline })
    }

    /// The kernel image path.
    pub fn kernel(&self) -> &std::path::Path {
        match self {
            BootSource::PvhElf { kernel, .. } | BootSource::Linux { kernel, .. } => kernel,
        }
    }

    /// Load the image(s) into guest memory and write the boot structures.
    pub fn load(&self, mem: &GuestMemory) -> Result<BootEntry, BootError> {
        match self {
            BootSource::PvhElf { kernel, cmdline } => pvh::load(mem, kernel, cmdline.as_deref()),
            BootSource::Linux {
                kernel,
                initrd,
                cmdline,
            } => linux::load(
                mem,
                kernel,
                initrd.as_deref(),
                cmdline.as_deref().unwrap_or(linux::DEFAULT_CMDLINE),
            ),
        }
    }
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEntry {
    /// PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh {
        /// 32-bit entry point.
        entry: u64,
        /// Physical address of `hvm_start_info`.
        start_info: u64,
    },
    /// Linux 64-bit boot protocol: long mode, identity-mapped 0..4 GiB, RSI = zero page.
    Linux64 {
        /// 64-bit entry point (`startup_64`).
        entry: u64,
        /// Physical address of `boot_params`.
        boot_params: u64,
    },
}

impl BootEntry {
    /// General registers of the boot vCPU.
    pub fn regs(&self) -> kvm_regs {
        match *self {
            BootEntry::Pvh { entry, start_info } => pvh::boot_regs(entry, start_info),
            BootEntry::Linux64 { entry, boot_params } => linux::boot_regs(entry, boot_params),
        }
    }

    /// Special registers of the boot vCPU, from the vCPU's reset state.
    pub fn sregs(&self, sregs: kvm_sregs) -> kvm_sregs {
        match self {
            BootEntry::Pvh { .. } => pvh::boot_sregs(sregs),
            BootEntry::Linux64 { .. } => linux::boot_sregs(sregs),
        }
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

/// IA32_MISC_ENABLE: fast string operations enabled, as firmware leaves it.
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
/// IA32_MTRR_DEF_TYPE: MTRRs enabled (bit 11), default type write-back (6).
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// MSRs every vCPU gets before it runs: firmware leaves MTRRs enabled with write-back as
/// the default type (otherwise Linux treats all memory as uncached: MTRRs "disabled"), and
/// fast strings on. The SYSENTER/SYSCALL MSRs start at zero, as after reset.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    let msr = |index: u32, data: u64| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        msr(0x174, 0),       // IA32_SYSENTER_CS
        msr(0x175, 0),       // IA32_SYSENTER_ESP
        msr(0x176, 0),       // IA32_SYSENTER_EIP
        msr(0xc000_0081, 0), // STAR
        msr(0xc000_0082, 0), // LSTAR
        msr(0xc000_0083, 0), // CSTAR
        msr(0xc000_0084, 0), // SYSCALL_MASK
        msr(0xc000_0102, 0), // KERNEL_GS_BASE
        msr(MSR_IA32_MISC_ENABLE, 1),
        msr(MSR_MTRR_DEF_TYPE, (1 << 11) | 6),
    ]
}

/// E820 "usable RAM".
pub const E820_RAM: u32 = 1;
/// E820 "reserved".
pub const E820_RESERVED: u32 = 2;

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryMapEntry {
    /// Start.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type.
    pub kind: u32,
}

/// The E820-style map: low RAM, the reserved EBDA/BIOS hole, then every RAM region.
pub fn memory_map(mem: &GuestMemory) -> Vec<MemoryMapEntry> {
    let entry = |addr: u64, size: u64, kind: u32| MemoryMapEntry { addr, size, kind };
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

/// Where the initramfs was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initrd {
    /// Guest-physical start (page aligned).
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Write a NUL-terminated command line at [`layout::CMDLINE`]; `max` counts the NUL.
pub(crate) fn write_cmdline(mem: &GuestMemory, cmdline: &str, max: usize) -> Result<(), BootError> {
    if cmdline.len() >= max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max - 1,
        });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))
        .map_err(|source| BootError::WriteGuest {
            what: "kernel command line",
            source,
        })
}

/// Errors while loading a guest.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The image file cannot be opened.
    #[error("cannot open kernel image {path}")]
    OpenImage {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF file.
    #[error(
        "kernel image {path} is not an ELF file nor a bzImage; kiln-vmm boots PVH ELF images \
         such as the Kiln test guest (build it with `make guest`) and Linux kernels (vmlinux \
         or bzImage, e.g. from `make guest-linux`)"
    )]
    NotElf {
        /// The path given.
        path: PathBuf,
    },
    /// ELF without the PVH note.
    #[error(
        "kernel image {path} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); for a Linux \
         vmlinux use `--boot linux` (64-bit boot protocol), or use the Kiln test guest"
    )]
    NoPvhNote {
        /// The path given.
        path: PathBuf,
    },
    /// linux-loader refused the image.
    #[error("cannot load kernel image {path} into guest memory")]
    Load {
        /// The path given.
        path: PathBuf,
        /// linux-loader's error.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The command line is too long.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit (the kernel's `cmdline_size`, or kiln-vmm's buffer).
        max: usize,
    },
    /// The command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// A bzImage without a 64-bit entry point.
    #[error(
        "bzImage {path} has no 64-bit entry point (boot protocol {version:#x}, xloadflags \
         {xloadflags:#x}); kiln-vmm needs protocol 2.12+ with XLF_KERNEL_64"
    )]
    No64BitEntry {
        /// The path given.
        path: PathBuf,
        /// Boot protocol version from the header.
        version: u16,
        /// `xloadflags`.
        xloadflags: u16,
    },
    /// `--initrd` with the PVH path.
    #[error("an initramfs ({initrd}) needs the Linux boot path (`--boot linux` or `auto`)")]
    InitrdNeedsLinux {
        /// The initrd given.
        initrd: PathBuf,
    },
    /// The initramfs cannot be read.
    #[error("cannot read initramfs {path}")]
    OpenInitrd {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The initramfs is empty.
    #[error("initramfs {path} is empty")]
    EmptyInitrd {
        /// The path given.
        path: PathBuf,
    },
    /// The initramfs does not fit between the kernel and the top of low memory.
    #[error(
        "initramfs of {size} bytes does not fit in guest memory: {room} bytes are free between \
         the kernel (up to {kernel_end:#x}) and {limit:#x}; give the VM more memory"
    )]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// Free room.
        room: u64,
        /// End of the kernel's area (including its decompression space).
        kernel_end: u64,
        /// Highest usable address + 1.
        limit: u64,
    },
    /// Copying the initramfs into guest memory failed.
    #[error("cannot copy initramfs {path} into guest memory")]
    LoadInitrd {
        /// The path given.
        path: PathBuf,
        /// vm-memory's error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// Writing boot structures failed.
    #[error("cannot write the {what} into guest memory")]
    WriteGuest {
        /// Which structure.
        what: &'static str,
        /// vm-memory's error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// The PVH start info could not be written.
    #[error("cannot write the PVH start info")]
    StartInfo(#[source] linux_loader::configurator::Error),
    /// Too many vCPUs for an MP table.
    #[error("{0} vCPUs do not fit an MP table (at most 254)")]
    TooManyVcpus(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_reserves_the_bios_hole_and_skips_the_mmio_hole() {
        type Ranges = Vec<(u64, u64)>;
        type Map = Vec<(u64, u64, u32)>;
        let mib = 1u64 << 20;
        let cases: [(Ranges, Map); 2] = [
            (
                vec![(0, 16 * mib)],
                vec![
                    (0, 0x9fc00, E820_RAM),
                    (0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED),
                    (0x100000, 16 * mib - 0x100000, E820_RAM),
                ],
            ),
            (
                vec![(0, 0xc000_0000), (1 << 32, 1 << 30)],
                vec![
                    (0, 0x9fc00, E820_RAM),
                    (0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED),
                    (0x100000, 0xc000_0000 - 0x100000, E820_RAM),
                    (1 << 32, 1 << 30, E820_RAM),
                ],
            ),
        ];
        for (ranges, want) in cases {
            let ranges: Vec<(GuestAddress, usize)> = ranges
                .into_iter()
                .map(|(a, s)| (GuestAddress(a), s as usize))
                .collect();
            let mem = GuestMemory::from_ranges(&ranges).expect("memory");
            let got: Vec<(u64, u64, u32)> = memory_map(&mem)
                .iter()
                .map(|e| (e.addr, e.size, e.kind))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn command_lines_are_checked_and_nul_terminated() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("1 MiB");
        write_cmdline(&mem, "console=ttyS0", 14).expect("13 bytes + NUL fit in 14");
        let mut back = [0u8; 14];
        mem.read_slice(&mut back, GuestAddress(layout::CMDLINE))
            .expect("read");
        assert_eq!(&back, b"console=ttyS0\0");
        assert!(matches!(
            write_cmdline(&mem, "console=ttyS0", 13),
            Err(BootError::CmdlineTooLong { len: 13, max: 12 })
        ));
        assert!(matches!(
            write_cmdline(&mem, "a\0b", 100),
            Err(BootError::CmdlineNul)
        ));
    }

    #[test]
    fn boot_msrs_enable_mtrrs_write_back_and_fast_strings() {
        let msrs = boot_msrs();
        let get = |i| msrs.iter().find(|m| m.index == i).map(|m| m.data);
        assert_eq!(get(MSR_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(get(MSR_IA32_MISC_ENABLE), Some(1));
    }
}
