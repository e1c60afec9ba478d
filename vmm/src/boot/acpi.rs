//! ACPI tables: how a Linux guest built without MP-table support (`CONFIG_X86_MPPARSE=n`,
//! e.g. Debian's cloud kernel) learns the vCPUs and the IOAPIC. The MP table stays (the Kiln
//! test guest reads it); this describes the same machine:
//!
//! - RSDP (revision 2) at [`layout::ACPI_START`], inside the 0xe0000..0x100000 area Linux
//!   scans, and also handed over directly: `acpi_rsdp_addr` in the Linux zero page,
//!   `rsdp_paddr` in the PVH start info.
//! - XSDT listing the FADT and the MADT.
//! - FADT: hardware-reduced ACPI (no PM1/GPE blocks, no SCI, no FACS), no VGA, no i8042
//!   advertised (kiln-vmm's i8042 is only a reset line; Linux still resets through it), no
//!   fixed power or sleep button, and the sleep control and status registers (I/O ports,
//!   see [`crate::devices::power`]) through which the guest enters S5 to power off.
//! - DSDT: `\_S5_` (the sleep type for soft off), the power button `\_SB.PWRB` (`PNP0C0C`)
//!   and the Generic Event Device `\_SB.GED_` (`ACPI0013`) that notifies it (see
//!   [`crate::devices::ged`]). COM1 needs no entry: it is found at its legacy port.
//! - MADT ("APIC"): one enabled Local APIC per vCPU (APIC ID = index, as in the MP table and
//!   the CPUID topology), the IOAPIC (ID = vCPU count, like the MP table, GSI base 0), one
//!   identity interrupt source override per ISA IRQ 1..15 and a Local APIC NMI on LINT1.
//!
//! Interrupt routing mirrors the MP table and KVM's default GSI routing (kiln-vmm installs
//! none of its own): ISA IRQ n is IOAPIC pin n, edge, active high. There is no IRQ0→GSI2
//! override as on QEMU (QEMU re-routes GSI 0 to pin 2; KVM's default routing does not). The
//! identity overrides are spelled out because with hardware-reduced ACPI Linux has no legacy
//! PIC and sets up only the ISA IRQs the firmware lists (COM1 is IRQ 4). IRQ 0 is left out:
//! a hardware-reduced guest does not use the PIT, and the FADT's SCI number is 0, so an
//! override for source 0 would be taken as the SCI's.
//!
//! The tables come from the rust-vmm `acpi_tables` crate, which builds the headers and the
//! checksums; the two MADT structures it lacks (types 2 and 4) are zerocopy structs here.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress};
use zerocopy::byteorder::{LE, U16, U32};
use zerocopy::{Immutable, IntoBytes};

use super::mptable::{IOAPIC_ADDR, LAPIC_ADDR, MAX_VCPUS};
use super::{layout, BootError};
use crate::devices::{ged, power};
use crate::memory::GuestMemory;

/// Where the guest finds the RSDP.
pub const RSDP_ADDR: u64 = layout::ACPI_START;

const OEM_ID: [u8; 6] = *b"KILN  ";
const OEM_REVISION: u32 = 1;
/// IA-PC boot architecture flags: VGA not present (bit 2). The "8042" bit (1) stays clear.
const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
/// ISA IRQs described by an interrupt source override (see the module docs).
const ISA_OVERRIDES: std::ops::RangeInclusive<u8> = 1..=15;
/// Local APIC NMI: all processors.
const ALL_PROCESSORS: u8 = 0xff;

/// MADT interrupt source override (type 2).
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    kind: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: U32<LE>,
    flags: U16<LE>,
}

