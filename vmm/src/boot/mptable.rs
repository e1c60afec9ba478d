//! Intel MultiProcessor Specification 1.4 table: how the guest learns the vCPUs (LAPIC IDs
//! 0..n), the IOAPIC and the ISA interrupt routing. Linux reads it when there is no ACPI;
//! the Kiln test guest counts the processor entries.

use vm_memory::{Bytes, GuestAddress};

use super::{layout, BootError};
use crate::memory::GuestMemory;

/// Guest-physical address of the IOAPIC.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Guest-physical address of the local APICs.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// ISA IRQs routed through the IOAPIC (KVM's IOAPIC has 24 pins; ISA uses 0..15).
const ISA_IRQS: u8 = 16;
/// Largest vCPU count: APIC IDs are 8-bit and 255 is broadcast; the IOAPIC takes one ID.
pub const MAX_VCPUS: usize = 254;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Build the floating pointer structure and configuration table for `vcpus` processors,
/// the configuration table placed at `table_addr`.
pub fn build(vcpus: usize, table_addr: u32) -> Result<(Vec<u8>, Vec<u8>), BootError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(BootError::TooManyVcpus(vcpus));
    }
    let ioapic_id = vcpus as u8;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus as u8 {
        entries.push(0u8); // processor
        entries.push(id);
        entries.push(APIC_VERSION);
        entries.push(1 | if id == 0 { 2 } else { 0 }); // enabled | BSP
        entries.extend_from_slice(&0x0600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&0x0201u32.to_le_bytes()); // FPU | APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']); // bus 0: ISA
    count += 1;
    entries.push(2); // IOAPIC
    entries.push(ioapic_id);
    entries.push(IOAPIC_VERSION);
    entries.push(1); // enabled
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for irq in 0..ISA_IRQS {
        // I/O interrupt assignment: IRQ 0 as ExtINT (the PIC), the rest as INT, pin = IRQ.
        let kind = if irq == 0 { 3 } else { 0 };
        entries.extend_from_slice(&[3, kind, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupt assignment: LINT0 ExtINT, LINT1 NMI, on every LAPIC (0xff).
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"KILN    ");
    table.extend_from_slice(b"KILN-VMM    ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&table_addr.to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(4); // spec revision
    fp.push(0); // checksum, below
    fp.extend_from_slice(&[0; 5]); // feature bytes: a configuration table is present
    fp[10] = checksum(&fp);
    Ok((fp, table))
}

/// Write the MP table at the start of the EBDA.
pub fn write(mem: &GuestMemory, vcpus: usize) -> Result<(), BootError> {
    let table_addr = layout::EBDA_START + 16;
    let (fp, table) = build(vcpus, table_addr as u32)?;
    let write = |bytes: &[u8], at: u64| {
        mem.write_slice(bytes, GuestAddress(at))
            .map_err(|source| BootError::WriteGuest {
                what: "MP table",
                source,
            })
    };
    write(&fp, layout::EBDA_START)?;
    write(&table, table_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_checksum_to_zero_and_list_every_vcpu() {
        let (fp, table) = build(3, 0x9fc10).expect("3 vCPUs fit");
        assert_eq!(fp.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let entry_count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(entry_count, 3 + 1 + 1 + 16 + 2);
        // the processor entries come first, 20 bytes each, BSP flag on the first
        assert_eq!(&table[44..46], &[0, 0]);
        assert_eq!(table[44 + 3], 3);
        assert_eq!(&table[64..66], &[0, 1]);
        assert_eq!(table[64 + 3], 1);
    }

    #[test]
    fn zero_or_too_many_vcpus_are_refused() {
        assert!(build(0, 0).is_err());
        assert!(build(255, 0).is_err());
    }
}
