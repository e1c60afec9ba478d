//! Local APIC (timer, EOI, INIT-SIPI) and IOAPIC (COM1 and power-button pins).
//!
//! The timer is the LAPIC timer in periodic mode. KVM's emulated LAPIC counts at a
//! 1 GHz bus clock (APIC_BUS_CYCLE_NS = 1), on hardware KVM and PVM alike, so no calibration
//! is needed. A LAPIC timer does not queue missed periods: while the VMM holds the vCPUs
//! paused, no ticks accumulate, so the tick counter really stops.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::cpu;

const LAPIC_BASE: usize = 0xfee0_0000;
const IOAPIC_BASE: usize = 0xfec0_0000;

const LAPIC_EOI: usize = 0xb0;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_ICR_LOW: usize = 0x300;
const LAPIC_ICR_HIGH: usize = 0x310;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_LVT_LINT0: usize = 0x350;
const LAPIC_TIMER_INITIAL: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;

/// Timer ticks per second. Each tick costs ~100 us of emulated ring-0 time under PVM, so
/// 20 Hz keeps an idle guest at ~0.2 % of a host CPU (100 Hz measured 1 %).
pub const TICK_HZ: u64 = 20;
/// LAPIC timer divide-by-16 → 62.5 MHz count rate with KVM's 1 GHz APIC bus.
const TIMER_COUNTS_PER_US: u64 = 1000 / 16;
const TIMER_INITIAL_COUNT: u64 = TIMER_COUNTS_PER_US * 1_000_000 / TICK_HZ;

/// Timer interrupts taken since boot.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

fn lapic_write(reg: usize, value: u32) {
    // SAFETY: the LAPIC page is identity-mapped; KVM emulates the register write.
    unsafe { write_volatile((LAPIC_BASE + reg) as *mut u32, value) }
}

fn lapic_read(reg: usize) -> u32 {
    // SAFETY: as for lapic_write.
    unsafe { read_volatile((LAPIC_BASE + reg) as *const u32) }
}

fn ioapic_write(reg: u32, value: u32) {
    // SAFETY: the IOAPIC page is identity-mapped; IOREGSEL at +0, IOWIN at +0x10.
    unsafe {
        write_volatile(IOAPIC_BASE as *mut u32, reg);
        write_volatile((IOAPIC_BASE + 0x10) as *mut u32, value);
    }
}

/// Route an IOAPIC pin (edge, active high) to `vector` on APIC 0.
fn ioapic_route(pin: u32, vector: u8) {
    ioapic_write(0x10 + 2 * pin + 1, 0);
    ioapic_write(0x10 + 2 * pin, vector as u32);
}

/// Enable the LAPIC, mask the legacy PIC, route COM1 and the power button, start the timer.
pub fn init() {
    // Mask both 8259s: every interrupt comes through the IOAPIC.
    cpu::outb(0x21, 0xff);
    cpu::outb(0xa1, 0xff);
    lapic_write(LAPIC_SVR, 0x100 | cpu::VECTOR_SPURIOUS as u32);
    lapic_write(LAPIC_LVT_LINT0, 0x1_0000); // masked: no ExtINT from the PIC
    ioapic_route(4, cpu::VECTOR_SERIAL);
    ioapic_route(9, cpu::VECTOR_POWER);
    lapic_write(LAPIC_TIMER_DIVIDE, 0b0011); // divide by 16
    lapic_write(LAPIC_LVT_TIMER, (1 << 17) | cpu::VECTOR_TIMER as u32); // periodic
    lapic_write(LAPIC_TIMER_INITIAL, TIMER_INITIAL_COUNT as u32);
}

/// Signal end of interrupt to the LAPIC.
pub fn eoi() {
    lapic_write(LAPIC_EOI, 0);
}

/// Latest value returned by `now_us`, which keeps it monotonic.
static LAST_US: AtomicU64 = AtomicU64::new(0);

/// Microseconds since boot (not counting paused time), from the tick counter and the
/// timer's current count. Monotonic: when the timer has reloaded but its interrupt is not
/// taken yet, the sum would step back by up to one tick; we never return less than before.
pub fn now_us() -> u64 {
    loop {
        let t1 = TICKS.load(Ordering::Acquire);
        let current = lapic_read(LAPIC_TIMER_CURRENT) as u64;
        let t2 = TICKS.load(Ordering::Acquire);
        if t1 == t2 {
            let into_tick =
                (TIMER_INITIAL_COUNT - current.min(TIMER_INITIAL_COUNT)) / TIMER_COUNTS_PER_US;
            let now = t1 * (1_000_000 / TICK_HZ) + into_tick;
            return LAST_US.fetch_max(now, Ordering::AcqRel).max(now);
        }
    }
}

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_counter: u8;
}

/// Physical page where secondary vCPUs start (vector 0x08 → 0x8000).
const AP_TRAMPOLINE_ADDR: usize = 0x8000;

/// Wake the secondary vCPUs with INIT-SIPI (broadcast to all but self) and count how many
/// run the trampoline. Waits until `expected` have checked in or `timeout_ticks` pass.
/// Returns the number of vCPUs online, this one included.
pub fn start_secondary_cpus(expected: u32, timeout_ticks: u64) -> u32 {
    if expected <= 1 {
        return 1;
    }
    // SAFETY: copies the position-independent real-mode trampoline (a few bytes, built in
    // boot.rs) to a page below 1 MiB that the VMM's memory map leaves free for the guest.
    let counter = unsafe {
        let start = &ap_trampoline_start as *const u8;
        let len = (&ap_trampoline_end as *const u8) as usize - start as usize;
        let counter_off = (&ap_trampoline_counter as *const u8) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, AP_TRAMPOLINE_ADDR as *mut u8, len);
        let counter = (AP_TRAMPOLINE_ADDR + counter_off) as *mut u32;
        write_volatile(counter, 0);
        counter
    };
    let read_count = || {
        // SAFETY: the counter lives in the trampoline page; APs increment it with `lock inc`.
        unsafe { read_volatile(counter) }
    };
    lapic_write(LAPIC_ICR_HIGH, 0);
    lapic_write(LAPIC_ICR_LOW, 0x000c_4500); // INIT, assert, all excluding self
    let sipi = 0x000c_4600 | (AP_TRAMPOLINE_ADDR >> 12) as u32;
    lapic_write(LAPIC_ICR_LOW, sipi);
    let start = TICKS.load(Ordering::Acquire);
    let mut resent = false;
    while read_count() + 1 < expected {
        let waited = TICKS.load(Ordering::Acquire) - start;
        if waited >= timeout_ticks {
            break;
        }
        if waited >= 2 && !resent {
            // The MP spec sends SIPI twice; a vCPU already running ignores the second.
            lapic_write(LAPIC_ICR_LOW, sipi);
            resent = true;
        }
        cpu::enable_and_halt();
    }
    read_count() + 1
}