impl InterruptSourceOverride {
    /// ISA `irq` on `gsi`, polarity and trigger as the bus defines them (edge, high).
    fn isa(irq: u8, gsi: u32) -> Self {
        InterruptSourceOverride {
            kind: 2,
            length: 10,
            bus: 0,
            source: irq,
            gsi: gsi.into(),
            flags: 0.into(),
        }
    }
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// MADT Local APIC NMI (type 4).
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct LocalApicNmi {
    kind: u8,
    length: u8,
    processor_uid: u8,
    flags: U16<LE>,
    lint: u8,
}

impl Aml for LocalApicNmi {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// An 8-bit register at an I/O port, as the FADT's generic address structures give it.
fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The DSDT: the S5 sleep type, the power button and the Generic Event Device.
fn dsdt() -> Sdt {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, *b"KILNDSDT", OEM_REVISION);
    dsdt.append_slice(&power::s5_aml());
    dsdt.append_slice(&ged::dsdt_aml());
    dsdt
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

/// The MADT for `vcpus` processors.
fn madt(vcpus: usize) -> MADT {
    let mut madt = MADT::new(
        OEM_ID,
        *b"KILNAPIC",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for id in 0..vcpus as u8 {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus as u8, IOAPIC_ADDR, 0));
    for irq in ISA_OVERRIDES {
        madt.add_structure(InterruptSourceOverride::isa(irq, u32::from(irq)));
    }
    madt.add_structure(LocalApicNmi {
        kind: 4,
        length: 6,
        processor_uid: ALL_PROCESSORS,
        flags: 0.into(),
        lint: 1,
    });
    madt
}

/// Build the tables for `vcpus` processors: (guest-physical address, bytes) pairs, the RSDP
/// first at [`RSDP_ADDR`], the rest after it in [`layout::ACPI_START`]..[`layout::ACPI_END`].
pub fn build(vcpus: usize) -> Result<Vec<(u64, Vec<u8>)>, BootError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(BootError::TooManyVcpus(vcpus));
    }
    let mut next = (RSDP_ADDR + Rsdp::len() as u64).next_multiple_of(16);
    let mut tables = Vec::new();
    let mut place = |table: Vec<u8>| {
        let addr = next;
        next = (addr + table.len() as u64).next_multiple_of(16);
        tables.push((addr, table));
        addr
    };

