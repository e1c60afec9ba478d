//! CPU tables and the ring switch: TSS, IDT, interrupt entry stubs, port I/O, and
//! `run_in_ring3` (enter user mode with `iretq`, come back when user code executes `ud2`).
//!
//! Under PVM, ring-0 code is emulated instruction by instruction: stubs are short and
//! only the vectors in use get IDT entries.

use core::arch::{asm, global_asm};
use core::ptr::{addr_of, addr_of_mut};

/// Kernel code selector.
const KERNEL_CS: u16 = 0x08;
/// TSS selector.
const TSS_SEL: u16 = 0x28;

/// Registers saved by the common interrupt stub, in stack order (lowest address first).
#[repr(C)]
pub struct TrapFrame {
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp0: u64,
    rsp1: u64,
    rsp2: u64,
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct IdtEntry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY_IDT_ENTRY: IdtEntry = IdtEntry {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

static mut IDT: [IdtEntry; 256] = [EMPTY_IDT_ENTRY; 256];
static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp0: 0,
    rsp1: 0,
    rsp2: 0,
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: 104,
};

#[repr(C, align(16))]
struct Stack([u8; 16384]);
static mut INTERRUPT_STACK: Stack = Stack([0; 16384]);

extern "C" {
    static mut gdt64: [u64; 7];
    static isr_table: [u64; 32];
    fn isr_timer();
    fn isr_serial();
    fn isr_power();
    fn isr_spurious();
    fn enter_user(entry: u64, arg: u64, user_stack_top: u64) -> u64;
}

/// Vector of the LAPIC timer.
pub const VECTOR_TIMER: u8 = 0x20;
/// Vector of COM1 (IOAPIC pin 4).
pub const VECTOR_SERIAL: u8 = 0x24;
/// Vector of the VMM's ACPI Generic Event Device, the power button (IOAPIC pin 9).
pub const VECTOR_POWER: u8 = 0x29;
/// Spurious-interrupt vector of the LAPIC.
pub const VECTOR_SPURIOUS: u8 = 0xff;

// Entry stubs. Exceptions without an error code push a zero so every frame looks alike.
global_asm!(
    r#"
    .section .text
    .macro ISR_NOERR n
    isr_\n:
        push 0
        push \n
        jmp isr_common
    .endm
    .macro ISR_ERR n
    isr_\n:
        push \n
        jmp isr_common
    .endm

    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    ISR_NOERR 3
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR 8
    ISR_NOERR 9
    ISR_ERR 10
    ISR_ERR 11
    ISR_ERR 12
    ISR_ERR 13
    ISR_ERR 14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR 17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR 21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR 29
    ISR_ERR 30
    ISR_NOERR 31

    .global isr_timer
isr_timer:
    push 0
    push 0x20
    jmp isr_common
    .global isr_serial
isr_serial:
    push 0
    push 0x24
    jmp isr_common
    .global isr_power
isr_power:
    push 0
    push 0x29
    jmp isr_common
    .global isr_spurious
isr_spurious:
    iretq

isr_common:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    mov rdi, rsp
    call trap_dispatch
    test rax, rax
    jnz user_return
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

    /* enter_user(entry, arg, user_stack_top): run entry(arg) in ring 3 until it
       executes ud2; returns the user code's rax. */
    .global enter_user
enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [kernel_saved_rsp], rsp
    push 0x1b               /* ss: user data | RPL 3 */
    push rdx                /* rsp */
    push 0x202              /* rflags: IF */
    push 0x23               /* cs: user code | RPL 3 */
    push rdi                /* rip */
    mov rdi, rsi
    iretq

user_return:
    mov rsp, [kernel_saved_rsp]
    mov rax, [user_result]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

    .section .rodata
    .p2align 3
    .global isr_table
isr_table:
    .quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31

    .section .bss
    .p2align 3
kernel_saved_rsp:
    .skip 8
    .global user_result
user_result:
    .skip 8
    "#
);

fn set_gate(vector: u8, handler: u64) {
    let entry = IdtEntry {
        offset_low: handler as u16,
        selector: KERNEL_CS,
        ist: 0,
        type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
        offset_mid: (handler >> 16) as u16,
        offset_high: (handler >> 32) as u32,
        reserved: 0,
    };
    // SAFETY: single-threaded init before interrupts are enabled; the IDT is only read by the CPU.
    unsafe { (*addr_of_mut!(IDT))[vector as usize] = entry };
}

/// Install the TSS (ring-0 stack for interrupts from ring 3) and the IDT.
pub fn init() {
    // SAFETY: runs once on the boot vCPU before interrupts are enabled. The TSS descriptor is
    // written into our own GDT (boot.rs) and loaded with `ltr`; the IDT holds stubs defined above.
    unsafe {
        let stack_top = addr_of!(INTERRUPT_STACK) as u64 + core::mem::size_of::<Stack>() as u64;
        (*addr_of_mut!(TSS)).rsp0 = stack_top;
        let base = addr_of!(TSS) as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89u64 << 40) // present, type 9 (available 64-bit TSS)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        let gdt = addr_of_mut!(gdt64);
        (*gdt)[5] = low;
        (*gdt)[6] = base >> 32;
        asm!("ltr {0:x}", in(reg) TSS_SEL, options(nostack));

        let table = addr_of!(isr_table);
        for v in 0..32u8 {
            set_gate(v, (*table)[v as usize]);
        }
        set_gate(VECTOR_TIMER, isr_timer as *const () as u64);
        set_gate(VECTOR_SERIAL, isr_serial as *const () as u64);
        set_gate(VECTOR_POWER, isr_power as *const () as u64);
        set_gate(VECTOR_SPURIOUS, isr_spurious as *const () as u64);

        #[repr(C, packed)]
        struct Idtr {
            limit: u16,
            base: u64,
        }
        let idtr = Idtr {
            limit: (core::mem::size_of::<[IdtEntry; 256]>() - 1) as u16,
            base: addr_of!(IDT) as u64,
        };
        asm!("lidt [{0}]", in(reg) &idtr, options(readonly, nostack));
    }
}

