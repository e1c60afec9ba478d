//! The i8042 keyboard controller, reduced to what a VMM needs today: the CPU reset line
//! (command 0xfe on port 0x64), which ends the VM with [`StopReason::GuestReset`]. Status
//! reads return 0 (no data, input buffer empty) so a polling guest does not spin.
//! A Ctrl-Alt-Del injection for Linux guests would extend this device.

use super::IoOutcome;
use crate::state::StopReason;

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status/command port.
pub const COMMAND_PORT: u16 = 0x64;
const CMD_RESET_CPU: u8 = 0xfe;

/// The controller (stateless so far).
pub struct I8042;

impl I8042 {
    /// Port read.
    pub fn read(&self, _port: u16) -> u8 {
        0
    }

    /// Port write.
    pub fn write(&self, port: u16, value: u8) -> IoOutcome {
        if port == COMMAND_PORT && value == CMD_RESET_CPU {
            IoOutcome::Stop(StopReason::GuestReset)
        } else {
            IoOutcome::Continue
        }
    }
}
