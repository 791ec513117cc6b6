//! The log: options, open (with recovery), and reads. All writes happen on the committer
//! thread (`committer.rs`); readers see only durable data.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Code, Result, WalError};
use crate::frame::{decode, frame_crc, read_u32, Frame, FRAME_HEADER, MARKER_LEN, MARKER_TAG, MAX_PAYLOAD};
use crate::reader::SegmentReader;
use crate::recovery::{recover, RecoveryMode, RecoveryReport};
use crate::segment::{file_name, SEGMENT_HEADER};
use crate::state::State;
use crate::store::Store;

pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 16 << 20;
pub const MIN_SEGMENT_BYTES: u64 = 4096;
pub const MAX_SEGMENT_BYTES: u64 = 1 << 40;

#[derive(Clone, Debug)]
pub struct Options {
    /// Capacity of new segment files, header included.
    pub segment_bytes: u64,
    /// Largest payload `append` accepts.
    pub max_record_bytes: u32,
    pub recovery: RecoveryMode,
    /// Keep a zero-filled region ahead of the write position (see `Options::prealloc_step`).
    pub preallocate: bool,
    /// Which writes go past the page cache where the platform allows it (Linux `O_DIRECT`; see
    /// `direct_io`). Durable appends cost less CPU and disk time; reads of all but the newest
    /// `direct_io::RING` bytes written directly come from the disk instead of memory. Only with
    /// `preallocate`: a direct write pads its last block with zeros, which without preallocation
    /// would read as a torn write.
    pub direct_writes: DirectMode,
    /// Open without writing anything: a shared lock, damage (a torn tail too) reported but left
    /// in place, appends refused.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            recovery: RecoveryMode::Strict,
            // Measured on Linux/ext4: fdatasync after overwriting zero-filled space is about
            // twice as fast as after appending, which must also journal the new file size.
            preallocate: true,
            direct_writes: DirectMode::Auto,
            read_only: false,
        }
    }
}

/// Which writes bypass the page cache (see `Options::direct_writes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectMode {
    /// None: everything goes through the page cache.
    Off,
    /// Epochs under `AUTO_DIRECT_MAX`. Those are the ones whose barrier waits on the copy and
    /// write-back (measured on Linux/ext4, 64 writers of 1 KiB: pwrite + fdatasync of 64 KiB at
    /// 7,300-7,700 cycles/s direct against 6,300-6,500 buffered); bulk writes keep going through
    /// the page cache, so that what was loaded in bulk reads back from memory.
    Auto,
    /// Every write (a Raft log: written far more than it is read far back).
    Always,
}

/// Under `DirectMode::Auto`, writes of this size or more go through the page cache.
pub const AUTO_DIRECT_MAX: u64 = 1 << 20;

impl DirectMode {
    /// The size from which a write goes through the page cache.
    pub fn buffered_from(self) -> u64 {
        match self {
            DirectMode::Off => 0,
            DirectMode::Auto => AUTO_DIRECT_MAX,
            DirectMode::Always => u64::MAX,
        }
    }
}

/// Zero-filled space a new segment starts with: small, so that opening many logs costs little.
pub const PREALLOC_FIRST: u64 = 1 << 20;
/// The most zero-filled space kept ahead of a busy writer.
pub const PREALLOC_MAX: u64 = 16 << 20;
/// Zero-filling stops while recent epochs average more than this. Zeros cost the disk as much
/// bandwidth as data; what they save is a journal commit per barrier, which a large epoch
/// amortizes anyway. Measured on Linux/ext4 (Raft log, 256 B entries, 32 batches of 64 in
/// flight, ~150-300 KiB epochs): 1.4-1.55M entries/s filling, 1.75-1.9M not filling; 64 KiB
/// epochs gain from filling.
pub const FILL_MAX_EPOCH: u64 = 128 << 10;

impl Options {
    /// How much zero-filled space a new segment starts with (0 without preallocation).
    pub fn prealloc_step(&self) -> u64 {
        if self.preallocate {
            PREALLOC_FIRST.min(self.segment_bytes)
        } else {
            0
        }
    }
}

/// Bytes a segment spends besides one record's payload: header, marker, frame header.
pub const SEGMENT_OVERHEAD: u64 = (SEGMENT_HEADER + MARKER_LEN + FRAME_HEADER) as u64;

