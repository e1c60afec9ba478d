//! Boot paths. Today: PVH ELF images (the Kiln test guest; a Linux `vmlinux` built with
//! CONFIG_PVH takes the same path with a command line). A Linux bzImage path (boot_params
//! "zero page") would be a sibling module using the same memory map and MP table.

pub mod mptable;
pub mod pvh;

use std::path::PathBuf;

/// Guest-physical layout of the boot structures, all below 1 MiB.
pub mod layout {
    /// GDT describing the PVH entry segments.
    pub const BOOT_GDT: u64 = 0x500;
    /// `hvm_start_info`.
    pub const PVH_START_INFO: u64 = 0x6000;
    /// PVH memory map (E820-style entries).
    pub const PVH_MEMMAP: u64 = 0x7000;
    /// Kernel command line (up to `CMDLINE_MAX` bytes).
    pub const CMDLINE: u64 = 0x2_0000;
    /// Longest command line accepted.
    pub const CMDLINE_MAX: usize = 4096;
    /// Start of the extended BIOS data area: the MP table lives here; reserved in the map.
    pub const EBDA_START: u64 = 0x9_fc00;
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
}

/// Where the boot vCPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// 32-bit entry point.
    pub entry: u64,
    /// Physical address of `hvm_start_info`, passed in EBX.
    pub start_info: u64,
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
        "kernel image {path} is not an ELF file; kiln-vmm boots PVH ELF images such as the \
         Kiln test guest (build it with `make guest`)"
    )]
    NotElf {
        /// The path given.
        path: PathBuf,
    },
    /// ELF without the PVH note.
    #[error(
        "kernel image {path} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build Linux with \
         CONFIG_PVH=y or use the Kiln test guest"
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
    #[error("kernel command line is {len} bytes; at most {max} are supported", max = layout::CMDLINE_MAX)]
    CmdlineTooLong {
        /// Its length.
        len: usize,
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
