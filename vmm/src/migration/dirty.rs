//! Dirty-page tracking with KVM's dirty log (KVM_GET_DIRTY_LOG: fetch and clear, per slot).
//! The VMM itself writes no guest memory after boot (no DMA devices yet), so KVM's log is
//! the whole truth. Logging is switched off again when the tracker is dropped.

use vm_memory::{Address, GuestMemoryBackend as _, GuestMemoryRegion};

use super::MigrationError;
use crate::memory;
use crate::vm::VmShared;

/// A set of guest pages: one bitmap per memory slot (bit i = page i of the slot).
#[derive(Debug, Clone)]
pub struct PageSet {
    /// Per slot: (first guest-physical address, pages, bitmap words).
    pub slots: Vec<(u64, u64, Vec<u64>)>,
}

impl PageSet {
    /// Every page of guest memory.
    pub fn all(vm: &VmShared) -> PageSet {
        PageSet {
            slots: vm
                .memory()
                .iter()
                .map(|r| {
                    let pages = r.len() / super::protocol::PAGE_SIZE;
                    let mut words = vec![u64::MAX; pages.div_ceil(64) as usize];
                    if !pages.is_multiple_of(64) {
                        if let Some(last) = words.last_mut() {
                            *last = (1u64 << (pages % 64)) - 1;
                        }
                    }
                    (r.start_addr().raw_value(), pages, words)
                })
                .collect(),
        }
    }

    /// Number of pages in the set.
    pub fn count(&self) -> u64 {
        self.slots
            .iter()
            .map(|(_, _, w)| w.iter().map(|x| u64::from(x.count_ones())).sum::<u64>())
            .sum()
    }

    /// Add another set of the same layout.
    pub fn union(&mut self, other: &PageSet) {
        for ((_, _, a), (_, _, b)) in self.slots.iter_mut().zip(&other.slots) {
            for (x, y) in a.iter_mut().zip(b) {
                *x |= *y;
            }
        }
    }

    /// Guest-physical addresses of the pages, in order.
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().flat_map(|(base, _, words)| {
            words.iter().enumerate().flat_map(move |(wi, &word)| {
                let mut w = word;
                std::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let bit = u64::from(w.trailing_zeros());
                    w &= w - 1;
                    Some(base + (wi as u64 * 64 + bit) * super::protocol::PAGE_SIZE)
                })
            })
        })
    }
}

/// Dirty logging switched on for the VM's memory.
pub struct DirtyLog<'a> {
    vm: &'a VmShared,
}

impl<'a> DirtyLog<'a> {
    /// Switch logging on and clear the log.
    pub fn start(vm: &'a VmShared) -> Result<Self, MigrationError> {
        memory::set_dirty_logging(vm.vm_fd(), vm.memory(), true)
            .map_err(|e| MigrationError::Memory(e.to_string()))?;
        let log = DirtyLog { vm };
        log.fetch()?;
        Ok(log)
    }

    /// Pages dirtied since the last fetch (and clear the log).
    pub fn fetch(&self) -> Result<PageSet, MigrationError> {
        let mut slots = Vec::new();
        for (slot, r) in self.vm.memory().iter().enumerate() {
            let words = self
                .vm
                .vm_fd()
                .get_dirty_log(slot as u32, r.len() as usize)
                .map_err(|e| {
                    MigrationError::Memory(format!("cannot read the dirty log of slot {slot}: {e}"))
                })?;
            slots.push((
                r.start_addr().raw_value(),
                r.len() / super::protocol::PAGE_SIZE,
                words,
            ));
        }
        Ok(PageSet { slots })
    }
}

impl Drop for DirtyLog<'_> {
    fn drop(&mut self) {
        // Best effort: logging left on only costs the guest some write faults.
        let _ = memory::set_dirty_logging(self.vm.vm_fd(), self.vm.memory(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_set_lists_addresses_and_counts() {
        let mut set = PageSet {
            slots: vec![(0, 130, vec![0b101, 0, 1 << 1])],
        };
        assert_eq!(set.count(), 3);
        let addrs: Vec<u64> = set.addresses().collect();
        assert_eq!(addrs, vec![0, 2 * 4096, 129 * 4096]);
        set.union(&PageSet {
            slots: vec![(0, 130, vec![0b10, 0, 0])],
        });
        assert_eq!(set.count(), 4);
    }
}