impl Options {
    pub fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(WalError::invalid(format!(
                "segmentBytes must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}, got {}",
                self.segment_bytes
            )));
        }
        if self.max_record_bytes > MAX_PAYLOAD || self.max_record_bytes as u64 + SEGMENT_OVERHEAD > self.segment_bytes {
            return Err(WalError::invalid(format!(
                "maxRecordBytes ({}) must leave room for the segment and frame headers: at most segmentBytes - {SEGMENT_OVERHEAD}",
                self.max_record_bytes
            )));
        }
        Ok(())
    }
}

/// A batch of records read in one go: `data` holds the raw frames, each record's payload is
/// `data[bounds[2i]..bounds[2i+1]]` and its LSN `lsns[i]`.
pub struct Chunk {
    pub data: Vec<u8>,
    pub lsns: Vec<f64>,
    pub bounds: Vec<u32>,
    /// Where the next read should start.
    pub next: u64,
    /// The chunk reached the end of the log.
    pub done: bool,
}

/// Where a chunk read starts: a position in segment `base`, the index point at or before it, the
/// segment's durable end and the segment after it.
struct ChunkSpan {
    base: u64,
    pos: u64,
    start: u64,
    end: u64,
    next_seg: Option<u64>,
}

pub struct Log {
    pub store: Arc<dyn Store>,
    pub opts: Options,
    pub state: RwLock<State>,
    pub report: RecoveryReport,
    poison: Mutex<Option<WalError>>,
    closed: AtomicBool,
    /// Truncations begun: each takes records out of the state before it changes any file.
    truncations: AtomicU64,
    /// Held for writing by a truncation, from its change of the state to its last change of a
    /// file; for reading by a read that truncations kept overtaking (see `retry_truncated`).
    truncating: RwLock<()>,
}

/// Reads run again this many times when truncations overtake them, then once holding them off.
const READ_ATTEMPTS: u32 = 4;

fn not_found(lsn: u64, why: &str) -> WalError {
    WalError::new(Code::NotFound, format!("no record at LSN {lsn}: {why}"))
}

