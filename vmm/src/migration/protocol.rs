//! The migration stream, version [`VERSION`]: one byte stream (Unix socket, TCP, later mutual
//! TLS between nodes) carrying framed messages both ways.
//!
//! ```text
//! source                                            target
//!   ── header (magic "KILNMIG\0", version) ──────────▶
//!   ── Config (JSON: memory layout, vCPUs, CPU) ─────▶  checks it against its own VM
//!   ◀──────────────────────────── Accept | Refuse ───
//!   ── Memory … (full pass, then dirty rounds) ──────▶  writes pages (zero pages: markers)
//!   ── PrecopyDone ──────────────────────────────────▶  finishes pre-faulting its memory
//!   ◀──────────────────────────────────── Prefaulted ─
//!      (source pauses its vCPUs)
//!   ── Memory … (last dirty pages) ──────────────────▶
//!   ── State (JSON: vCPUs, irqchip, PIT, clock, serial) ▶ restores it, stays paused
//!   ◀──────────────────────────────── StateReceived ─  "have all state"
//!      (source: paused, will not resume from here on; later the server records the owner)
//!   ── Commit ───────────────────────────────────────▶  resumes the vCPUs
//!   ◀────────────────────────────── Resumed (report) ─
//!      (source stops: the VM runs on the target)
//! ```
//!
//! Either side may send `Abort` (JSON reason) instead of its next message; the target then
//! discards everything and exits, the source resumes its VM. A closed stream before `Commit`
//! means the same. Every frame is `kind: u8, 3 reserved bytes, length: u32 LE, crc32: u32 LE`
//! (CRC-32/ISO-HDLC of the payload, crc32fast) and the payload.
//!
//! A Memory payload is a list of records `gpa: u64 LE, pages: u32 LE, kind: u8 (0 data,
//! 1 zero), 3 reserved bytes`, each followed by `pages × 4096` bytes for data records.

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Stream magic.
pub const MAGIC: [u8; 8] = *b"KILNMIG\0";
/// Protocol version; the target refuses any other.
pub const VERSION: u32 = 1;
/// Guest page size the stream works in.
pub const PAGE_SIZE: u64 = 4096;
/// Largest payload a peer accepts (a frame of memory is at most 1 MiB + record headers).
pub const MAX_PAYLOAD: u32 = 64 << 20;
const FRAME_HEADER: usize = 12;
/// Record header in a Memory payload.
pub const RECORD_HEADER: usize = 16;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Source → target: [`MigrationConfig`] as JSON.
    Config = 1,
    /// Source → target: page records.
    Memory = 2,
    /// Source → target: pre-copy is over; the next Memory frames come with the VM paused.
    PrecopyDone = 3,
    /// Source → target: [`super::state::MachineState`] as JSON.
    State = 4,
    /// Source → target: the new owner is recorded; resume.
    Commit = 5,
    /// Either way: give up ([`AbortReason`] as JSON).
    Abort = 6,
    /// Target → source: the config fits; send memory.
    Accept = 0x81,
    /// Target → source: the config does not fit ([`AbortReason`] as JSON).
    Refuse = 0x82,
    /// Target → source: memory pre-faulted; stop-and-copy may begin.
    Prefaulted = 0x83,
    /// Target → source: all memory and state received and restored.
    StateReceived = 0x84,
    /// Target → source: the vCPUs run ([`ResumeReport`] as JSON).
    Resumed = 0x85,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        use FrameKind::*;
        [
            Config,
            Memory,
            PrecopyDone,
            State,
            Commit,
            Abort,
            Accept,
            Refuse,
            Prefaulted,
            StateReceived,
            Resumed,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// Errors of the stream itself.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading or writing failed (the peer went away, the network broke).
    #[error("migration stream I/O failed")]
    Io(#[from] std::io::Error),
    /// The peer is not a kiln-vmm migration stream.
    #[error(
        "the peer did not send the migration stream magic; is it a kiln-vmm --migrate-receive?"
    )]
    BadMagic,
    /// Another protocol version.
    #[error("the peer speaks migration protocol version {0}, this kiln-vmm speaks {VERSION}; use the same kiln-vmm version on both nodes")]
    Version(u32),
    /// Corrupt frame.
    #[error("migration frame of kind {kind:#x} failed its checksum (crc32 {got:#010x}, expected {expected:#010x})")]
    Checksum {
        /// Frame kind.
        kind: u8,
        /// Computed.
        got: u32,
        /// Sent.
        expected: u32,
    },
    /// Unknown frame kind.
    #[error("unknown migration frame kind {0:#x}")]
    UnknownKind(u8),
    /// Frame too large.
    #[error("migration frame of {0} bytes exceeds the limit")]
    TooLarge(u32),
    /// A JSON payload did not parse.
    #[error("bad {what} payload in the migration stream")]
    Json {
        /// Which payload.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A Memory payload was malformed.
    #[error("malformed memory frame: {0}")]
    BadMemory(&'static str),
}

/// A received frame.
#[derive(Debug)]
pub struct Frame {
    /// Kind.
    pub kind: FrameKind,
    /// Payload (checksum verified).
    pub payload: Vec<u8>,
}

impl Frame {
    /// Parse the JSON payload.
    pub fn json<T: DeserializeOwned>(&self, what: &'static str) -> Result<T, StreamError> {
        serde_json::from_slice(&self.payload).map_err(|source| StreamError::Json { what, source })
    }
}

/// Write the stream header.
pub fn write_header(w: &mut impl Write) -> Result<(), StreamError> {
    let mut h = [0u8; 12];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    w.write_all(&h)?;
    Ok(())
}

/// Read and check the stream header.
pub fn read_header(r: &mut impl Read) -> Result<(), StreamError> {
    let mut h = [0u8; 12];
    r.read_exact(&mut h)?;
    if h[..8] != MAGIC {
        return Err(StreamError::BadMagic);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != VERSION {
        return Err(StreamError::Version(version));
    }
    Ok(())
}

/// Write one frame; returns the bytes put on the stream.
pub fn write_frame(
    w: &mut impl Write,
    kind: FrameKind,
    payload: &[u8],
) -> Result<u64, StreamError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or(StreamError::TooLarge(u32::MAX))?;
    let mut h = [0u8; FRAME_HEADER];
    h[0] = kind as u8;
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    w.write_all(&h)?;
    w.write_all(payload)?;
    Ok((FRAME_HEADER + payload.len()) as u64)
}

/// Write a frame whose payload is `value` as JSON.
pub fn write_json<T: Serialize>(
    w: &mut impl Write,
    kind: FrameKind,
    value: &T,
) -> Result<u64, StreamError> {
    let payload = serde_json::to_vec(value).map_err(|source| StreamError::Json {
        what: "outgoing",
        source,
    })?;
    write_frame(w, kind, &payload)
}

/// Read one frame and verify its checksum.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, StreamError> {
    let mut h = [0u8; FRAME_HEADER];
    r.read_exact(&mut h)?;
    let kind = FrameKind::from_u8(h[0]).ok_or(StreamError::UnknownKind(h[0]))?;
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_PAYLOAD {
        return Err(StreamError::TooLarge(len));
    }
    let expected = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    let got = crc32fast::hash(&payload);
    if got != expected {
        return Err(StreamError::Checksum {
            kind: h[0],
            got,
            expected,
        });
    }
    Ok(Frame { kind, payload })
}