#[repr(C, align(16))]
struct UserStack([u8; 16384]);
static mut USER_STACK: UserStack = UserStack([0; 16384]);

/// Run `entry(arg)` in ring 3 (all memory is mapped user-accessible). The user code ends
/// with `ud2` (see `user_exit`); its `rax` is returned.
pub fn run_in_ring3(entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    // SAFETY: enter_user saves the callee-saved registers and stack pointer, and the #UD
    // handler restores them (user_return) when the user code executes `ud2`.
    let result = unsafe {
        let top = addr_of!(USER_STACK) as u64 + core::mem::size_of::<UserStack>() as u64;
        enter_user(entry as *const () as u64, arg, top)
    };
    // The #UD gate cleared IF on the way back.
    enable_interrupts();
    result
}

/// Leave ring 3: the #UD handler sees CPL 3 and returns `value` from `run_in_ring3`.
pub fn user_exit(value: u64) -> ! {
    // SAFETY: only called from code running in ring 3 via run_in_ring3.
    unsafe { asm!("ud2", in("rax") value, options(noreturn, nostack)) }
}

/// Called by the #UD handler when ring-3 code exits.
pub fn record_user_exit(frame: &TrapFrame) {
    extern "C" {
        static mut user_result: u64;
    }
    // SAFETY: written with interrupts disabled (interrupt gate), read by user_return right after.
    unsafe { *addr_of_mut!(user_result) = frame.rax };
}

/// Write a byte to an I/O port.
#[inline(always)]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects; ports used are the guest's own devices.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Read a 32-bit word from an I/O port.
#[inline(always)]
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for outb.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Read a byte from an I/O port.
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Enable interrupts.
#[inline(always)]
pub fn enable_interrupts() {
    // SAFETY: the IDT is installed before the first call.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Disable interrupts.
#[inline(always)]
pub fn disable_interrupts() {
    // SAFETY: plain flag change.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Atomically enable interrupts and halt until the next one (the `sti; hlt` shadow).
#[inline(always)]
pub fn enable_and_halt() {
    // SAFETY: waits for an interrupt; the handlers are installed.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// Halt forever (after a fatal error).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops this vCPU; nothing more to do.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Read CR2 (faulting address of a page fault).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {0}, cr2", out(reg) v, options(nomem, nostack)) }
    v
}
