//! ACPI Generic Event Device (GED, `ACPI0013`): how a hardware-reduced ACPI machine (no SCI,
//! no GPE blocks) signals events to the guest, here the power button.
//!
//! * One 32-bit event register at I/O port [`EVENT_PORT`]: each bit is a pending event
//!   ([`EVENT_POWER_BUTTON`]). A read returns the pending bits and clears them.
//! * One interrupt, [`GSI`] (edge, active high, as the MADT's identity override for ISA IRQ 9
//!   says): raised after an event bit is set.
//!
//! The DSDT ([`dsdt_aml`]) describes both, so Linux's GED driver (drivers/acpi/evged.c)
//! claims the interrupt and runs `_EVT`, which reads the register and sends
//! `Notify(\_SB.PWRB, 0x80)` to the power button device (`PNP0C0C`); Linux's ACPI button
//! driver turns that into the input key `KEY_POWER`. The Kiln test guest reads the same
//! register from its own interrupt handler.

use std::sync::atomic::{AtomicU32, Ordering};

use acpi_tables::aml::{
    self, Device, EISAName, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If,
    Interrupt, Local, Method, Name, Notify, OpRegion, OpRegionSpace, Path, ResourceTemplate, Store,
};
use acpi_tables::Aml;

use super::IrqLine;

/// The event register's I/O port (4 bytes, read as a DWord).
pub const EVENT_PORT: u16 = 0x604;
/// Length of the event register in bytes.
pub const EVENT_PORT_LEN: u16 = 4;
/// The GED's interrupt: IOAPIC pin 9 (the ISA line ACPI traditionally uses for its SCI,
/// which a hardware-reduced machine does not have).
pub const GSI: u32 = 9;
/// Event bit: the power button was pressed.
pub const EVENT_POWER_BUTTON: u32 = 1 << 0;
/// ACPI notification value a power button device gets when pressed.
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// The device: pending event bits and the interrupt line.
pub struct GenericEventDevice {
    pending: AtomicU32,
    irq: IrqLine,
}

impl GenericEventDevice {
    /// A device with no pending events that raises `irq`.
    pub fn new(irq: IrqLine) -> Self {
        GenericEventDevice {
            pending: AtomicU32::new(0),
            irq,
        }
    }

    /// Set `events` pending and raise the interrupt.
    pub fn signal(&self, events: u32) -> std::io::Result<()> {
        // Set before the interrupt, so the guest's handler finds the bit.
        self.pending.fetch_or(events, Ordering::AcqRel);
        self.irq.trigger()
    }

    /// Press the power button.
    pub fn press_power_button(&self) -> std::io::Result<()> {
        self.signal(EVENT_POWER_BUTTON)
    }

    /// A guest read at `offset` into the register: offset 0 returns the pending events (the
    /// low `data.len()` bytes) and clears them all; other offsets read as 0.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if offset != 0 {
            return;
        }
        let events = self.pending.swap(0, Ordering::AcqRel).to_le_bytes();
        let n = data.len().min(events.len());
        data[..n].copy_from_slice(&events[..n]);
    }

    /// Events set and not yet read by the guest.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Acquire)
    }
}

/// The DSDT objects of the GED and the power button: `\_SB.GED_` (`ACPI0013`, its interrupt
/// in `_CRS`, the event register as a SystemIO region, `_EVT`) and `\_SB.PWRB` (`PNP0C0C`).
pub fn dsdt_aml() -> Vec<u8> {
    let mut out = Vec::new();
    power_button_device(&mut out);
    ged_device(&mut out);
    out
}

fn power_button_device(out: &mut Vec<u8>) {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0C0C"));
    let uid = Name::new("_UID".into(), &aml::ZERO);
    Device::new("\\_SB_.PWRB".into(), vec![&hid, &uid]).to_aml_bytes(out);
}