/// The VM as the source describes it; the target must match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationConfig {
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Guest-physical RAM ranges `(start, length)` (the layout both sides compute).
    pub ram_ranges: Vec<(u64, u64)>,
    /// vCPU count.
    pub vcpus: u8,
    /// The kernel the VM was booted from (for logs; nothing is loaded on the target).
    pub boot_image: Option<String>,
    /// kiln-vmm version of the source.
    pub vmm_version: String,
}

/// A one-time migration token: random text the target's node agent issues and the source
/// presents in the stream's HTTP upgrade ([`super::upgrade`]). Never shown in `Debug` output; compared in constant time.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl Token {
    /// Whether `self` is `other`, in time that does not depend on where they differ.
    pub fn matches(&self, other: &Token) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a side gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortReason {
    /// For people.
    pub message: String,
}

/// What the target reports once it runs the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Restoring the machine state took this long (µs).
    pub restore_us: u64,
    /// From receiving Commit to the vCPUs released (µs).
    pub resume_us: u64,
    /// Bytes the target received.
    pub bytes_received: u64,
}

/// Kind of a page record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Page contents follow.
    Data,
    /// The pages are all zero; nothing follows.
    Zero,
}

/// Append a record header to a Memory payload.
pub fn push_record(buf: &mut Vec<u8>, gpa: u64, pages: u32, kind: RecordKind) {
    buf.extend_from_slice(&gpa.to_le_bytes());
    buf.extend_from_slice(&pages.to_le_bytes());
    buf.push(match kind {
        RecordKind::Data => 0,
        RecordKind::Zero => 1,
    });
    buf.extend_from_slice(&[0, 0, 0]);
}

