//! Power control without ACPI.
//!
//! * Port 0xf4 (one byte, write): 0 = power off, 1 = reset. It is QEMU's `isa-debug-exit`
//!   port, so the Kiln test guest also ends a `qemu-system-x86_64 -device isa-debug-exit` run.
//! * The power button: an edge on GSI 9 (IOAPIC pin 9, the ISA line ACPI uses for its SCI).
//!   The Kiln test guest powers off when it sees it; `shutdown` on the control socket
//!   presses it and waits.

use super::IoOutcome;
use crate::state::StopReason;

/// The power port.
pub const POWER_PORT: u16 = 0xf4;
/// The power button's interrupt.
pub const POWER_BUTTON_GSI: u32 = 9;

/// A write to the power port.
pub fn write(value: u8) -> IoOutcome {
    match value {
        0 => IoOutcome::Stop(StopReason::GuestPoweroff),
        1 => IoOutcome::Stop(StopReason::GuestReset),
        _ => IoOutcome::Continue,
    }
}