fn ged_device(out: &mut Vec<u8>) {
    let hid = Name::new("_HID".into(), &"ACPI0013");
    let uid = Name::new("_UID".into(), &aml::ZERO);
    // Edge-triggered, active high, exclusive: the line is an irqfd pulse.
    let interrupt = Interrupt::new(true, true, false, false, GSI);
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&interrupt]));
    let port = u32::from(EVENT_PORT);
    let len = u32::from(EVENT_PORT_LEN);
    let region = OpRegion::new("GDST".into(), OpRegionSpace::SystemIO, &port, &len);
    let field = Field::new(
        "GDST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );
    // _EVT(Arg0 = the GSI): Local0 = GDAT (reading clears it);
    // If (Local0 & 1) { Notify (\_SB.PWRB, 0x80) }
    let gdat = Path::new("GDAT");
    let read = Store::new(&Local(0), &gdat);
    let pwrb = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&pwrb, &NOTIFY_BUTTON_PRESSED);
    let power_bit = aml::And::new(&aml::ZERO, &Local(0), &EVENT_POWER_BUTTON);
    let on_power = If::new(&power_bit, vec![&notify]);
    let evt = Method::new("_EVT".into(), 1, true, vec![&read, &on_power]);
    Device::new(
        "\\_SB_.GED_".into(),
        vec![&hid, &uid, &crs, &region, &field, &evt],
    )
    .to_aml_bytes(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u32(ged: &GenericEventDevice) -> u32 {
        let mut data = [0u8; 4];
        ged.read(0, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn power_button_sets_its_bit_raises_the_interrupt_and_a_read_clears_it() {
        let (irq, evt) = IrqLine::detached().expect("eventfd");
        let ged = GenericEventDevice::new(irq);
        assert_eq!(read_u32(&ged), 0, "nothing pending at start");
        ged.press_power_button().expect("press");
        assert_eq!(evt.read().expect("the interrupt was raised"), 1);
        assert_eq!(ged.pending(), EVENT_POWER_BUTTON);
        assert_eq!(read_u32(&ged), EVENT_POWER_BUTTON);
        assert_eq!(read_u32(&ged), 0, "the read cleared it");
    }

    #[test]
    fn presses_before_the_guest_reads_collapse_into_one_bit() {
        let (irq, _evt) = IrqLine::detached().expect("eventfd");
        let ged = GenericEventDevice::new(irq);
        ged.press_power_button().expect("press");
        ged.press_power_button().expect("press");
        let mut byte = [0u8; 1];
        ged.read(0, &mut byte);
        assert_eq!(byte, [1], "a byte-wide read sees the low byte");
        assert_eq!(read_u32(&ged), 0);
    }

    #[test]
    fn other_offsets_read_as_zero_and_leave_the_events_pending() {
        let (irq, _evt) = IrqLine::detached().expect("eventfd");
        let ged = GenericEventDevice::new(irq);
        ged.press_power_button().expect("press");
        let mut data = [0xffu8; 2];
        ged.read(2, &mut data);
        assert_eq!(data, [0, 0]);
        assert_eq!(ged.pending(), EVENT_POWER_BUTTON);
    }

    #[test]
    fn aml_names_the_ged_its_register_and_the_power_button() {
        let aml = dsdt_aml();
        let has = |needle: &[u8]| aml.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"ACPI0013\0"), "GED _HID");
        assert!(has(b"GED_") && has(b"PWRB") && has(b"_EVT") && has(b"GDAT"));
        // EISAID("PNP0C0C") = 0x0c0cd041, little-endian after a DWord prefix.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0c, 0x0c]), "PWRB _HID");
        // OperationRegion (GDST, SystemIO, 0x604, 4)
        assert!(has(&[
            0x5b, 0x80, b'G', b'D', b'S', b'T', 0x01, 0x0b, 0x04, 0x06, 0x0a, 0x04
        ]));
        // Extended interrupt descriptor: consumer, edge, active high, exclusive, GSI 9.
        assert!(has(&[0x89, 0x06, 0x00, 0x03, 0x01, 0x09, 0x00, 0x00, 0x00]));
        // Notify (\_SB_.PWRB, 0x80)
        assert!(has(&[
            0x86, b'\\', 0x2e, b'_', b'S', b'B', b'_', b'P', b'W', b'R', b'B', 0x0a, 0x80
        ]));
    }
}