impl Log {
    pub fn open(store: Arc<dyn Store>, opts: Options) -> Result<Arc<Log>> {
        opts.validate()?;
        let (state, report) = recover(store.as_ref(), opts.segment_bytes, opts.prealloc_step(), opts.recovery, opts.read_only)?;
        Ok(Arc::new(Log {
            store,
            opts,
            state: RwLock::new(state),
            report,
            poison: Mutex::new(None),
            closed: AtomicBool::new(false),
            truncations: AtomicU64::new(0),
            truncating: RwLock::new(()),
        }))
    }

    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, locked for a truncation that is about to take records out of it and then
    /// change the files: readers that fail meanwhile know to try again.
    pub fn state_for_truncation(&self) -> RwLockWriteGuard<'_, State> {
        let st = self.state.write().unwrap_or_else(|p| p.into_inner());
        self.truncations.fetch_add(1, Ordering::SeqCst);
        st
    }

    /// Hold off reads that fell back on holding truncations off, for the truncation this
    /// guard's holder is making (from before its state change to after its last file change).
    pub fn truncation(&self) -> RwLockWriteGuard<'_, ()> {
        self.truncating.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `read`, again whenever a truncation began meanwhile: it may have found records in
    /// the state whose files then changed under it (a segment removed, a file cut and written
    /// anew), and failed or read bytes that are no longer those records. Run again, it sees the
    /// log as truncated — `NotFound`, or the records that followed — which is the answer it
    /// would have had a moment later. A read that truncations keep overtaking (a long one under
    /// a stream of small truncations) runs a last time with truncations held off, so it ends.
    pub(crate) fn retry_truncated<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        for _ in 0..READ_ATTEMPTS {
            let seen = self.truncations.load(Ordering::SeqCst);
            let outcome = read();
            if self.truncations.load(Ordering::SeqCst) == seen {
                return outcome;
            }
        }
        let _held = self.truncating.read().unwrap_or_else(|p| p.into_inner());
        read()
    }

    pub fn bounds(&self) -> (u64, u64) {
        let st = self.state();
        (st.first_lsn, st.next_lsn)
    }

    pub fn poisoned(&self) -> Option<WalError> {
        self.poison.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_poison(&self, cause: &WalError) {
        let mut p = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(cause.clone());
        }
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(WalError::new(Code::Closed, "the log is closed"));
        }
        Ok(())
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Find the record at `lsn`: its segment base, position and payload length.
    pub fn locate(&self, lsn: u64) -> Result<(u64, u64, u32)> {
        let (base, pos, start, end) = {
            let st = self.state();
            if lsn < st.first_lsn {
                return Err(not_found(lsn, "it is before the first record (truncated or never written)"));
            }
            let (base, seg, pos) = st.segment_of(lsn).ok_or_else(|| not_found(lsn, "it is past the end of the log"))?;
            (base, pos, seg.floor(pos), seg.end)
        };
        let mut reader = SegmentReader::new(self.store.as_ref(), base, end, 8192);
        let mut q = start;
        while q < pos {
            q += frame_len_at(&mut reader, base, q)?;
        }
        if q != pos {
            return Err(not_found(lsn, "no record starts there"));
        }
        let header = reader.get(pos, FRAME_HEADER)?;
        if header.len() < FRAME_HEADER {
            return Err(WalError::corrupt(&file_name(base), pos, "frame header past the durable end"));
        }
        let len = read_u32(header, 4);
        if len == MARKER_TAG {
            return Err(not_found(lsn, "no record starts there"));
        }
        if pos + FRAME_HEADER as u64 + len as u64 > end {
            return Err(WalError::corrupt(&file_name(base), pos, "record runs past the durable end"));
        }
        Ok((base, pos, len))
    }

    /// LSN of the last record in segment `base`, if it holds one.
    pub fn last_record(&self, base: u64) -> Result<Option<u64>> {
        let (sparse, end) = {
            let st = self.state();
            match st.segs.get(&base) {
                Some(seg) if seg.first_record.is_some() => (seg.sparse.clone(), seg.end),
                _ => return Ok(None),
            }
        };
        let mut reader = SegmentReader::new(self.store.as_ref(), base, end, 8192);
        // Walk from the last index point; if only markers follow it, from the one before.
        for &from in sparse.iter().rev() {
            let (mut q, mut last) = (from, None);
            while q < end {
                let size = frame_len_at(&mut reader, base, q)?;
                if read_u32(reader.get(q, FRAME_HEADER)?, 4) != MARKER_TAG {
                    last = Some(base + q);
                }
                q += size;
            }
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(None)
    }

    /// Where the log ended before the first write into its oldest segment, which that write's
    /// marker records: every record dropped from the front of the log (by `truncate_before`, or
    /// by a truncate-mode recovery that started afresh) ends at or before it. Without a readable
    /// marker there, the segment's first position answers: nothing dropped ends past it. A log
    /// whose oldest segment is its very first has dropped nothing: 0.
    pub fn dropped_end(&self) -> Result<u64> {
        self.check_open()?;
        self.retry_truncated(|| {
            let (base, end) = {
                let st = self.state();
                let (&base, seg) = st.segs.iter().next().expect("a log always has a segment");
                (base, seg.end)
            };
            if base == 0 {
                return Ok(0);
            }
            let first = SEGMENT_HEADER as u64;
            if end < first + MARKER_LEN as u64 {
                return Ok(base + first);
            }
            let mut reader = SegmentReader::new(self.store.as_ref(), base, end, MARKER_LEN);
            Ok(match decode(reader.get(first, MARKER_LEN)?, base + first, 0) {
                Frame::Marker { prev_end, .. } => prev_end,
                _ => base + first,
            })
        })
    }

    /// The payload of the record at `lsn`, checksum verified.
    pub fn read(&self, lsn: u64) -> Result<Vec<u8>> {
        self.check_open()?;
        self.retry_truncated(|| self.read_record(lsn))
    }

    fn read_record(&self, lsn: u64) -> Result<Vec<u8>> {
        let (base, pos, len) = self.locate(lsn)?;
        let mut header = [0u8; FRAME_HEADER];
        let mut payload = vec![0u8; len as usize];
        let got_h = self.store.read_at(base, pos, &mut header)?;
        let got_p = self.store.read_at(base, pos + FRAME_HEADER as u64, &mut payload)?;
        if got_h < FRAME_HEADER || got_p < payload.len() || frame_crc(len, &payload) != read_u32(&header, 0) {
            return Err(WalError::corrupt(&file_name(base), pos, "record checksum mismatch"));
        }
        Ok(payload)
    }

    /// Records from the first one at or after `from`, about `max_bytes` of them (at least one).
    pub fn read_chunk(&self, from: u64, max_bytes: usize) -> Result<Chunk> {
        self.check_open()?;
        self.retry_truncated(|| match self.chunk_span(from) {
            Ok(span) => self.read_span(&span, max_bytes),
            Err(empty) => Ok(empty),
        })
    }

    /// Where a chunk read from `from` starts, or the empty chunk if nothing lies at or after it.
    fn chunk_span(&self, from: u64) -> std::result::Result<ChunkSpan, Chunk> {
        let st = self.state();
        let from = from.max(st.first_lsn);
        let empty = || Chunk { data: Vec::new(), lsns: Vec::new(), bounds: Vec::new(), next: st.next_lsn, done: true };
        if from >= st.next_lsn {
            return Err(empty());
        }
        let (&base, seg) = match st.segs.range(..=from).next_back() {
            Some((b, s)) if from - b < s.end => (b, s),
            _ => match st.segs.range(from + 1..).next() {
                Some(x) => x,
                None => return Err(empty()),
            },
        };
        let pos = from.saturating_sub(base).max(SEGMENT_HEADER as u64);
        let next_seg = st.segs.range(base + 1..).next().map(|(b, _)| *b);
        Ok(ChunkSpan { base, pos, start: seg.floor(pos), end: seg.end, next_seg })
    }

    /// Read the records of one segment from `span.pos`, about `max_bytes` of them.
    fn read_span(&self, span: &ChunkSpan, max_bytes: usize) -> Result<Chunk> {
        let &ChunkSpan { base, pos, start, end, next_seg } = span;
        let mut reader = SegmentReader::new(self.store.as_ref(), base, end, 8192);
        let mut q = start;
        while q < pos {
            q += frame_len_at(&mut reader, base, q)?;
        }
        let mut window_end = (q + max_bytes as u64).min(end);
        if q < end {
            window_end = window_end.max(q + frame_len_at(&mut reader, base, q)?);
        }
        let mut data = vec![0u8; (window_end - q) as usize];
        let got = self.store.read_at(base, q, &mut data)?;
        if got < data.len() {
            return Err(WalError::corrupt(&file_name(base), q + got as u64, "segment shorter than its durable end"));
        }
        let mut lsns = Vec::new();
        let mut bounds = Vec::new();
        let mut at = 0usize;
        while at + FRAME_HEADER <= data.len() {
            let len = read_u32(&data, at + 4);
            let size = if len == MARKER_TAG { MARKER_LEN } else { FRAME_HEADER + len as usize };
            if at + size > data.len() {
                break;
            }
            if len != MARKER_TAG {
                let payload = &data[at + FRAME_HEADER..at + size];
                if frame_crc(len, payload) != read_u32(&data, at) {
                    return Err(WalError::corrupt(&file_name(base), q + at as u64, "record checksum mismatch"));
                }
                lsns.push((base + q + at as u64) as f64);
                bounds.push((at + FRAME_HEADER) as u32);
                bounds.push((at + size) as u32);
            }
            at += size;
        }
        let stop = q + at as u64;
        let (next, done) = if stop < end {
            (base + stop, false)
        } else {
            match next_seg {
                Some(b) => (b + SEGMENT_HEADER as u64, false),
                None => (base + stop, true),
            }
        };
        Ok(Chunk { data, lsns, bounds, next, done })
    }
}

