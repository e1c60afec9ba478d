//! COM1 (16550 at 0x3f8): output by plain THR writes (one port exit per byte), input by
//! interrupt (IRQ 4 through the IOAPIC) into a small ring buffer read by the main loop.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::cpu;

const COM1: u16 = 0x3f8;
const RX_SIZE: usize = 256;

static mut RX_BUF: [u8; RX_SIZE] = [0; RX_SIZE];
static RX_HEAD: AtomicUsize = AtomicUsize::new(0); // written by the interrupt handler
static RX_TAIL: AtomicUsize = AtomicUsize::new(0); // written by the main loop

/// Program COM1: 8N1, receive-data interrupt on.
pub fn init() {
    cpu::outb(COM1 + 3, 0x03); // LCR: 8 bits, no parity, 1 stop
    cpu::outb(COM1 + 4, 0x0b); // MCR: DTR | RTS | OUT2 (OUT2 gates the IRQ on PCs)
    cpu::outb(COM1 + 1, 0x01); // IER: received data available
}

/// Write raw bytes, turning `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            cpu::outb(COM1, b'\r');
        }
        cpu::outb(COM1, b);
    }
}

/// Interrupt handler body: move every received byte into the ring buffer.
pub fn on_interrupt() {
    while cpu::inb(COM1 + 5) & 1 != 0 {
        let byte = cpu::inb(COM1);
        let head = RX_HEAD.load(Ordering::Relaxed);
        let next = (head + 1) % RX_SIZE;
        if next != RX_TAIL.load(Ordering::Acquire) {
            // SAFETY: only this handler writes slot `head`; the reader never reads it before
            // RX_HEAD moves past it.
            unsafe { (*core::ptr::addr_of_mut!(RX_BUF))[head] = byte };
            RX_HEAD.store(next, Ordering::Release);
        }
    }
}

/// Take one received byte, if any.
pub fn read_byte() -> Option<u8> {
    let tail = RX_TAIL.load(Ordering::Relaxed);
    if tail == RX_HEAD.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: slot `tail` was published by the handler (RX_HEAD moved past it).
    let byte = unsafe { (*core::ptr::addr_of!(RX_BUF))[tail] };
    RX_TAIL.store((tail + 1) % RX_SIZE, Ordering::Release);
    Some(byte)
}

/// True when input is waiting.
pub fn has_input() -> bool {
    RX_TAIL.load(Ordering::Relaxed) != RX_HEAD.load(Ordering::Acquire)
}

/// `core::fmt` sink for the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Print to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::serial::Console, format_args!($($arg)*));
    }};
}

/// Print a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::serial::write_bytes(b"\n") };
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::serial::write_bytes(b"\n");
    }};
}
