//! Power control through the VMM's ports.
//!
//! Port 0xf4 (the `isa-debug-exit` port of QEMU, so the same guest also ends a QEMU run):
//! writing 0 powers off, 1 resets. Reboot also works through the i8042 reset line
//! (0xfe to port 0x64) as on PCs.

use crate::cpu;

/// The VMM's power port.
pub const POWER_PORT: u16 = 0xf4;

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