/// Size of the frame at `pos`, validated when it was written or recovered. Bytes that no longer
/// hold it (a file cut and written anew under a reader) must still not send a walk past the end.
fn frame_len_at(reader: &mut SegmentReader, base: u64, pos: u64) -> Result<u64> {
    let h = reader.get(pos, FRAME_HEADER)?;
    if h.len() < FRAME_HEADER {
        return Err(WalError::corrupt(&file_name(base), pos, "frame header past the end of the segment"));
    }
    let len = read_u32(h, 4);
    let size = if len == MARKER_TAG { MARKER_LEN as u64 } else { FRAME_HEADER as u64 + len as u64 };
    if pos + size > reader.size() {
        return Err(WalError::corrupt(&file_name(base), pos, "frame runs past the end of the segment"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::{Log, Options, READ_ATTEMPTS};
    use crate::store::MemStore;

    #[test]
    fn a_read_that_truncations_keep_overtaking_still_ends() {
        let log = Log::open(Arc::new(MemStore::new()), Options { preallocate: false, ..Options::default() }).unwrap();
        let calls = AtomicU32::new(0);
        // Every attempt sees a truncation begin while it reads.
        let got = log.retry_truncated(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(n <= 100, "the read never ended");
            log.truncations.fetch_add(1, Ordering::SeqCst);
            Ok(n)
        });
        assert_eq!(got.unwrap(), READ_ATTEMPTS + 1, "the last attempt holds truncations off and stands");
    }
}
