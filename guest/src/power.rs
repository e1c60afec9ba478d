//! Power control through the VMM's ports.
//!
//! Port 0xf4 (the `isa-debug-exit` port of QEMU, so the same guest also ends a QEMU run):
//! writing 0 powers off, 1 resets. Reboot also works through the i8042 reset line
//! (0xfe to port 0x64) as on PCs.
//!
//! The power button is the VMM's ACPI Generic Event Device, the one Linux guests find in the
//! DSDT: on its interrupt (IOAPIC pin 9) the guest reads the 32-bit event register at port
//! 0x604, which returns the pending events and clears them; bit 0 is the power button. Like
//! the DSDT's `_EVT` method, this guest hard-codes the port rather than parsing AML.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu;

/// The VMM's power port.
pub const POWER_PORT: u16 = 0xf4;

/// The GED event register.
pub const GED_EVENT_PORT: u16 = 0x604;
/// GED event bit of the power button.
pub const GED_EVENT_POWER_BUTTON: u32 = 1 << 0;

/// Whether a power-button press powers off (the shell's `powerbutton on|off`).
static BUTTON_ENABLED: AtomicBool = AtomicBool::new(true);

/// Read (and so clear) the pending GED events.
pub fn take_events() -> u32 {
    cpu::inl(GED_EVENT_PORT)
}

/// Obey (`true`) or ignore power-button presses.
pub fn set_button_enabled(enabled: bool) {
    BUTTON_ENABLED.store(enabled, Ordering::Release);
}

/// Whether power-button presses are obeyed.
pub fn button_enabled() -> bool {
    BUTTON_ENABLED.load(Ordering::Acquire)
}

/// Ask the VMM to power off; halts if it does not.
pub fn poweroff() -> ! {
    cpu::outb(POWER_PORT, 0);
    cpu::halt_forever()
}

/// Pulse the i8042 reset line.
pub fn reboot() -> ! {
    cpu::outb(0x64, 0xfe);
    cpu::halt_forever()
}
