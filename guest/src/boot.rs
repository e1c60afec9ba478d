//! PVH entry: the VMM enters `pvh_start` in 32-bit protected mode with paging off and
//! `ebx` = physical address of the `hvm_start_info` (Xen PVH boot ABI). We build an
//! identity map of the first 4 GiB with 2 MiB pages (user-accessible, so that memory
//! patterns can run in ring 3), switch to long mode and call `kmain(start_info)`.
//!
//! Also here: the 64-bit GDT and the real-mode trampoline that secondary vCPUs run after
//! INIT-SIPI (it counts itself and parks in `hlt`).

use core::arch::global_asm;

/// Number of 2 MiB page-directory entries set up at boot: 4 GiB (includes IOAPIC/LAPIC).
pub const BOOT_MAPPED_BYTES: u64 = 4 << 30;

// The PVH note: type XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", 32-bit entry address.
global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start
    "#
);

global_asm!(
    r#"
    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    mov esp, offset boot_stack_top    /* PVH gives no stack */
    mov dword ptr [start_info_paddr], ebx

    /* PML4[0] -> PDPT, PDPT[0..4] -> 4 page directories. Flags: present|write|user. */
    mov eax, offset boot_pdpt
    or eax, 7
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, 7
    mov dword ptr [boot_pdpt], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 8], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 16], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 24], eax

    /* 2048 PD entries of 2 MiB: present|write|user|PS. */
    mov edi, offset boot_pd
    mov eax, 0x87
    xor edx, edx
    mov ecx, 2048
2:
    mov dword ptr [edi], eax
    mov dword ptr [edi + 4], edx
    add eax, 0x200000
    adc edx, 0
    add edi, 8
    dec ecx
    jnz 2b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20            /* PAE */
    mov cr4, eax
    mov ecx, 0xC0000080     /* EFER */
    rdmsr
    or eax, 0x100           /* LME */
    wrmsr
    mov eax, cr0
    or eax, 0x80000001      /* PG | PE */
    mov cr0, eax
    lgdt [gdt64_ptr]
    push 0x08
    mov eax, offset long_entry
    push eax
    retf

    .code64
long_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, dword ptr [start_info_paddr]
    call kmain
3:
    cli
    hlt
    jmp 3b

    /* Secondary vCPUs start here in real mode (copied to AP_TRAMPOLINE_ADDR). */
    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
    .global ap_trampoline_counter
ap_trampoline_start:
    /* Hand-assembled 16-bit code (CS = 0x0800, IP = 0):
       0: jmp short 8 | 4: counter (u32) | 8: cli; lock inc dword cs:[4]; 16: hlt; jmp 16 */
    .byte 0xeb, 0x06, 0x90, 0x90
ap_trampoline_counter:
    .long 0
    .byte 0xfa
    .byte 0xf0, 0x2e, 0x66, 0xff, 0x06, 0x04, 0x00
    .byte 0xf4, 0xeb, 0xfd
ap_trampoline_end:
    .code64

    .section .data
    .p2align 4
    .global gdt64
gdt64:
    .quad 0                     /* 0x00 null */
    .quad 0x00AF9A000000FFFF    /* 0x08 kernel code, 64-bit */
    .quad 0x00CF92000000FFFF    /* 0x10 kernel data */
    .quad 0x00CFF2000000FFFF    /* 0x18 user data (DPL 3) */
    .quad 0x00AFFA000000FFFF    /* 0x20 user code, 64-bit (DPL 3) */
    .quad 0                     /* 0x28 TSS, low half (filled in by cpu::init) */
    .quad 0                     /* 0x30 TSS, high half */
gdt64_end:
    .p2align 4
    .global gdt64_ptr
gdt64_ptr:
    .word gdt64_end - gdt64 - 1
    .quad gdt64

    .section .bss
    .p2align 12
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .p2align 4
start_info_paddr:
    .skip 8
    .p2align 12
boot_stack:
    .skip 65536
    .global boot_stack_top
boot_stack_top:
    "#
);
