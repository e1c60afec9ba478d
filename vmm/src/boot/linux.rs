//! Linux guests: an uncompressed `vmlinux` ELF or a bzImage, an optional initramfs and a
//! command line.
//!
//! - `vmlinux` with a PVH note (CONFIG_PVH): Linux's own PVH entry ([`super::pvh`]), the
//!   initramfs as module 0 of `hvm_start_info`.
//! - `vmlinux` without one, or a bzImage: the 64-bit boot protocol
//!   (Documentation/arch/x86/boot.rst): `boot_params` (the "zero page") with the setup header
//!   (a bzImage's own, from linux-loader), the E820 map, command line and initrd; the boot
//!   vCPU in long mode with 0..4 GiB identity-mapped, the boot GDT's `__BOOT_CS`/`__BOOT_DS`,
//!   RSI = zero page, at `startup_64` (a bzImage's is 0x200 past its protected-mode code).
//!
//! The initramfs goes at the top of low memory, below the kernel's `initrd_addr_max`, above
//! everything the kernel (and a bzImage's decompressor) may occupy.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::KernelLoader;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use super::{gdt, layout, pvh, BootEntry, BootError, Initrd, MemoryMapEntry};
use crate::memory::GuestMemory;

/// Command line used when none is given: console on COM1, reboot through the i8042 (which
/// kiln-vmm turns into a VM exit), reboot on panic, no PCI probing (there is no PCI bus)
/// and no PS/2 mouse/multiplexer probing.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd";

