//! Pages on their way out: which were never touched (read as zero without faulting them in)
//! and how a Memory frame is built from them (runs merged, zero pages as markers).

use super::protocol::{self as wire, RecordKind, PAGE_SIZE};

/// Pages that were never touched (neither present nor swapped, per /proc/self/pagemap) read
/// as zero: they go as zero markers without reading them, which would fault them in. An
/// idle guest's full pass then costs almost nothing. Without pagemap every page is read.
/// (Valid for private anonymous guest memory, as [`crate::memory::create`] maps it; file or
/// shared-memory backing would need another test.)
pub(super) struct Untouched {
    /// Per memory region: guest start, present-or-swapped flag per page.
    regions: Vec<(u64, Vec<bool>)>,
}

impl Untouched {
    pub(super) fn new(mem: &crate::memory::GuestMemory) -> Untouched {
        use std::io::{Read, Seek, SeekFrom};
        use vm_memory::{Address, GuestMemoryBackend as _, GuestMemoryRegion};
        let mut regions = Vec::new();
        let Ok(mut pagemap) = std::fs::File::open("/proc/self/pagemap") else {
            return Untouched { regions };
        };
        for r in mem.iter() {
            let Ok(host) = r.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
                continue;
            };
            let host = host as u64;
            let pages = (r.len() / PAGE_SIZE) as usize;
            let mut raw = vec![0u8; pages * 8];
            let ok = pagemap
                .seek(SeekFrom::Start(host / PAGE_SIZE * 8))
                .and_then(|_| pagemap.read_exact(&mut raw));
            if ok.is_err() {
                continue;
            }
            let touched = raw
                .chunks_exact(8)
                .map(|e| {
                    let v = u64::from_le_bytes(e.try_into().unwrap_or([0xff; 8]));
                    v & (0b11 << 62) != 0 // present or swapped
                })
                .collect();
            regions.push((r.start_addr().raw_value(), touched));
        }
        Untouched { regions }
    }

    pub(super) fn is_untouched(&self, gpa: u64) -> bool {
        self.regions.iter().any(|(start, touched)| {
            gpa >= *start
                && touched
                    .get(((gpa - start) / PAGE_SIZE) as usize)
                    .is_some_and(|t| !t)
        })
    }
}

/// Builds one Memory payload, merging neighbouring pages of one kind into a record.
#[derive(Default)]
pub(super) struct FrameBuilder {
    payload: Vec<u8>,
    /// Open record: header offset, next address, kind, pages.
    open: Option<(usize, u64, RecordKind, u32)>,
    /// Pages added since the last clear.
    pub(super) pages: usize,
}

fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(16)
        .all(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])) == 0)
}

impl FrameBuilder {
    /// Add a page (`None`: known to be zero); true if it went as a zero marker.
    pub(super) fn add(&mut self, gpa: u64, page: Option<&[u8]>) -> bool {
        let data = page.filter(|p| !is_zero(p));
        let kind = if data.is_some() {
            RecordKind::Data
        } else {
            RecordKind::Zero
        };
        match &mut self.open {
            Some((_, next, k, count)) if *next == gpa && *k == kind => {
                *next += PAGE_SIZE;
                *count += 1;
            }
            _ => {
                self.close();
                let at = self.payload.len();
                wire::push_record(&mut self.payload, gpa, 0, kind);
                self.open = Some((at, gpa + PAGE_SIZE, kind, 1));
            }
        }
        if let Some(data) = data {
            self.payload.extend_from_slice(data);
        }
        self.pages += 1;
        kind == RecordKind::Zero
    }

    fn close(&mut self) {
        if let Some((at, _, _, count)) = self.open.take() {
            self.payload[at + 8..at + 12].copy_from_slice(&count.to_le_bytes());
        }
    }

    pub(super) fn finish(&mut self) -> &[u8] {
        self.close();
        &self.payload
    }

    pub(super) fn clear(&mut self) {
        self.payload.clear();
        self.open = None;
        self.pages = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_builder_merges_runs_and_marks_zero_pages() {
        let mut b = FrameBuilder::default();
        let data = [1u8; 4096];
        let zero = [0u8; 4096];
        assert!(!b.add(0x1000, Some(&data)));
        assert!(!b.add(0x2000, Some(&data)));
        assert!(b.add(0x3000, Some(&zero)));
        assert!(b.add(0x4000, None));
        assert!(!b.add(0x9000, Some(&data)));
        let recs = wire::parse_records(b.finish()).expect("parses");
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].gpa, recs[0].pages), (0x1000, 2));
        assert_eq!(recs[0].data.map(|d| d.len()), Some(8192));
        assert_eq!(
            (recs[1].gpa, recs[1].pages, recs[1].data),
            (0x3000, 2, None)
        );
        assert_eq!((recs[2].gpa, recs[2].pages), (0x9000, 1));
    }
}