    let dsdt_addr = place(dsdt().as_slice().to_vec());
    let mut fadt = FADTBuilder::new(OEM_ID, *b"KILNFACP", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH_VGA_NOT_PRESENT.into();
    fadt.sleep_control_reg = io_register(power::SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_register(power::SLEEP_STATUS_PORT);
    let fadt_addr = place(bytes(&fadt.finalize()));
    let madt_addr = place(bytes(&madt(vcpus)));
    let mut xsdt = XSDT::new(OEM_ID, *b"KILNXSDT", OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(bytes(&xsdt));
    debug_assert!(next <= layout::ACPI_END);

    tables.insert(0, (RSDP_ADDR, bytes(&Rsdp::new(OEM_ID, xsdt_addr))));
    Ok(tables)
}

/// Write the ACPI tables for `vcpus` processors; the RSDP is at [`RSDP_ADDR`].
pub fn write(mem: &GuestMemory, vcpus: usize) -> Result<(), BootError> {
    for (addr, table) in build(vcpus)? {
        mem.write_slice(&table, GuestAddress(addr))
            .map_err(|source| BootError::WriteGuest {
                what: "ACPI tables",
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }
    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }

    /// Guest memory with the tables written, and a reader of one table (checked: length
    /// from its header, checksum zero) by address.
    struct Guest(GuestMemory);

    impl Guest {
        fn new(vcpus: usize) -> Guest {
            let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 2 << 20)]).expect("2 MiB");
            write(&mem, vcpus).expect("tables fit");
            Guest(mem)
        }
        fn read(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut b = vec![0u8; len];
            self.0.read_slice(&mut b, GuestAddress(addr)).expect("read");
            b
        }
        fn table(&self, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
            assert!(
                (layout::ACPI_START..layout::ACPI_END).contains(&addr),
                "{addr:#x}"
            );
            let header = self.read(addr, 36);
            assert_eq!(&header[..4], signature);
            let table = self.read(addr, u32_at(&header, 4) as usize);
            assert_eq!(
                sum(&table),
                0,
                "{} checksum",
                String::from_utf8_lossy(signature)
            );
            assert_eq!(&table[10..16], b"KILN  ");
            table
        }
        /// RSDP → XSDT → tables by signature.
        fn tables(&self) -> Vec<Vec<u8>> {
            let rsdp = self.read(RSDP_ADDR, 36);
            assert_eq!(&rsdp[..8], b"RSD PTR ");
            assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum");
            assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
            assert_eq!(rsdp[15], 2, "revision 2: has an XSDT");
            assert_eq!(u32_at(&rsdp, 20), 36);
            let xsdt = self.table(u64_at(&rsdp, 24), b"XSDT");
            assert_eq!((xsdt.len() - 36) % 8, 0);
            (36..xsdt.len())
                .step_by(8)
                .map(|at| {
                    let addr = u64_at(&xsdt, at);
                    let signature: [u8; 4] = self.read(addr, 4).try_into().expect("4");
                    self.table(addr, &signature)
                })
                .collect()
        }
    }

    /// MADT entries: (type, body after type and length).
    fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            assert!(len >= 2 && at + len <= madt.len(), "entry at {at}");
            out.push((kind, madt[at + 2..at + len].to_vec()));
            at += len;
        }
        out
    }

    #[test]
    fn tables_chain_from_the_rsdp_with_valid_checksums() {
        for vcpus in [1, 2, 8, MAX_VCPUS] {
            let guest = Guest::new(vcpus);
            let tables = guest.tables();
            let signatures: Vec<&[u8]> = tables.iter().map(|t| &t[..4]).collect();
            assert_eq!(signatures, [b"FACP", b"APIC"], "{vcpus} vCPUs");

            let fadt = &tables[0];
            assert_eq!(fadt.len(), 276, "FADT 6.5");
            let flags = u32_at(fadt, 112);
            assert_ne!(flags & (1 << 20), 0, "hardware-reduced");
            assert_eq!(u16_at(fadt, 109) & 2, 0, "no i8042 advertised");
            assert_eq!(u32_at(fadt, 40), 0, "32-bit DSDT pointer unused");
            // Sleep control / status registers: SystemIO, 8 bits, byte access, the port.
            assert_eq!(&fadt[244..248], [1, 8, 0, 1], "sleep control register");
            assert_eq!(u64_at(fadt, 248), u64::from(power::SLEEP_CONTROL_PORT));
            assert_eq!(&fadt[256..260], [1, 8, 0, 1], "sleep status register");
            assert_eq!(u64_at(fadt, 260), u64::from(power::SLEEP_STATUS_PORT));
            let dsdt = guest.table(u64_at(fadt, 140), b"DSDT");
            assert_eq!(&dsdt[36..], [power::s5_aml(), ged::dsdt_aml()].concat());
        }
    }

    #[test]
    fn dsdt_holds_s5_the_power_button_and_the_generic_event_device() {
        let guest = Guest::new(1);
        let fadt = guest.tables().remove(0);
        let dsdt = guest.table(u64_at(&fadt, 140), b"DSDT");
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        // Name (\_S5_, Package (2) { 5, 0 })
        assert!(has(&[
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00
        ]));
        assert!(has(b"PWRB"), "power button device");
        assert!(has(b"GED_") && has(b"ACPI0013\0"), "generic event device");
        assert!(has(b"_EVT") && has(b"_CRS"));
    }

    /// Write `table` into `dir` and disassemble it with `iasl -d`: the ASL (panics with iasl's
    /// output if it reports an error).
    fn disassemble(dir: &std::path::Path, name: &str, table: &[u8]) -> String {
        let dat = dir.join(format!("{name}.dat"));
        std::fs::write(&dat, table).expect("write table");
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&dat)
            .output()
            .expect("run iasl");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "iasl -d {name}: {log}");
        assert!(!log.contains("Error"), "iasl -d {name}: {log}");
        std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("iasl wrote the .dsl")
    }

    /// ACPICA's disassembler accepts the DSDT and the FADT, and the DSDT's ASL compiles back
    /// cleanly. Needs `iasl` (Debian's
    /// acpica-tools, installed by scripts/setup.sh); says why it skips without it.
    #[test]
    fn iasl_disassembles_the_dsdt_and_the_fadt() {
        if std::process::Command::new("iasl")
            .arg("-v")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIP iasl_disassembles_the_dsdt_and_the_fadt: iasl is not installed \
                 (Debian package acpica-tools; scripts/setup.sh installs it)"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("kiln-acpi-iasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let guest = Guest::new(2);
        let fadt = guest.tables().remove(0);
        let dsdt = guest.table(u64_at(&fadt, 140), b"DSDT");

        let dsl = disassemble(&dir, "dsdt", &dsdt);
        for want in [
            "Device (\\_SB.PWRB)",
            "EisaId (\"PNP0C0C\")",
            "Device (\\_SB.GED)",
            "\"ACPI0013\"",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )",
            "0x00000009,",
            "OperationRegion (GDST, SystemIO, 0x0604, 0x04)",
            "Method (_EVT, 1, Serialized)",
            "Local0 = GDAT",
            "If ((Local0 & One))",
            "Notify (\\_SB.PWRB, 0x80)",
            "Name (\\_S5, Package (0x02)",
        ] {
            assert!(dsl.contains(want), "no {want:?} in the DSDT:\n{dsl}");
        }

        // The ASL compiles back without errors or warnings (names resolve, methods are sound).
        let out = std::process::Command::new("iasl")
            .arg("-p")
            .arg(dir.join("recompiled"))
            .arg(dir.join("dsdt.dsl"))
            .output()
            .expect("run iasl");
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && log.contains("0 Errors, 0 Warnings"),
            "iasl could not recompile the DSDT: {log}{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let facp = disassemble(&dir, "facp", &fadt);
        for want in [
            "Hardware Reduced (V5) : 1",
            "Control Method Power Button (V1) : 1",
        ] {
            assert!(facp.contains(want), "no {want:?} in the FADT:\n{facp}");
        }
        for (register, port) in [
            ("Sleep Control Register", "0600"),
            ("Sleep Status Register", "0601"),
        ] {
            let gas = facp
                .split(register)
                .nth(1)
                .and_then(|rest| rest.split("\n\n").next())
                .unwrap_or_else(|| panic!("no {register} in the FADT:\n{facp}"));
            assert!(
                gas.contains("Space ID : 01 [SystemIO]"),
                "{register}: {gas}"
            );
            assert!(
                gas.contains(&format!("Address : 000000000000{port}")),
                "{register}: {gas}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn madt_lists_every_vcpu_the_ioapic_and_the_isa_routing() {
        for vcpus in [1usize, 2, 3, 16, MAX_VCPUS] {
            let guest = Guest::new(vcpus);
            let madt = guest.tables().remove(1);
            assert_eq!(u32_at(&madt, 36), LAPIC_ADDR);
            let entries = madt_entries(&madt);
            let lapics: Vec<(u8, u8, u32)> = entries
                .iter()
                .filter(|(kind, _)| *kind == 0)
                .map(|(_, b)| (b[0], b[1], u32_at(b, 2)))
                .collect();
            let want: Vec<(u8, u8, u32)> = (0..vcpus as u8).map(|id| (id, id, 1)).collect();
            assert_eq!(lapics, want, "{vcpus} vCPUs: one enabled LAPIC each");
            let ioapics: Vec<(u8, u32, u32)> = entries
                .iter()
                .filter(|(kind, _)| *kind == 1)
                .map(|(_, b)| (b[0], u32_at(b, 2), u32_at(b, 6)))
                .collect();
            assert_eq!(
                ioapics,
                [(vcpus as u8, IOAPIC_ADDR, 0)],
                "as in the MP table"
            );
            let overrides: Vec<(u8, u8, u32, u16)> = entries
                .iter()
                .filter(|(kind, _)| *kind == 2)
                .map(|(_, b)| (b[0], b[1], u32_at(b, 2), u16_at(b, 6)))
                .collect();
            let want: Vec<(u8, u8, u32, u16)> =
                (1..=15u8).map(|irq| (0, irq, u32::from(irq), 0)).collect();
            assert_eq!(overrides, want, "ISA IRQ n on pin n, no IRQ0→GSI2");
            let nmis: Vec<&Vec<u8>> = entries
                .iter()
                .filter(|(kind, _)| *kind == 4)
                .map(|(_, b)| b)
                .collect();
            assert_eq!(nmis, [&vec![0xff, 0, 0, 1]], "NMI on LINT1 of every LAPIC");
            assert_eq!(entries.len(), vcpus + 1 + 15 + 1);
        }
    }

    #[test]
    fn zero_or_too_many_vcpus_are_refused() {
        assert!(build(0).is_err());
        assert!(build(MAX_VCPUS + 1).is_err());
    }
}
