//! Devices on the I/O port bus: 16550 serial (COM1, IRQ 4), i8042 (reset line only), the
//! power port (0xf4), the ACPI sleep control and status registers (0x600, 0x601) and the
//! ACPI Generic Event Device with the power button (event register 0x604, IRQ 9). Ports
//! nobody claims read as 0xff.

pub mod ged;
pub mod i8042;
pub mod power;
pub mod serial;

use std::sync::{Mutex, MutexGuard};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::console::Console;
use crate::state::StopReason;

/// Errors of device setup.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// eventfd(2) failed.
    #[error("cannot create an eventfd for {what}")]
    EventFd {
        /// Which interrupt line.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// KVM_IRQFD failed.
    #[error("cannot connect {what} to GSI {gsi}")]
    Irqfd {
        /// Which interrupt line.
        what: &'static str,
        /// The GSI.
        gsi: u32,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// An edge-triggered interrupt line into the in-kernel irqchip (an irqfd).
pub struct IrqLine {
    evt: EventFd,
}

impl IrqLine {
    /// Create the line and connect it to `gsi`.
    pub fn new(vm: &VmFd, gsi: u32, what: &'static str) -> Result<Self, DeviceError> {
        let evt =
            EventFd::new(EFD_NONBLOCK).map_err(|source| DeviceError::EventFd { what, source })?;
        vm.register_irqfd(&evt, gsi)
            .map_err(|source| DeviceError::Irqfd { what, gsi, source })?;
        Ok(IrqLine { evt })
    }

    /// A line connected to no VM, and the eventfd it writes (tests count the interrupts).
    #[cfg(test)]
    pub(crate) fn detached() -> std::io::Result<(Self, EventFd)> {
        let evt = EventFd::new(EFD_NONBLOCK)?;
        let observer = evt.try_clone()?;
        Ok((IrqLine { evt }, observer))
    }

    /// A second handle on the same line.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(IrqLine {
            evt: self.evt.try_clone()?,
        })
    }

    /// Raise the interrupt.
    pub fn trigger(&self) -> std::io::Result<()> {
        self.evt.write(1)
    }
}

/// What the vCPU does after an I/O access.
#[derive(Debug, PartialEq, Eq)]
pub enum IoOutcome {
    /// Carry on.
    Continue,
    /// The guest asked to end the VM.
    Stop(StopReason),
}

/// All port-I/O devices of a VM.
pub struct Devices {
    serial: Mutex<serial::SerialDevice>,
    i8042: i8042::I8042,
    ged: ged::GenericEventDevice,
}

impl Devices {
    /// Create the devices and wire their interrupts.
    pub fn new(vm: &VmFd, console: Console) -> Result<Self, DeviceError> {
        let serial_irq = IrqLine::new(vm, serial::COM1_GSI, "COM1")?;
        Ok(Devices {
            serial: Mutex::new(serial::SerialDevice::new(serial_irq, console)),
            i8042: i8042::I8042,
            ged: ged::GenericEventDevice::new(IrqLine::new(
                vm,
                ged::GSI,
                "the ACPI event device (power button)",
            )?),
        })
    }

    fn serial(&self) -> MutexGuard<'_, serial::SerialDevice> {
        self.serial.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A port read; `data` is filled (1, 2 or 4 bytes).
    pub fn io_in(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        match port {
            p if serial::COM1_PORTS.contains(&p) => {
                data[0] = self.serial().read((p - serial::COM1_PORTS.start()) as u8);
            }
            i8042::DATA_PORT | i8042::COMMAND_PORT => data[0] = self.i8042.read(port),
            p if (ged::EVENT_PORT..ged::EVENT_PORT + ged::EVENT_PORT_LEN).contains(&p) => {
                self.ged.read(p - ged::EVENT_PORT, data);
            }
            power::SLEEP_STATUS_PORT => data[0] = 0,
            _ => {}
        }
    }

    /// A port write.
    pub fn io_out(&self, port: u16, data: &[u8]) -> IoOutcome {
        let Some(&value) = data.first() else {
            return IoOutcome::Continue;
        };
        match port {
            p if serial::COM1_PORTS.contains(&p) => {
                self.serial()
                    .write((p - serial::COM1_PORTS.start()) as u8, value);
                IoOutcome::Continue
            }
            i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.write(port, value),
            power::POWER_PORT => power::write(value),
            power::SLEEP_CONTROL_PORT => power::write_sleep_control(value),
            _ => IoOutcome::Continue,
        }
    }

    /// Console input for the guest.
    pub fn serial_input(&self, bytes: &[u8]) {
        self.serial().enqueue_input(bytes);
    }

    /// COM1's state, for migration.
    pub fn serial_state(&self) -> crate::migration::state::SerialState {
        self.serial().state()
    }

    /// Restore COM1 from a migrated state.
    pub fn restore_serial(
        &self,
        state: &crate::migration::state::SerialState,
    ) -> std::io::Result<()> {
        self.serial().restore(state)
    }

    /// Press the power button (the guest is asked to shut down): an ACPI GED event.
    pub fn press_power_button(&self) -> std::io::Result<()> {
        self.ged.press_power_button()
    }
}