/// "HdrS" at offset 0x202 of a bzImage.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Offset of the setup header's magic in the image.
const HDRS_OFFSET: usize = 0x202;
const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader`: "undefined" boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `xloadflags`: the kernel has the legacy 64-bit entry point at 0x200.
const XLF_KERNEL_64: u16 = 1;
/// Boot protocol 2.12 introduced `xloadflags`.
const MIN_64BIT_PROTOCOL: u16 = 0x020c;
/// `startup_64` relative to a bzImage's protected-mode code.
const BZIMAGE_STARTUP_64: u64 = 0x200;
/// `kernel_alignment` of a 64-bit kernel (CONFIG_PHYSICAL_ALIGN), for images without header.
const DEFAULT_KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// `cmdline_size` before boot protocol 2.06.
const OLD_CMDLINE_MAX: usize = 255;
/// Page table entry bits.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x80;
const PAGE: u64 = 4096;

/// What kind of kernel image a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// ELF (`vmlinux`, or a PVH image such as the test guest).
    Elf,
    /// bzImage (Linux boot protocol 2.x setup header).
    BzImage,
}

/// Recognise an image from its first bytes (at least 0x206 for a bzImage).
pub fn image_format(head: &[u8]) -> Option<ImageFormat> {
    if head.starts_with(b"\x7fELF") {
        return Some(ImageFormat::Elf);
    }
    let magic = head.get(HDRS_OFFSET..HDRS_OFFSET + 4)?;
    (u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) == HDRS_MAGIC)
        .then_some(ImageFormat::BzImage)
}

/// Read the start of `path` and recognise it.
pub fn sniff(path: &Path) -> Result<Option<ImageFormat>, BootError> {
    let open = |source| BootError::OpenImage {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(HDRS_OFFSET + 4);
    File::open(path)
        .map_err(open)?
        .take((HDRS_OFFSET + 4) as u64)
        .read_to_end(&mut head)
        .map_err(open)?;
    Ok(image_format(&head))
}

/// Load a Linux kernel, its initramfs and command line; write the boot structures.
pub fn load(
    mem: &GuestMemory,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<BootEntry, BootError> {
    match sniff(kernel)? {
        Some(ImageFormat::Elf) => {
            let loaded = pvh::load_elf(mem, kernel)?;
            let initrd = initrd
                .map(|p| load_initrd(mem, p, loaded.kernel_end, u64::MAX))
                .transpose()?;
            match loaded.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(entry) => {
                    pvh::configure(mem, entry.raw_value(), Some(cmdline), initrd)
                }
                _ => configure_64bit(mem, loaded.kernel_load.raw_value(), None, cmdline, initrd),
            }
        }
        Some(ImageFormat::BzImage) => {
            let mut file = File::open(kernel).map_err(|source| BootError::OpenImage {
                path: kernel.to_path_buf(),
                source,
            })?;
            let loaded = BzImage::load(
                mem,
                None,
                &mut file,
                Some(GuestAddress(layout::HIGH_MEMORY_START)),
            )
            .map_err(|source| BootError::Load {
                path: kernel.to_path_buf(),
                source,
            })?;
            let hdr = loaded.setup_header.unwrap_or_default();
            let (version, xloadflags) = (hdr.version, hdr.xloadflags);
            if version < MIN_64BIT_PROTOCOL || xloadflags & XLF_KERNEL_64 == 0 {
                return Err(BootError::No64BitEntry {
                    path: kernel.to_path_buf(),
                    version,
                    xloadflags,
                });
            }
            let kernel_end = bzimage_kernel_end(&hdr, loaded.kernel_end);
            let initrd = initrd
                .map(|p| load_initrd(mem, p, kernel_end, u64::from(hdr.initrd_addr_max)))
                .transpose()?;
            let entry = loaded.kernel_load.raw_value() + BZIMAGE_STARTUP_64;
            configure_64bit(mem, entry, Some(hdr), cmdline, initrd)
        }
        None => Err(BootError::NotElf {
            path: kernel.to_path_buf(),
        }),
    }
}

/// End of the memory a bzImage may use while it decompresses itself: its decompressor moves
/// the image to the preferred address (or the load address rounded up to the kernel
/// alignment, if higher) and needs `init_size` bytes from there. KASLR, when on, avoids the
/// initrd by itself; without it this range must stay clear.
pub fn bzimage_kernel_end(hdr: &setup_header, loaded_end: u64) -> u64 {
    let alignment = u64::from(hdr.kernel_alignment).max(PAGE);
    let load = u64::from(hdr.code32_start).next_multiple_of(alignment);
    let target = load.max(hdr.pref_address);
    loaded_end.max(target + u64::from(hdr.init_size))
}

/// Where an initrd of `size` bytes goes: as high as possible below `limit` (the end of low
/// RAM or the kernel's `initrd_addr_max` + 1), page aligned, above `kernel_end`.
pub fn place_initrd(
    size: u64,
    kernel_end: u64,
    low_ram_end: u64,
    addr_max: u64,
) -> Result<u64, BootError> {
    let limit = low_ram_end.min(addr_max.saturating_add(1));
    let floor = kernel_end.next_multiple_of(PAGE);
    let too_large = || BootError::InitrdTooLarge {
        size,
        room: limit.saturating_sub(floor),
        kernel_end: floor,
        limit,
    };
    let start = limit.checked_sub(size).ok_or_else(too_large)? & !(PAGE - 1);
    if start < floor {
        return Err(too_large());
    }
    Ok(start)
}

fn load_initrd(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
    addr_max: u64,
) -> Result<Initrd, BootError> {
    let open = |source| BootError::OpenInitrd {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open)?;
    let size = file.metadata().map_err(open)?.len();
    if size == 0 {
        return Err(BootError::EmptyInitrd {
            path: path.to_path_buf(),
        });
    }
    // Low RAM: the region at guest-physical 0, which ends at the MMIO hole at most.
    let low_ram_end = mem
        .iter()
        .find(|r| r.start_addr().raw_value() == 0)
        .map_or(0, |r| r.len());
    let addr = place_initrd(size, kernel_end, low_ram_end, addr_max)?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|source| BootError::LoadInitrd {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Initrd { addr, size })
}

/// Longest command line (without the NUL) the kernel accepts.
pub fn cmdline_limit(hdr: Option<&setup_header>) -> usize {
    let ours = layout::CMDLINE_MAX - 1;
    match hdr {
        None => ours,
        Some(h) if h.version >= 0x0206 && h.cmdline_size > 0 => (h.cmdline_size as usize).min(ours),
        Some(_) => OLD_CMDLINE_MAX,
    }
}

/// The zero page: the kernel's setup header (or a minimal one for a `vmlinux`) with what a
/// boot loader fills in, and the E820 map.
pub fn zero_page(
    hdr: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<Initrd>,
    map: &[MemoryMapEntry],
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(hdr) = hdr {
        params.hdr = hdr;
    } else {
        params.hdr.kernel_alignment = DEFAULT_KERNEL_ALIGNMENT;
    }
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = layout::CMDLINE as u32;
    params.ext_cmd_line_ptr = (layout::CMDLINE >> 32) as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr as u32;
        params.ext_ramdisk_image = (initrd.addr >> 32) as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
        params.ext_ramdisk_size = (initrd.size >> 32) as u32;
    }
    let mut count = 0u8;
    for (slot, entry) in params.e820_table.iter_mut().zip(map) {
        slot.addr = entry.addr;
        slot.size = entry.size;
        slot.r#type = entry.kind;
        count += 1;
    }
    params.e820_entries = count;
    params.acpi_rsdp_addr = super::acpi::RSDP_ADDR;
    params
}

/// Identity mapping of 0..4 GiB with 2 MiB pages: (address, table) pairs.
pub fn identity_page_tables() -> Vec<(u64, Vec<u64>)> {
    let mut pml4 = vec![0u64; 512];
    pml4[0] = layout::PDPT | PTE_PRESENT_RW;
    let mut pdpt = vec![0u64; 512];
    let mut tables = Vec::new();
    for gib in 0..4u64 {
        let pd_addr = layout::PD + gib * PAGE;
        pdpt[gib as usize] = pd_addr | PTE_PRESENT_RW;
        let pd: Vec<u64> = (0..512u64)
            .map(|i| ((gib << 30) | (i << 21)) | PDE_2M_PAGE | PTE_PRESENT_RW)
            .collect();
        tables.push((pd_addr, pd));
    }
    tables.push((layout::PML4, pml4));
    tables.push((layout::PDPT, pdpt));
    tables
}

fn configure_64bit(
    mem: &GuestMemory,
    entry: u64,
    hdr: Option<setup_header>,
    cmdline: &str,
    initrd: Option<Initrd>,
) -> Result<BootEntry, BootError> {
    super::write_cmdline(mem, cmdline, cmdline_limit(hdr.as_ref()) + 1)?;
    let params = zero_page(hdr, cmdline.len(), initrd, &super::memory_map(mem));
    let write_err = |what| move |source| BootError::WriteGuest { what, source };
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE))
        .map_err(write_err("Linux zero page"))?;
    for (addr, table) in identity_page_tables() {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(write_err("boot page tables"))?;
    }
    gdt::write(mem, &gdt::LONG_MODE_GDT)?;
    Ok(BootEntry::Linux64 {
        entry,
        boot_params: layout::ZERO_PAGE,
    })
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Special registers for the 64-bit entry: long mode, paging on with the identity map.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    gdt::load_segments(&mut sregs, &gdt::LONG_MODE_GDT);
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = layout::PML4;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// General registers for the 64-bit entry: RSI = zero page, a small boot stack.
pub fn boot_regs(entry: u64, boot_params: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsi: boot_params,
        rsp: layout::BOOT_STACK,
        rbp: layout::BOOT_STACK,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::{E820_RAM, E820_RESERVED};

    const MIB: u64 = 1 << 20;

    fn bz_header() -> setup_header {
        // The fields of Debian's 6.1 cloud kernel that matter here.
        setup_header {
            header: HDRS_MAGIC,
            version: 0x020f,
            xloadflags: 0x7f,
            code32_start: 0x10_0000,
            kernel_alignment: 0x20_0000,
            pref_address: 0x100_0000,
            init_size: 0x337_8000,
            initrd_addr_max: 0x7fff_ffff,
            cmdline_size: 2047,
            setup_sects: 27,
            loadflags: 1,
            ..Default::default()
        }
    }

    #[test]
    fn image_formats_are_recognised_by_their_magic() {
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let cases: [(&[u8], Option<ImageFormat>); 5] = [
            (b"\x7fELF\x02\x01\x01", Some(ImageFormat::Elf)),
            (&bz, Some(ImageFormat::BzImage)),
            (&bz[..0x204], None),
            (&[0u8; 0x300], None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(image_format(head), want, "{} bytes", head.len());
        }
    }

    #[test]
    fn initrd_goes_high_page_aligned_and_clear_of_the_kernel() {
        let ok = |size, kernel_end, low, max| place_initrd(size, kernel_end, low, max);
        // (size, kernel_end, low RAM end, addr_max) -> start
        let cases = [
            (MIB, 64 * MIB, 256 * MIB, u64::MAX, 255 * MIB),
            (MIB + 1, 64 * MIB, 256 * MIB, u64::MAX, 255 * MIB - PAGE),
            (100, 64 * MIB, 256 * MIB, 0x7fff_ffff, 256 * MIB - PAGE),
            (MIB, 64 * MIB, 4096 * MIB, 0x7fff_ffff, 2048 * MIB - MIB),
            (MIB, 64 * MIB, 0xc000_0000, 0x37ff_ffff, 0x3800_0000 - MIB),
            (MIB, 255 * MIB, 256 * MIB, u64::MAX, 255 * MIB),
        ];
        for (size, kernel_end, low, max, want) in cases {
            let got = ok(size, kernel_end, low, max).expect("fits");
            assert_eq!(got, want & !(PAGE - 1), "size {size:#x}");
            assert_eq!(got % PAGE, 0);
            assert!(got >= kernel_end && got + size <= low.min(max.saturating_add(1)));
        }
    }

    #[test]
    fn an_initrd_that_does_not_fit_says_how_much_room_there_is() {
        for (size, kernel_end, low) in [
            (200 * MIB, 64 * MIB, 256 * MIB),
            (MIB, 256 * MIB, 256 * MIB),
            (512 * MIB, 0, 256 * MIB),
        ] {
            let err = place_initrd(size, kernel_end, low, u64::MAX).expect_err("too large");
            let BootError::InitrdTooLarge { room, .. } = err else {
                panic!("wrong error {err}");
            };
            assert_eq!(room, low.saturating_sub(kernel_end));
            assert!(err.to_string().contains("give the VM more memory"));
        }
    }

    #[test]
    fn bzimage_reserves_its_decompression_area() {
        let hdr = bz_header();
        // Loaded at 1 MiB, 14 MiB long: it runs from 16 MiB (pref_address) for init_size.
        assert_eq!(bzimage_kernel_end(&hdr, 15 * MIB), 0x100_0000 + 0x337_8000);
        // Loaded above the preferred address: from there, aligned.
        let high = setup_header {
            code32_start: 0x210_0000,
            ..hdr
        };
        assert_eq!(bzimage_kernel_end(&high, 0), 0x220_0000 + 0x337_8000);
        // A loaded image longer than that area wins.
        assert_eq!(bzimage_kernel_end(&hdr, 100 * MIB), 100 * MIB);
    }

    #[test]
    fn command_line_limits_follow_the_boot_protocol() {
        let old = setup_header {
            version: 0x0205,
            cmdline_size: 9999,
            ..Default::default()
        };
        let cases = [
            (None, layout::CMDLINE_MAX - 1),
            (Some(bz_header()), 2047),
            (Some(old), OLD_CMDLINE_MAX),
            (
                Some(setup_header {
                    cmdline_size: 1 << 20,
                    ..bz_header()
                }),
                layout::CMDLINE_MAX - 1,
            ),
        ];
        for (hdr, want) in cases {
            assert_eq!(cmdline_limit(hdr.as_ref()), want);
        }
    }

    #[test]
    fn zero_page_carries_header_cmdline_initrd_and_e820() {
        let map = [
            MemoryMapEntry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM,
            },
            MemoryMapEntry {
                addr: 0x9fc00,
                size: 0x60400,
                kind: E820_RESERVED,
            },
            MemoryMapEntry {
                addr: MIB,
                size: 255 * MIB,
                kind: E820_RAM,
            },
        ];
        let initrd = Initrd {
            addr: 0xff0_0000,
            size: 0x10_0123,
        };
        // (header, initrd) -> (kernel_alignment, loadflags kept, ramdisk image, size)
        let cases = [
            (
                Some(bz_header()),
                Some(initrd),
                (0x20_0000, 1, 0xff0_0000, 0x10_0123),
            ),
            (None, None, (DEFAULT_KERNEL_ALIGNMENT, 0, 0, 0)),
        ];
        for (hdr, initrd, want) in cases {
            let p = zero_page(hdr, 42, initrd, &map);
            let h = p.hdr;
            assert_eq!({ h.boot_flag }, BOOT_FLAG);
            assert_eq!({ h.header }, HDRS_MAGIC);
            assert_eq!({ h.type_of_loader }, LOADER_TYPE_UNDEFINED);
            assert_eq!({ h.cmd_line_ptr }, layout::CMDLINE as u32);
            assert_eq!({ h.cmdline_size }, 42);
            let got = (
                { h.kernel_alignment },
                { h.loadflags },
                { h.ramdisk_image },
                { h.ramdisk_size },
            );
            assert_eq!(got, want);
            assert_eq!({ p.ext_ramdisk_image }, 0);
            assert_eq!({ p.acpi_rsdp_addr }, crate::boot::acpi::RSDP_ADDR);
            assert_eq!(p.e820_entries, 3);
            let table: Vec<(u64, u64, u32)> = p.e820_table[..3]
                .iter()
                .map(|e| ({ e.addr }, { e.size }, { e.r#type }))
                .collect();
            assert_eq!(
                table,
                map.iter()
                    .map(|e| (e.addr, e.size, e.kind))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn page_tables_identity_map_four_gib() {
        let tables = identity_page_tables();
        let find = |addr| {
            tables
                .iter()
                .find(|(a, _)| *a == addr)
                .map(|(_, t)| t.clone())
                .expect("table")
        };
        let pml4 = find(layout::PML4);
        assert_eq!(pml4[0], layout::PDPT | 3);
        assert!(pml4[1..].iter().all(|e| *e == 0));
        let pdpt = find(layout::PDPT);
        for gib in 0..4u64 {
            assert_eq!(pdpt[gib as usize], (layout::PD + gib * PAGE) | 3);
        }
        // Walk a few addresses through the tables.
        for addr in [0u64, 0x1_0000_0000 - 1, 0x100_0000, 0xc000_0000 + 0x20_1234] {
            let pd = find(pdpt[(addr >> 30) as usize] & !0xfff);
            let pde = pd[((addr >> 21) & 0x1ff) as usize];
            assert_eq!(pde & 0x83, 0x83, "present, writable, 2 MiB");
            assert_eq!((pde & !0x1f_ffff) | (addr & 0x1f_ffff), addr);
        }
        // Every structure sits below the command line and clear of the zero page.
        for (addr, _) in &tables {
            assert!(*addr >= layout::ZERO_PAGE + PAGE && *addr + PAGE <= layout::BOOT_STACK);
        }
    }

    #[test]
    fn long_mode_entry_state() {
        let s = boot_sregs(kvm_sregs::default());
        assert_eq!(
            (s.cr0, s.cr3, s.cr4, s.efer),
            (0x8000_0011, 0x9000, 0x20, 0x500)
        );
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x10, 1, 0));
        assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
        let r = boot_regs(0x100_0200, layout::ZERO_PAGE);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100_0200, 0x8000, 2));
    }

    #[test]
    fn loading_something_else_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("kiln-linux-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk");
        std::fs::write(&junk, vec![0x55u8; 4096]).expect("write");
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 32 << 20)]).expect("mem");
        let err = load(&mem, &junk, None, DEFAULT_CMDLINE).expect_err("not a kernel");
        assert!(matches!(err, BootError::NotElf { .. }), "{err}");
        let mut old_bz = vec![0u8; 8192];
        old_bz[0x1f1] = 4;
        old_bz[0x202..0x206].copy_from_slice(b"HdrS");
        old_bz[0x206..0x208].copy_from_slice(&0x0209u16.to_le_bytes());
        old_bz[0x211] = 1; // LOADED_HIGH
        old_bz[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        let bz = dir.join("old-bz");
        std::fs::write(&bz, &old_bz).expect("write");
        let err = load(&mem, &bz, None, DEFAULT_CMDLINE).expect_err("no 64-bit entry");
        assert!(
            matches!(err, BootError::No64BitEntry { version: 0x209, .. }),
            "{err}"
        );
        let missing = load(&mem, &dir.join("nope"), None, "").expect_err("missing");
        assert!(matches!(missing, BootError::OpenImage { .. }), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
