//! Recovery on open: scan every segment, cut the torn tail of the last write, and refuse (or,
//! in `truncate` mode, cut at) anything that is damage rather than an interrupted write.
//!
//! The rule rests on the commit markers (see `frame`): a damaged frame is an interrupted write
//! only if no valid marker after it claims it was durable, and consecutive segments must join
//! exactly (the first marker of a segment names where the previous one ended; a segment is
//! begun only once everything before it is durable).

use crate::error::{Result, WalError};
use crate::frame::{decode, marker_at, read_u32, Frame, FRAME_HEADER, MARKER_LEN, MAX_PAYLOAD};
use crate::reader::SegmentReader;
use crate::segment::{decode_header, file_name, MAX_LSN, SEGMENT_HEADER};
use crate::state::{SegState, State, SPARSE_GAP};
use crate::store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut only the torn tail of the last write; any other damage fails the open.
    Strict,
    /// Cut at the first damaged frame anywhere, dropping everything after it.
    Truncate,
}

/// What recovery did, for the caller to inspect or log.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Bytes of an interrupted write removed from the end of the log.
    pub torn_bytes: u64,
    /// In `truncate` mode: where the log was cut because of damage (an LSN), if it was.
    pub cut_at: Option<u64>,
    /// In `truncate` mode: the damage that caused the cut.
    pub cut_reason: Option<String>,
    /// In `truncate` mode: bytes of log (including any valid records) dropped after the cut.
    pub dropped_bytes: u64,
    pub segments: u64,
    pub records: u64,
    /// The log ended at the seal of a clean close (see `frame`), which vouches for all of it.
    pub sealed: bool,
}

struct Scan {
    base: u64,
    capacity: u64,
    file_len: u64,
    /// Position just past the last valid frame.
    end: u64,
    /// Just past the seal at `end`, if a clean close left one there (see `frame`).
    seal_end: Option<u64>,
    first_record: Option<u64>,
    /// `prev_end` of the marker at the very start of the segment, if there is one.
    first_prev_end: Option<u64>,
    has_frames: bool,
    /// The most any valid marker beyond `end` claims was durable when it was written (an LSN).
    /// A claim past `base + end` makes what stopped the scan damage, not a torn write.
    claim_after_end: Option<u64>,
    /// Just past the last non-zero byte beyond `end`; equal to `end` when all of it is zero
    /// (preallocated space, or nothing at all).
    tail_extent: u64,
    sparse: Vec<u64>,
    records: u64,
}

const CHUNK: usize = 4 << 20;

fn scan(store: &dyn Store, base: u64, capacity: u64) -> Result<Scan> {
    let file_len = store.len(base)?;
    // Frames lie within the segment's capacity: what is past it (in a file longer than its
    // header says) is never log data; valid markers there make the scan's stop damage.
    let data_end = file_len.min(capacity);
    let mut reader = SegmentReader::new(store, base, file_len, CHUNK);
    let mut s = Scan {
        base,
        capacity,
        file_len,
        end: SEGMENT_HEADER as u64,
        seal_end: None,
        first_record: None,
        first_prev_end: None,
        has_frames: false,
        claim_after_end: None,
        tail_extent: 0,
        sparse: vec![SEGMENT_HEADER as u64],
        records: 0,
    };
    let mut pos = SEGMENT_HEADER as u64;
    loop {
        if pos >= data_end {
            break;
        }
        // A length that would run past the capacity or the file is no record's: such a frame is
        // invalid without its bytes ever being read.
        let max_len = (data_end - pos).saturating_sub(FRAME_HEADER as u64).min(MAX_PAYLOAD as u64) as u32;
        let mut need = FRAME_HEADER;
        let frame = loop {
            let bytes = reader.get(pos, need)?;
            match decode(bytes, base + pos, max_len) {
                Frame::NeedMore { need: n } if bytes.len() >= n || bytes.len() < need => break Frame::Invalid,
                // Checked in pieces: a length read off the disk never sizes an allocation.
                Frame::NeedMore { need: n } if n > CHUNK => break checked_in_pieces(&mut reader, pos, n - FRAME_HEADER)?,
                Frame::NeedMore { need: n } => need = n,
                f => break f,
            }
        };
        let size = match frame {
            Frame::Record { len } => {
                s.records += 1;
                s.first_record.get_or_insert(pos);
                FRAME_HEADER as u64 + len as u64
            }
            Frame::Marker { prev_end, .. } => {
                if pos == SEGMENT_HEADER as u64 {
                    s.first_prev_end = Some(prev_end);
                }
                MARKER_LEN as u64
            }
            Frame::Seal => {
                s.seal_end = Some(pos + MARKER_LEN as u64);
                break;
            }
            _ => break,
        };
        s.has_frames = true;
        if pos >= s.sparse.last().unwrap() + SPARSE_GAP {
            s.sparse.push(pos);
        }
        pos += size;
        s.end = pos;
    }
    s.tail_extent = s.end;
    if s.end < file_len {
        (s.claim_after_end, s.tail_extent) = examine_tail(&mut reader, base, s.end)?;
    }
    Ok(s)
}

