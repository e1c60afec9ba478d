//! COM1: vm-superio's 16550 model, its output into the [`Console`], its interrupt on an irqfd
//! (GSI 4), and an input queue in front of its 64-byte FIFO so that a paste larger than the
//! FIFO is not lost: the queue refills the FIFO as the guest reads it.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use vm_superio::{Serial, Trigger};

use super::IrqLine;
use crate::console::{Console, ConsoleWriter};
use crate::migration::state::SerialState;

/// COM1's ports.
pub const COM1_PORTS: RangeInclusive<u16> = 0x3f8..=0x3ff;
/// COM1's interrupt.
pub const COM1_GSI: u32 = 4;
/// Input waiting for FIFO space beyond this is dropped.
const MAX_PENDING_INPUT: usize = 64 * 1024;
const DATA_OFFSET: u8 = 0;

impl Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        IrqLine::trigger(self)
    }
}

/// The 16550 plus the input queue.
pub struct SerialDevice {
    uart: Serial<IrqLine, vm_superio::serial::NoEvents, ConsoleWriter>,
    pending: VecDeque<u8>,
    console: Console,
}

impl SerialDevice {
    /// A UART whose output goes to `console`.
    pub fn new(irq: IrqLine, console: Console) -> Self {
        SerialDevice {
            uart: Serial::new(irq, console.writer()),
            pending: VecDeque::new(),
            console,
        }
    }

    /// Registers, FIFO and queued input, for migration.
    pub fn state(&self) -> SerialState {
        let s = self.uart.state();
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
            pending_input: self.pending.iter().copied().collect(),
        }
    }

    /// Replace the UART's state with a migrated one (re-raising a pending interrupt).
    pub fn restore(&mut self, state: &SerialState) -> std::io::Result<()> {
        let s = vm_superio::serial::SerialState {
            baud_divisor_low: state.baud_divisor_low,
            baud_divisor_high: state.baud_divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        let irq = self.uart.interrupt_evt().try_clone()?;
        self.uart =
            Serial::from_state(&s, irq, vm_superio::serial::NoEvents, self.console.writer())
                .map_err(|e| std::io::Error::other(format!("cannot restore the 16550: {e:?}")))?;
        self.pending = state.pending_input.iter().copied().collect();
        Ok(())
    }

    /// Guest read of register `offset`.
    pub fn read(&mut self, offset: u8) -> u8 {
        let value = self.uart.read(offset);
        if offset == DATA_OFFSET {
            self.refill();
        }
        value
    }

    /// Guest write of register `offset`. Output errors cannot happen (the console never
    /// fails) and a failed interrupt trigger only delays input; neither stops the guest.
    pub fn write(&mut self, offset: u8, value: u8) {
        let _ = self.uart.write(offset, value);
    }

    /// Bytes typed on the console.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending.len());
        self.pending.extend(&bytes[..bytes.len().min(room)]);
        self.refill();
    }

    fn refill(&mut self) {
        while self.uart.fifo_capacity() > 0 && !self.pending.is_empty() {
            let n = self.uart.fifo_capacity().min(self.pending.len());
            let chunk: Vec<u8> = self.pending.drain(..n).collect();
            if self.uart.enqueue_raw_bytes(&chunk).is_err() {
                break;
            }
        }
    }
}
