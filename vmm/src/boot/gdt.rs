//! Boot GDTs and their KVM segment views. Both entry paths use the selectors Linux's boot
//! protocol names: code at 0x10 (`__BOOT_CS`), data at 0x18 (`__BOOT_DS`), a TSS at 0x20.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress};

use super::{layout, BootError};
use crate::memory::GuestMemory;

/// A GDT descriptor from (flags << 8 | access byte), base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0x0000_f0ff) << 40)
}

const CODE32: u64 = gdt_entry(0xc09b, 0, 0xfffff);
const CODE64: u64 = gdt_entry(0xa09b, 0, 0xfffff);
const DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
const TSS: u64 = gdt_entry(0x008b, 0, 0x67);

/// Index of the code descriptor.
pub const CODE: u16 = 2;
/// Index of the data descriptor.
pub const DATA_INDEX: u16 = 3;
/// Index of the TSS descriptor.
pub const TSS_INDEX: u16 = 4;

/// PVH entry: flat 32-bit code and data.
pub const PVH_GDT: [u64; 5] = [0, 0, CODE32, DATA, TSS];
/// Linux 64-bit boot protocol: 64-bit code (L=1), flat data.
pub const LONG_MODE_GDT: [u64; 5] = [0, 0, CODE64, DATA, TSS];

/// The KVM view of descriptor `index` of `gdt`.
pub fn segment(gdt: &[u64; 5], index: u16) -> kvm_segment {
    let e = gdt[usize::from(index)];
    let access = ((e >> 40) & 0xff) as u8;
    let flags = ((e >> 52) & 0xf) as u8;
    let raw_limit = ((e & 0xffff) | ((e >> 32) & 0xf_0000)) as u32;
    let g = (flags >> 3) & 1;
    kvm_segment {
        base: ((e >> 16) & 0xff_ffff) | ((e >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: access & 0xf,
        present: (access >> 7) & 1,
        dpl: (access >> 5) & 3,
        db: (flags >> 2) & 1,
        s: (access >> 4) & 1,
        l: (flags >> 1) & 1,
        g,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Write `gdt` at [`layout::BOOT_GDT`].
pub fn write(mem: &GuestMemory, gdt: &[u64; 5]) -> Result<(), BootError> {
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout::BOOT_GDT + 8 * i as u64))
            .map_err(|source| BootError::WriteGuest {
                what: "boot GDT",
                source,
            })?;
    }
    Ok(())
}

/// Load `gdt`'s segments into `sregs` (CS = code, DS/ES/FS/GS/SS = data, TR = TSS).
pub fn load_segments(sregs: &mut kvm_bindings::kvm_sregs, gdt: &[u64; 5]) {
    let code = segment(gdt, CODE);
    let data = segment(gdt, DATA_INDEX);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(gdt, TSS_INDEX);
    sregs.gdt.base = layout::BOOT_GDT;
    sregs.gdt.limit = (std::mem::size_of_val(gdt) - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_as_the_boot_protocols_expect() {
        // (gdt, index) -> (base, limit, selector, type, present, db, l, s, g)
        let cases = [
            (PVH_GDT, CODE, (0, 0xffff_ffff, 0x10, 0xb, 1, 1, 0, 1, 1)),
            (
                PVH_GDT,
                DATA_INDEX,
                (0, 0xffff_ffff, 0x18, 0x3, 1, 1, 0, 1, 1),
            ),
            (
                LONG_MODE_GDT,
                CODE,
                (0, 0xffff_ffff, 0x10, 0xb, 1, 0, 1, 1, 1),
            ),
            (
                LONG_MODE_GDT,
                DATA_INDEX,
                (0, 0xffff_ffff, 0x18, 0x3, 1, 1, 0, 1, 1),
            ),
            (
                LONG_MODE_GDT,
                TSS_INDEX,
                (0, 0x67, 0x20, 0xb, 1, 0, 0, 0, 0),
            ),
        ];
        for (gdt, index, want) in cases {
            let s = segment(&gdt, index);
            let got = (
                s.base, s.limit, s.selector, s.type_, s.present, s.db, s.l, s.s, s.g,
            );
            assert_eq!(got, want, "descriptor {index}");
        }
    }
}