/// The record of `len` payload bytes at `pos`, its checksum computed a chunk at a time.
fn checked_in_pieces(reader: &mut SegmentReader, pos: u64, len: usize) -> Result<Frame> {
    let header = reader.get(pos, FRAME_HEADER)?;
    let (crc, len_field) = (read_u32(header, 0), read_u32(header, 4));
    let mut sum = crc32c::crc32c(&len_field.to_le_bytes());
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        let bytes = reader.get(pos + (FRAME_HEADER + done) as u64, n)?;
        if bytes.len() < n {
            return Ok(Frame::Invalid);
        }
        sum = crc32c::crc32c_append(sum, bytes);
        done += n;
    }
    Ok(if sum == crc { Frame::Record { len: len_field } } else { Frame::Invalid })
}

/// What lies from `from` to the end of the segment: the highest `durable_end` of the valid
/// commit markers there, and where its last non-zero byte ends (`from` if it is all zeros).
fn examine_tail(reader: &mut SegmentReader, base: u64, from: u64) -> Result<(Option<u64>, u64)> {
    let len = reader.size();
    let tags = [crate::frame::MARKER_TAG.to_le_bytes(), crate::frame::SEAL_TAG.to_le_bytes()];
    let mut extent = from;
    let mut claim: Option<u64> = None;
    let mut pos = from;
    while pos < len {
        let window = reader.get(pos, CHUNK)?.to_vec();
        if let Some(i) = window.iter().rposition(|&b| b != 0) {
            extent = extent.max(pos + i as u64 + 1);
        }
        // Markers that start in this window; the last MARKER_LEN - 1 starts are looked at again
        // with the next window.
        let starts = if pos + window.len() as u64 == len { window.len() } else { window.len().saturating_sub(MARKER_LEN - 1) };
        for i in 0..starts {
            if i + MARKER_LEN <= window.len() && tags.iter().any(|t| window[i + 4..i + 8] == t[..]) {
                if let Some(durable) = marker_at(&window[i..], base + pos + i as u64) {
                    claim = claim.max(Some(durable));
                }
            }
        }
        if starts == 0 {
            break;
        }
        pos += starts as u64;
    }
    Ok((claim, extent))
}

/// Segment `base`'s capacity from its header, or what is wrong with the header (an I/O error
/// reading it is the outer error).
fn read_header(store: &dyn Store, base: u64) -> Result<Result<u64>> {
    let mut buf = [0u8; SEGMENT_HEADER];
    let got = store.read_at(base, 0, &mut buf)?;
    Ok(decode_header(&buf[..got], base))
}

