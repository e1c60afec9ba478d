//! Memory patterns for migration and memory tests: one 64-bit word per 4 KiB page.
//!
//! Page `i` of the pattern area holds `page_word(seed, gen, i)` at offset 0, where `gen` is
//! how many times `dirty` has rewritten that page. Writing one word per page keeps the work
//! small (every byte of 256 MiB would take minutes of emulated ring-0 time under PVM), while
//! still touching, and dirtying, every page. The loops can run in ring 3, where PVM runs
//! code natively instead of emulating it.

use crate::bootinfo::MemoryMap;
use crate::cpu;
use crate::paging;

const PAGE: u64 = 4096;
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const GEN_MIX: u64 = 0xd1b5_4a32_d192_ed03;
const MAX_CHUNKS: usize = crate::bootinfo::MAX_REGIONS;

/// The word stored in page `index` for `seed` after `gen` rewrites (splitmix64).
pub fn page_word(seed: u64, gen: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(gen.wrapping_mul(GEN_MIX))
        .wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A contiguous run of pattern pages.
#[derive(Clone, Copy, Default)]
struct Chunk {
    base: u64,
    first_index: u64,
    pages: u64,
}

/// Where patterns may go: RAM above the guest image.
pub struct PatternArea {
    chunks: [Chunk; MAX_CHUNKS],
    count: usize,
    /// Pages available in all chunks.
    pub pages: u64,
}

impl PatternArea {
    /// Every RAM page at or above `first_free` that the guest can map.
    pub fn new(map: &MemoryMap, first_free: u64) -> Self {
        let mapped_end = paging::map_up_to(
            map.regions[..map.count]
                .iter()
                .map(|r| r.end)
                .max()
                .unwrap_or(0),
        );
        let mut area = PatternArea {
            chunks: [Chunk::default(); MAX_CHUNKS],
            count: 0,
            pages: 0,
        };
        for r in &map.regions[..map.count] {
            let start = r.start.max(first_free).next_multiple_of(PAGE);
            let end = r.end.min(mapped_end) & !(PAGE - 1);
            if end > start {
                let pages = (end - start) / PAGE;
                area.chunks[area.count] = Chunk {
                    base: start,
                    first_index: area.pages,
                    pages,
                };
                area.count += 1;
                area.pages += pages;
            }
        }
        area
    }
}

/// Which ring runs the loops.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    Kernel,
    User,
}

/// What a job does.
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Write generation `gen` into every page of the range.
    Write = 0,
    /// Check every page; expected generation is `passes + (index < cursor)`.
    Verify = 1,
}

/// One loop over a chunk; shared between ring 0 and ring 3 (passed by address).
#[repr(C)]
struct Job {
    op: Op,
    seed: u64,
    gen: u64,
    passes: u64,
    cursor: u64,
    base: u64,
    first_index: u64,
    pages: u64,
    // results
    checksum: u64,
    mismatches: u64,
    first_bad: u64,
}

fn run_job(job: &mut Job) {
    let mut checksum = 0u64;
    for p in 0..job.pages {
        let index = job.first_index + p;
        let ptr = (job.base + p * PAGE) as *mut u64;
        match job.op {
            Op::Write => {
                let w = page_word(job.seed, job.gen, index);
                // SAFETY: the page belongs to the pattern area (guest RAM above the image).
                unsafe { ptr.write_volatile(w) };
                checksum = checksum.wrapping_add(w);
            }
            Op::Verify => {
                // SAFETY: as above.
                let w = unsafe { ptr.read_volatile() };
                let gen = job.passes + u64::from(index < job.cursor);
                if w != page_word(job.seed, gen, index) {
                    if job.mismatches == 0 {
                        job.first_bad = index;
                    }
                    job.mismatches += 1;
                }
                checksum = checksum.wrapping_add(w);
            }
        }
    }
    job.checksum = job.checksum.wrapping_add(checksum);
}

extern "C" fn user_job(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the kernel's Job, valid (and user-accessible) for the
    // duration of run_in_ring3.
    let job = unsafe { &mut *(arg as *mut Job) };
    run_job(job);
    cpu::user_exit(0)
}

fn run(job: &mut Job, ring: Ring) {
    match ring {
        Ring::Kernel => run_job(job),
        Ring::User => {
            cpu::run_in_ring3(user_job, job as *mut Job as u64);
        }
    }
}

/// Result of a pass over the pattern.
pub struct PassResult {
    pub checksum: u64,
    pub mismatches: u64,
    pub first_bad: u64,
}

/// The current pattern: seed, size and dirty progress.
pub struct Pattern {
    pub seed: u64,
    pub pages: u64,
    /// Completed dirty passes over all pages.
    pub passes: u64,
    /// Pages of the current dirty pass already rewritten.
    pub cursor: u64,
}

fn for_range(area: &PatternArea, from: u64, to: u64, mut f: impl FnMut(u64, u64, u64)) {
    for c in &area.chunks[..area.count] {
        let start = from.max(c.first_index);
        let end = to.min(c.first_index + c.pages);
        if end > start {
            f(c.base + (start - c.first_index) * PAGE, start, end - start);
        }
    }
}

fn write_range(area: &PatternArea, seed: u64, gen: u64, from: u64, to: u64, ring: Ring) -> u64 {
    let mut checksum = 0u64;
    for_range(area, from, to, |base, first_index, pages| {
        let mut job = Job {
            op: Op::Write,
            seed,
            gen,
            passes: 0,
            cursor: 0,
            base,
            first_index,
            pages,
            checksum: 0,
            mismatches: 0,
            first_bad: 0,
        };
        run(&mut job, ring);
        checksum = checksum.wrapping_add(job.checksum);
    });
    checksum
}

/// Write generation 0 of `seed` into the first `pages` pages.
pub fn fill(area: &PatternArea, seed: u64, pages: u64, ring: Ring) -> (Pattern, u64) {
    let checksum = write_range(area, seed, 0, 0, pages, ring);
    (
        Pattern {
            seed,
            pages,
            passes: 0,
            cursor: 0,
        },
        checksum,
    )
}

/// Check every page of the pattern.
pub fn verify(area: &PatternArea, pattern: &Pattern, ring: Ring) -> PassResult {
    let mut result = PassResult {
        checksum: 0,
        mismatches: 0,
        first_bad: 0,
    };
    for_range(area, 0, pattern.pages, |base, first_index, pages| {
        let mut job = Job {
            op: Op::Verify,
            seed: pattern.seed,
            gen: 0,
            passes: pattern.passes,
            cursor: pattern.cursor,
            base,
            first_index,
            pages,
            checksum: 0,
            mismatches: 0,
            first_bad: 0,
        };
        run(&mut job, ring);
        result.checksum = result.checksum.wrapping_add(job.checksum);
        if job.mismatches > 0 && result.mismatches == 0 {
            result.first_bad = job.first_bad;
        }
        result.mismatches += job.mismatches;
    });
    result
}

/// Rewrite the next `count` pages with the next generation (wrapping over the pattern).
pub fn dirty_step(area: &PatternArea, pattern: &mut Pattern, mut count: u64, ring: Ring) {
    while count > 0 && pattern.pages > 0 {
        let n = count.min(pattern.pages - pattern.cursor);
        let gen = pattern.passes + 1;
        write_range(
            area,
            pattern.seed,
            gen,
            pattern.cursor,
            pattern.cursor + n,
            ring,
        );
        pattern.cursor += n;
        count -= n;
        if pattern.cursor == pattern.pages {
            pattern.cursor = 0;
            pattern.passes += 1;
        }
    }
}
