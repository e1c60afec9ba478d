//! `kiln-vmm`: the Kiln virtual machine monitor, one process per VM, on the rust-vmm crates
//! (kvm-ioctls, vm-memory, linux-loader, vm-superio).
//!
//! A VM is guest memory ([`memory`]), vCPU threads ([`vcpu`]), a few legacy devices
//! ([`devices`]: 16550 serial on COM1, i8042 reset, the power port, the ACPI sleep control
//! register and the ACPI Generic Event Device that is the power button), a
//! console with scroll-back ([`console`]) and a control socket ([`control`]) through which
//! the node agent asks for status, pause/resume, shutdown, stop, console and stats.
//! [`vm::Vm`] ties them together; [`state`] holds the power-state machine; [`migration`]
//! moves a running VM to another kiln-vmm process.
//!
//! Boot paths live in [`boot`]: PVH ELF images (the Kiln test guest) and Linux kernels
//! (`vmlinux` through its PVH note or the 64-bit boot protocol, bzImage through the 64-bit
//! boot protocol) with an initramfs and a command line.

// A VMM cannot avoid `unsafe`: KVM memory slots hand raw guest memory to the kernel, and a
// few libc calls (mincore, gettid) have no safe wrapper. Every block carries a `// SAFETY:`
// note (clippy::undocumented_unsafe_blocks is denied workspace-wide).
#![allow(unsafe_code)]

pub mod boot;
pub mod console;
pub mod control;
pub mod cpuid;
pub mod devices;
pub mod lease;
pub mod memory;
pub mod migration;
pub mod state;
pub mod stats;
pub mod vcpu;
pub mod vm;

pub use control::protocol;
