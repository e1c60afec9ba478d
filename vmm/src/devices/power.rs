//! Power control.
//!
//! * Port 0xf4 (one byte, write): 0 = power off, 1 = reset. It is QEMU's `isa-debug-exit`
//!   port, so the Kiln test guest also ends a `qemu-system-x86_64 -device isa-debug-exit` run.
//! * The ACPI sleep control register (FADT `SLEEP_CONTROL_REG`, port [`SLEEP_CONTROL_PORT`]):
//!   how a hardware-reduced ACPI guest (Linux's `poweroff`) enters S5. The guest writes
//!   `SLP_EN | SLP_TYP << 2` with the `SLP_TYP` of the DSDT's `\_S5_` package
//!   ([`S5_SLEEP_TYPE`]); kiln-vmm then stops the VM as powered off. The sleep status
//!   register (FADT `SLEEP_STATUS_REG`, [`SLEEP_STATUS_PORT`]) reads as 0 and ignores writes.
//! * The power button is an ACPI Generic Event Device: see [`super::ged`]. `shutdown` on the
//!   control socket presses it and waits.

use acpi_tables::aml::{Name, Package};
use acpi_tables::Aml;

use super::IoOutcome;
use crate::state::StopReason;

/// The power port.
pub const POWER_PORT: u16 = 0xf4;
/// The ACPI sleep control register (one byte).
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// The ACPI sleep status register (one byte).
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// `SLP_TYP` of S5 (soft off), as the DSDT's `\_S5_` package gives it.
pub const S5_SLEEP_TYPE: u8 = 5;
/// `SLP_EN` in the sleep control register.
const SLEEP_ENABLE: u8 = 1 << 5;
/// Where `SLP_TYP` sits in the sleep control register (bits 2..=4).
const SLEEP_TYPE_SHIFT: u8 = 2;
const SLEEP_TYPE_MASK: u8 = 0b111 << SLEEP_TYPE_SHIFT;

/// A write to the power port.
pub fn write(value: u8) -> IoOutcome {
    match value {
        0 => IoOutcome::Stop(StopReason::GuestPoweroff),
        1 => IoOutcome::Stop(StopReason::GuestReset),
        _ => IoOutcome::Continue,
    }
}

/// A write to the sleep control register: S5 with `SLP_EN` powers off; other sleep states
/// are not offered (the DSDT has no `\_S1_`..`\_S4_`), so they are ignored.
pub fn write_sleep_control(value: u8) -> IoOutcome {
    let sleep_type = (value & SLEEP_TYPE_MASK) >> SLEEP_TYPE_SHIFT;
    if value & SLEEP_ENABLE != 0 && sleep_type == S5_SLEEP_TYPE {
        IoOutcome::Stop(StopReason::GuestPoweroff)
    } else {
        IoOutcome::Continue
    }
}

/// The DSDT's `\_S5_` package: `SLP_TYPa` = [`S5_SLEEP_TYPE`], `SLP_TYPb` = 0 (unused with
/// hardware-reduced ACPI, which has one sleep control register).
pub fn s5_aml() -> Vec<u8> {
    let mut out = Vec::new();
    let package = Package::new(vec![&S5_SLEEP_TYPE, &0u8]);
    Name::new("\\_S5_".into(), &package).to_aml_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s5_with_sleep_enable_powers_off() {
        // What Linux's acpi_hw_extended_sleep writes for S5: SLP_EN | 5 << 2.
        assert_eq!(
            write_sleep_control(0x34),
            IoOutcome::Stop(StopReason::GuestPoweroff)
        );
        assert_eq!(write_sleep_control(0x14), IoOutcome::Continue, "no SLP_EN");
        assert_eq!(
            write_sleep_control(0x20 | 3 << 2),
            IoOutcome::Continue,
            "S3"
        );
        assert_eq!(write_sleep_control(0), IoOutcome::Continue);
    }

    #[test]
    fn power_port_zero_is_poweroff_and_one_is_reset() {
        assert_eq!(write(0), IoOutcome::Stop(StopReason::GuestPoweroff));
        assert_eq!(write(1), IoOutcome::Stop(StopReason::GuestReset));
        assert_eq!(write(2), IoOutcome::Continue);
    }
}
