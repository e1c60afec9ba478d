//! Kiln test guest: a tiny `no_std` kernel entered through PVH. It prints a banner on COM1,
//! ticks a LAPIC timer, halts between interrupts and runs a line shell on the serial console
//! (see shell.rs). Ring-0 work is kept small: under PVM it is emulated.
#![no_std]
#![no_main]

mod apic;
mod boot;
mod bootinfo;
mod cpu;
mod memtest;
mod paging;
mod power;
mod serial;
mod shell;

use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the GED interrupt when the event register says the power button was pressed (the
/// VMM's shutdown request).
static POWER_BUTTON: AtomicBool = AtomicBool::new(false);

const VERSION: &str = env!("CARGO_PKG_VERSION");

extern "C" {
    static __image_end: u8;
}

/// Interrupt and exception dispatch, called by `isr_common` with interrupts disabled.
/// Returns 1 when ring-3 code exited (the stub then resumes the kernel in run_in_ring3).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut cpu::TrapFrame) -> u64 {
    match frame.vector as u8 {
        cpu::VECTOR_TIMER => {
            apic::TICKS.fetch_add(1, Ordering::AcqRel);
            apic::eoi();
        }
        cpu::VECTOR_SERIAL => {
            serial::on_interrupt();
            apic::eoi();
        }
        cpu::VECTOR_POWER => {
            if power::take_events() & power::GED_EVENT_POWER_BUTTON != 0 {
                POWER_BUTTON.store(true, Ordering::Release);
            }
            apic::eoi();
        }
        6 if frame.cs & 3 == 3 => {
            cpu::record_user_exit(frame);
            return 1;
        }
        v => {
            println!(
                "\nFATAL: exception {} error {:#x} at {:#x} (cs {:#x}) cr2 {:#x} rsp {:#x}",
                v,
                frame.error,
                frame.rip,
                frame.cs,
                cpu::cr2(),
                frame.rsp
            );
            cpu::halt_forever();
        }
    }
    0
}

#[no_mangle]
extern "C" fn kmain(start_info: u64) -> ! {
    cpu::init();
    serial::init();
    let Some(map) = bootinfo::read_memory_map(start_info) else {
        println!("FATAL: no PVH start info at {start_info:#x}");
        cpu::halt_forever();
    };
    apic::init();
    cpu::enable_interrupts();

    let expected = bootinfo::mp_table_cpus().unwrap_or(1);
    let online = apic::start_secondary_cpus(expected, apic::TICK_HZ / 2);
    // SAFETY: linker-script symbol; only its address is used.
    let image_end = unsafe { &__image_end as *const u8 as u64 };
    let first_free = image_end.next_multiple_of(2 << 20);
    let area = memtest::PatternArea::new(&map, first_free);
    println!(
        "Kiln test guest {VERSION} ({online} vCPUs, {} MiB)",
        map.total().div_ceil(1 << 20)
    );
    if online != expected {
        println!("warning: MP table lists {expected} vCPUs, {online} came up");
    }
    let mut shell = shell::Shell::new(area);
    shell.prompt();
    loop {
        while let Some(byte) = serial::read_byte() {
            shell.feed(byte);
        }
        if POWER_BUTTON.swap(false, Ordering::AcqRel) {
            if power::button_enabled() {
                println!("\npower button (ACPI GED event): powering off");
                power::poweroff();
            }
            println!("\npower button (ACPI GED event): ignored ('powerbutton off')");
            shell.prompt();
        }
        shell.tick();
        cpu::disable_interrupts();
        if serial::has_input() || POWER_BUTTON.load(Ordering::Acquire) {
            cpu::enable_interrupts();
        } else {
            cpu::enable_and_halt();
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("\nPANIC: {info}");
    cpu::halt_forever()
}