/// One record of a Memory payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// First guest-physical address.
    pub gpa: u64,
    /// Page count.
    pub pages: u32,
    /// `Some(bytes)` for data, `None` for zero pages.
    pub data: Option<&'a [u8]>,
}

/// Split a Memory payload into its records.
pub fn parse_records(mut payload: &[u8]) -> Result<Vec<Record<'_>>, StreamError> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        if payload.len() < RECORD_HEADER {
            return Err(StreamError::BadMemory("truncated record header"));
        }
        let (h, rest) = payload.split_at(RECORD_HEADER);
        let gpa = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let pages = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if gpa % PAGE_SIZE != 0 {
            return Err(StreamError::BadMemory("unaligned page address"));
        }
        match h[12] {
            0 => {
                let len = pages as usize * PAGE_SIZE as usize;
                if rest.len() < len {
                    return Err(StreamError::BadMemory("truncated page data"));
                }
                let (data, rest) = rest.split_at(len);
                out.push(Record {
                    gpa,
                    pages,
                    data: Some(data),
                });
                payload = rest;
            }
            1 => {
                out.push(Record {
                    gpa,
                    pages,
                    data: None,
                });
                payload = rest;
            }
            _ => return Err(StreamError::BadMemory("unknown record kind")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_corruption_is_detected() {
        let mut buf = Vec::new();
        write_header(&mut buf).expect("header");
        write_frame(&mut buf, FrameKind::Commit, b"").expect("frame");
        write_json(
            &mut buf,
            FrameKind::Abort,
            &AbortReason {
                message: "x".into(),
            },
        )
        .expect("frame");
        let mut r = &buf[..];
        read_header(&mut r).expect("header");
        assert_eq!(read_frame(&mut r).expect("commit").kind, FrameKind::Commit);
        let abort = read_frame(&mut r).expect("abort");
        assert_eq!(
            abort.json::<AbortReason>("abort").expect("json").message,
            "x"
        );
        let last = buf.len() - 1;
        buf[last] ^= 1;
        let mut r = &buf[12 + 12..];
        assert!(matches!(
            read_frame(&mut r),
            Err(StreamError::Checksum { .. })
        ));
    }

    #[test]
    fn wrong_version_is_refused_with_both_versions() {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&7u32.to_le_bytes());
        let err = read_header(&mut &h[..]).expect_err("version 7");
        assert!(err.to_string().contains("version 7"), "{err}");
    }

    #[test]
    fn memory_records_round_trip() {
        let mut buf = Vec::new();
        push_record(&mut buf, 0x1000, 1, RecordKind::Data);
        buf.extend_from_slice(&[7u8; 4096]);
        push_record(&mut buf, 0x8000, 3, RecordKind::Zero);
        let recs = parse_records(&buf).expect("parse");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].gpa, 0x1000);
        assert_eq!(recs[0].data.map(|d| d.len()), Some(4096));
        assert_eq!(recs[1].pages, 3);
        assert!(recs[1].data.is_none());
        assert!(parse_records(&buf[..20]).is_err());
    }
}