/// Scan the store and bring it to a consistent state: the returned state describes exactly the
/// valid log, and the store holds nothing beyond it.
pub fn recover(store: &dyn Store, new_capacity: u64, prealloc_step: u64, mode: RecoveryMode, read_only: bool) -> Result<(State, RecoveryReport)> {
    let prealloc = prealloc_step > 0;
    let prealloc_len = prealloc_step;
    let mut report = RecoveryReport::default();
    let bases = store.list()?;
    if bases.is_empty() {
        if read_only {
            return Err(WalError::new(crate::error::Code::NotFound, "no log here: the directory holds no segment files"));
        }
        let header = crate::segment::encode_header(0, new_capacity);
        store.create(0, &header, prealloc_len)?;
        let mut state = State::default();
        state.segs.insert(0, SegState::empty(new_capacity));
        state.refresh_bounds();
        report.segments = 1;
        return Ok((state, report));
    }

    // Headers, and the segments must join without gaps.
    let mut metas: Vec<(u64, u64)> = Vec::new();
    let mut damage: Option<(usize, u64, WalError)> = None; // (segment index, position, error)
    for (i, &base) in bases.iter().enumerate() {
        match read_header(store, base)? {
            Ok(capacity) => {
                if let Some(&(pb, pc)) = metas.last() {
                    if pb + pc != base {
                        damage = Some((i, 0, WalError::corrupt(&file_name(base), 0, &format!("segment does not follow {} (a segment is missing)", file_name(pb)))));
                        break;
                    }
                }
                metas.push((base, capacity));
            }
            Err(e) => {
                damage = Some((i, 0, e));
                break;
            }
        }
    }

    let mut scans = Vec::with_capacity(metas.len());
    for &(base, capacity) in &metas {
        scans.push(scan(store, base, capacity)?);
    }
    // A segment holds data if any valid frame survives in it, even past damage at its start.
    let data_last = scans.iter().rposition(|s| s.has_frames || s.claim_after_end.is_some());

    // Find the first damage among the segments that hold data: before any header damage (the
    // segments scanned all come before it), so it is the earlier one.
    if let Some(d) = data_last {
        for i in 0..=d {
            let s = &scans[i];
            let name = file_name(s.base);
            if s.claim_after_end.is_some_and(|durable| durable > s.base + s.end) {
                damage = Some((i, s.end, WalError::corrupt(&name, s.end, "damaged frame followed by valid data")));
                break;
            }
            if i < d {
                let next = &scans[i + 1];
                match next.first_prev_end {
                    Some(pe) if pe == s.base + s.end => {}
                    Some(_) => {
                        damage = Some((i, s.end, WalError::corrupt(&name, s.end, "segment ends before the data the next segment expects")));
                        break;
                    }
                    None => {
                        damage = Some((i + 1, SEGMENT_HEADER as u64, WalError::corrupt(&file_name(next.base), SEGMENT_HEADER as u64, "damaged first frame")));
                        break;
                    }
                }
            }
        }
    }

    let damaged = damage.is_some();
    // Keep segments [0, keep), the last of them cut at `cut`.
    let (mut keep, mut cut) = match damage {
        Some((i, pos, err)) => {
            if mode == RecoveryMode::Strict {
                return Err(err);
            }
            report.cut_reason = Some(err.message.clone());
            if i >= scans.len() {
                // A bad header or a gap: drop that segment and everything after it.
                match scans.len().checked_sub(1) {
                    Some(p) => (p + 1, scans[p].end),
                    None => (0, 0),
                }
            } else {
                (i + 1, pos)
            }
        }
        None => match data_last {
            Some(d) => (d + 1, scans[d].end),
            None => (1, SEGMENT_HEADER as u64),
        },
    };
    // Never keep an empty segment after one with data: the next write's marker must join the
    // previous segment's end.
    if keep > 1 && cut == SEGMENT_HEADER as u64 {
        keep -= 1;
        cut = scans[keep - 1].end;
    }
    if keep == 0 && read_only {
        return Err(WalError::new(crate::error::Code::Corrupt, report.cut_reason.unwrap_or_default()));
    }
    if keep == 0 {
        // The first segment itself is unreadable: in truncate mode nothing survives. Start an
        // empty log past every LSN the old one could have handed out (each segment's records
        // lie below its base plus its capacity, or, where its header is unreadable too, its
        // length), so LSNs keep growing.
        report.cut_at = Some(bases[0] + SEGMENT_HEADER as u64);
        let mut fresh = 0u64;
        for &base in &bases {
            let len = store.len(base)?;
            let capacity = read_header(store, base)?.unwrap_or(0);
            fresh = fresh.max(base.saturating_add(len.max(capacity)));
        }
        // Checked before anything is removed: a log that cannot go on below the largest LSN.
        if fresh > MAX_LSN - new_capacity {
            return Err(WalError::corrupt(&file_name(bases[0]), 0, "the damaged log's segments reach past the largest LSN: cannot start afresh after them"));
        }
        for &base in bases.iter().rev() {
            report.dropped_bytes += store.len(base)?.saturating_sub(SEGMENT_HEADER as u64);
            store.remove(base)?;
        }
        store.create(fresh, &crate::segment::encode_header(fresh, new_capacity), prealloc_len)?;
        let mut state = State::default();
        state.segs.insert(fresh, SegState::empty(new_capacity));
        state.refresh_bounds();
        report.segments = 1;
        return Ok((state, report));
    }

    let last_base = scans[keep - 1].base;
    // What goes: every later segment (newest first, so a crash part-way leaves a prefix), and
    // whatever follows `cut` in the last one kept. Zero-filled space is not a torn write.
    for &base in bases.iter().rev().filter(|&&b| b > last_base) {
        let len = store.len(base)?;
        let scan = scans.iter().find(|s| s.base == base);
        if damaged {
            report.dropped_bytes += len.saturating_sub(SEGMENT_HEADER as u64);
        } else if let Some(s) = scan {
            let extent = if prealloc { s.tail_extent } else { len };
            report.torn_bytes += extent.saturating_sub(SEGMENT_HEADER as u64);
        }
        if !read_only {
            store.remove(base)?;
        }
    }
    let last = &mut scans[keep - 1];
    // Neither zero-filled space (when segments are preallocated) nor the seal of a clean close is
    // a torn write: the next write goes over them.
    report.sealed = cut == last.end && last.seal_end.is_some();
    let clean_end = if cut == last.end { last.seal_end.unwrap_or(cut) } else { cut };
    let zero_beyond = prealloc && cut == last.end && last.tail_extent <= clean_end;
    if last.file_len > clean_end && !zero_beyond {
        // Count what was written there, not the zero-filled space around it.
        let extent = if prealloc && cut == last.end { last.tail_extent } else { last.file_len };
        let lost = extent.saturating_sub(clean_end);
        if damaged {
            report.dropped_bytes += lost;
        } else {
            report.torn_bytes += lost;
        }
        if !read_only {
            store.truncate(last.base, clean_end)?;
            store.sync(last.base)?;
        }
        if prealloc && !read_only {
            // Only after the cut is durable (see the committer's truncate_from).
            store.zero_fill(last.base, clean_end, (clean_end + prealloc_step).min(last.capacity))?;
            store.sync(last.base)?;
        }
        last.end = cut;
        last.sparse.retain(|&p| p < cut.max(SEGMENT_HEADER as u64 + 1));
        if last.first_record.is_some_and(|f| f >= cut) {
            last.first_record = None;
        }
    } else if !read_only {
        // What a killed process wrote and never synced reads back from the page cache as valid
        // frames: make it durable before anything is built on it (the next write's marker claims
        // it, or the next segment joins to it). Only the last segment can hold such bytes: one is
        // begun only once everything before it is durable. (A cut above has synced already.)
        store.sync(last.base)?;
    }
    if damaged {
        report.cut_at = Some(last.base + cut);
    }

    let mut state = State::default();
    for s in scans.into_iter().take(keep) {
        report.records += s.records;
        state.segs.insert(
            s.base,
            SegState { capacity: s.capacity, end: s.end, first_record: s.first_record, sparse: s.sparse },
        );
    }
    report.segments = keep as u64;
    state.refresh_bounds();
    Ok((state, report))
}
