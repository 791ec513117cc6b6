//! Group commit: one thread per log owns every write. It drains all queued commands at once,
//! writes every queued group behind one commit marker with one vectored write per segment, and
//! issues one durability barrier for all of them. Groups queued while a barrier runs form the
//! next batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Code, Result, WalError};
use crate::frame::{marker, read_u32, seal_record, FRAME_HEADER, MARKER_LEN, MARKER_TAG};
use crate::log::Log;
use crate::segment::{encode_header, SEGMENT_HEADER};
use crate::state::{SegState, SPARSE_GAP};

/// Called exactly once with the outcome of a command.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// The bytes of one group: frames `[crc placeholder][len][payload]` back to back. The committer
/// fills in the checksums in place, then writes the bytes as they are.
pub trait GroupBytes: AsRef<[u8]> + AsMut<[u8]> + Send {}
impl<T: AsRef<[u8]> + AsMut<[u8]> + Send> GroupBytes for T {}

/// One group: its frames may be spread over several chunks (no frame straddles two), so the
/// caller never has to copy bytes again to grow a buffer. Offsets count across the chunks.
pub type Group = Vec<Box<dyn GroupBytes>>;

pub enum Command {
    /// Resolves with `[bufferOffset, lsn]` pairs: the LSN of the record at each offset where
    /// the group starts or continues in a new segment.
    Append(Group, Done<Vec<f64>>),
    Sync(Done<()>),
    TruncateFrom(u64, Done<()>),
    /// Resolves with the new first LSN.
    TruncateBefore(u64, Done<u64>),
    Close(Done<()>),
}

impl Command {
    fn reject(self, err: WalError) {
        match self {
            Command::Append(_, d) => d(Err(err)),
            Command::Sync(d) | Command::TruncateFrom(_, d) | Command::Close(d) => d(Err(err)),
            Command::TruncateBefore(_, d) => d(Err(err)),
        }
    }
}

/// The longest the committer spins for the next command before it sleeps. A writer awaiting each
/// append returns within about this long (its completion wake-up plus a little JavaScript);
/// catching it spinning saves this thread's wake-up, a third of such an append's latency. Spinning
/// starts only after two such short waits in a row: an idle log, or one whose writers take longer
/// to come back, sleeps at once.
const SPIN_FOR: Duration = Duration::from_micros(60);

/// Poll `rx` for up to `limit`.
fn spin_recv(rx: &Receiver<Command>, limit: Duration) -> Option<Command> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(c) = rx.try_recv() {
            return Some(c);
        }
        std::hint::spin_loop();
    }
    None
}

pub fn spawn(log: Arc<Log>) -> Result<(Sender<Command>, JoinHandle<()>)> {
    let (tx, rx) = channel();
    let writer = Writer::new(log)?;
    let handle = std::thread::Builder::new()
        .name("sturdy-committer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| WalError::io("starting the committer thread", e))?;
    Ok((tx, handle))
}

fn internal(what: &str) -> WalError {
    WalError::new(Code::Io, format!("internal error in the committer ({what}); the log is poisoned"))
}

struct Writer {
    log: Arc<Log>,
    base: u64,
    capacity: u64,
    end: u64,
    last_sparse: u64,
    prepared: Option<(u64, JoinHandle<Result<()>>)>,
    /// The active segment is zero-filled up to here (a hint: only speed depends on it).
    zeroed: u64,
    /// A background zero-fill of `[from, to)` in the active segment.
    filling: Option<(u64, u64, JoinHandle<Result<()>>)>,
    /// The next zero-fill's size: it doubles while the log keeps writing, up to PREALLOC_MAX.
    fill_step: u64,
}

enum Piece {
    Marker(usize),
    Bytes { group: usize, chunk: usize, from: usize, to: usize },
}

struct SegmentWrite {
    base: u64,
    capacity: u64,
    pos: u64,
    pieces: Vec<Piece>,
    end: u64,
    first_record: Option<u64>,
    sparse: Vec<u64>,
}

impl Writer {
    fn new(log: Arc<Log>) -> Result<Writer> {
        let (base, capacity, end, last_sparse) = {
            let st = log.state();
            let (&base, seg) = st.segs.iter().next_back().expect("a log always has a segment");
            (base, seg.capacity, seg.end, *seg.sparse.last().unwrap())
        };
        let zeroed = log.store.len(base)?;
        let fill_step = log.opts.prealloc_step();
        let mut w = Writer { log, base, capacity, end, last_sparse, prepared: None, zeroed, filling: None, fill_step };
        w.prepare_next();
        Ok(w)
    }

    fn run(mut self, rx: Receiver<Command>) {
        let mut closing: Option<Done<()>> = None;
        // Consecutive short waits for work: a writer that keeps coming straight back (one awaiting
        // each append) is met by a short spin instead of a sleep and a wake-up.
        let mut short_gaps = 0u32;
        while closing.is_none() {
            let idle_from = Instant::now();
            let first = if short_gaps >= 2 {
                spin_recv(&rx, SPIN_FOR)
            } else {
                None
            };
            let first = match first {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            short_gaps = if idle_from.elapsed() <= SPIN_FOR { short_gaps.saturating_add(1) } else { 0 };
            let mut appends: Vec<(Group, Done<Vec<f64>>)> = Vec::new();
            let mut queue = vec![first];
            while let Ok(c) = rx.try_recv() {
                queue.push(c);
            }
            for cmd in queue {
                if closing.is_some() {
                    cmd.reject(WalError::new(Code::Closed, "the log is closed"));
                    continue;
                }
                match cmd {
                    Command::Append(bytes, done) => appends.push((bytes, done)),
                    Command::Close(done) => {
                        self.flush(std::mem::take(&mut appends));
                        closing = Some(done);
                    }
                    other => {
                        self.flush(std::mem::take(&mut appends));
                        self.control(other);
                    }
                }
            }
            self.flush(appends);
        }
        self.log.mark_closed();
        if let Some((_, h)) = self.prepared.take() {
            let _ = h.join();
        }
        let _ = self.finish_fill(0);
        while let Ok(c) = rx.try_recv() {
            c.reject(WalError::new(Code::Closed, "the log is closed"));
        }
        self.log.store.close();
        if let Some(done) = closing {
            done(Ok(()));
        }
    }

    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if let Some(p) = self.log.poisoned() {
            return Err(WalError::poisoned(&p));
        }
        let out = match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(_) => Err(internal(what)),
        };
        if let Err(e) = &out {
            if e.code == Code::Io || e.code == Code::Poisoned {
                self.log.set_poison(e);
            }
        }
        out
    }

    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::Sync(done) => done(self.guarded("sync", |w| w.log.store.sync(w.base).map_err(|e| WalError::poisoned(&e)))),
            Command::TruncateFrom(lsn, done) => done(self.guarded("truncateFrom", |w| w.truncate_from(lsn))),
            Command::TruncateBefore(lsn, done) => done(self.guarded("truncateBefore", |w| w.truncate_before(lsn))),
            Command::Append(..) | Command::Close(_) => unreachable!("handled by run"),
        }
    }

    fn flush(&mut self, appends: Vec<(Group, Done<Vec<f64>>)>) {
        if appends.is_empty() {
            return;
        }
        let max = self.log.opts.max_record_bytes;
        let mut groups = Vec::with_capacity(appends.len());
        let mut dones = Vec::with_capacity(appends.len());
        for (mut group, done) in appends {
            match group.iter_mut().try_for_each(|c| seal_group(c.as_mut().as_mut(), max)) {
                Ok(()) => {
                    groups.push(group);
                    dones.push(done);
                }
                Err(e) => done(Err(e)),
            }
        }
        match self.guarded("append", |w| w.write_epoch(&groups)) {
            Ok(placements) => {
                for (done, p) in dones.into_iter().zip(placements) {
                    done(Ok(p));
                }
            }
            Err(e) => {
                for done in dones {
                    done(Err(e.clone()));
                }
            }
        }
        // Drop the groups' bytes here, after every promise has its answer.
        drop(groups);
    }

    /// Lay the groups out (rotating segments as needed), write them, make them durable, and
    /// only then publish the new end to readers.
    fn write_epoch(&mut self, groups: &[Group]) -> Result<Vec<Vec<f64>>> {
        let seg_bytes = self.log.opts.segment_bytes;
        let mut markers: Vec<[u8; MARKER_LEN]> = Vec::new();
        let mut writes: Vec<SegmentWrite> = Vec::new();
        let mut placements: Vec<Vec<f64>> = Vec::with_capacity(groups.len());

        fn open_write(writes: &mut Vec<SegmentWrite>, markers: &mut Vec<[u8; MARKER_LEN]>, base: u64, capacity: u64, pos: u64, prev_end: u64, last_sparse: u64) {
            markers.push(marker(base + pos, prev_end));
            let mut sparse = Vec::new();
            if pos >= last_sparse + SPARSE_GAP {
                sparse.push(pos);
            }
            writes.push(SegmentWrite {
                base,
                capacity,
                pos,
                pieces: vec![Piece::Marker(markers.len() - 1)],
                end: pos + MARKER_LEN as u64,
                first_record: None,
                sparse,
            });
        }
        // Start in the active segment, or in the next one when the marker and the first record
        // do not fit (a marker never goes past a segment's capacity).
        let first_size = groups.iter().flatten().map(|c| c.as_ref().as_ref()).find(|c| !c.is_empty()).map(|c| FRAME_HEADER as u64 + read_u32(c, 4) as u64);
        let Some(first_size) = first_size else {
            return Ok(groups.iter().map(|_| Vec::new()).collect()); // nothing to write
        };
        let prev_end = self.end_lsn();
        let mut last_sparse = if self.end + MARKER_LEN as u64 + first_size <= self.capacity {
            open_write(&mut writes, &mut markers, self.base, self.capacity, self.end, prev_end, self.last_sparse);
            writes[0].sparse.last().copied().unwrap_or(self.last_sparse)
        } else {
            open_write(&mut writes, &mut markers, self.base + self.capacity, seg_bytes, SEGMENT_HEADER as u64, prev_end, 0);
            SEGMENT_HEADER as u64
        };

        for (g, group) in groups.iter().enumerate() {
            let mut anchors = Vec::with_capacity(2);
            let mut need_anchor = true;
            let mut chunk_start = 0usize; // offset of this chunk within the group
            for (c, bytes) in group.iter().enumerate() {
                let bytes = bytes.as_ref().as_ref();
                let mut run_from = 0;
                let mut at = 0;
                while at < bytes.len() {
                    let size = FRAME_HEADER as u64 + read_u32(bytes, at + 4) as u64;
                    let w = writes.last_mut().unwrap();
                    if w.end + size > w.capacity {
                        if at > run_from {
                            w.pieces.push(Piece::Bytes { group: g, chunk: c, from: run_from, to: at });
                        }
                        let (base, prev_end) = (w.base + w.capacity, w.base + w.end);
                        open_write(&mut writes, &mut markers, base, seg_bytes, SEGMENT_HEADER as u64, prev_end, 0);
                        last_sparse = SEGMENT_HEADER as u64;
                        run_from = at;
                        need_anchor = true;
                    }
                    let w = writes.last_mut().unwrap();
                    if need_anchor {
                        anchors.push((chunk_start + at) as f64);
                        anchors.push((w.base + w.end) as f64);
                        need_anchor = false;
                    }
                    w.first_record.get_or_insert(w.end);
                    if w.end >= last_sparse + SPARSE_GAP {
                        w.sparse.push(w.end);
                        last_sparse = w.end;
                    }
                    w.end += size;
                    at += size as usize;
                }
                if at > run_from {
                    writes.last_mut().unwrap().pieces.push(Piece::Bytes { group: g, chunk: c, from: run_from, to: at });
                }
                chunk_start += bytes.len();
            }
            placements.push(anchors);
        }

        for w in &writes {
            if w.base != self.base {
                self.finish_fill(0)?;
                self.enter_segment(w.base)?;
            } else {
                self.finish_fill(w.end)?;
            }
            let iov: Vec<&[u8]> = w
                .pieces
                .iter()
                .map(|p| match *p {
                    Piece::Marker(i) => &markers[i][..],
                    Piece::Bytes { group, chunk, from, to } => &groups[group][chunk].as_ref().as_ref()[from..to],
                })
                .collect();
            self.log.store.write_at(w.base, w.pos, &iov)?;
            self.log.store.sync(w.base).map_err(|e| WalError::poisoned(&e))?;
        }

        let mut st = self.log.state.write().unwrap_or_else(|p| p.into_inner());
        for w in &writes {
            let seg = st.segs.entry(w.base).or_insert_with(|| SegState::empty(w.capacity));
            seg.end = w.end;
            if seg.first_record.is_none() {
                seg.first_record = w.first_record;
            }
            seg.sparse.extend(w.sparse.iter().copied().filter(|&p| p > SEGMENT_HEADER as u64));
        }
        st.refresh_bounds();
        let last = writes.last().unwrap();
        self.base = last.base;
        self.capacity = last.capacity;
        self.end = last.end;
        self.last_sparse = last_sparse;
        drop(st);
        self.extend_zeroes()?;
        Ok(placements)
    }

    /// Where the log ends: the LSN the next commit marker names as `prev_end`. An empty active
    /// segment continues where the segment before it ends.
    fn end_lsn(&self) -> u64 {
        if self.end == SEGMENT_HEADER as u64 {
            if let Some((b, s)) = self.log.state().segs.range(..self.base).next_back() {
                return b + s.end;
            }
        }
        self.base + self.end
    }

    /// Keep zero-filled space ahead of the writer: when less than half a step is left, fill the
    /// next step in the background (inline on a simulated disk, for determinism).
    fn extend_zeroes(&mut self) -> Result<()> {
        let step = self.fill_step;
        if step == 0 || self.filling.is_some() || self.zeroed >= self.capacity || self.zeroed >= self.end + step / 2 {
            return Ok(());
        }
        self.fill_step = (step * 2).min(crate::log::PREALLOC_MAX);
        let from = self.zeroed.max(self.end);
        let to = (from + step).min(self.capacity);
        let (store, base) = (self.log.store.clone(), self.base);
        let fill = move || {
            store.zero_fill(base, from, to)?;
            store.sync(base)
        };
        if !self.log.store.prepares_in_background() {
            fill().map_err(|e| WalError::poisoned(&e))?;
            self.zeroed = to;
            return Ok(());
        }
        // Without a thread, the log simply appends past the zeroed space.
        if let Ok(h) = std::thread::Builder::new().name("sturdy-zero-fill".into()).spawn(fill) {
            self.filling = Some((from, to, h));
        }
        Ok(())
    }

    /// Wait for a background zero-fill that a write ending at `write_end` would run into (any
    /// fill when `write_end` is 0). A failed fill poisons the log: its barrier shares the file
    /// with ours, and a reported write-back error is not reported twice.
    fn finish_fill(&mut self, write_end: u64) -> Result<()> {
        let overlaps = matches!(&self.filling, Some((from, _, _)) if write_end == 0 || write_end > *from);
        if !overlaps {
            return Ok(());
        }
        let (_, to, h) = self.filling.take().unwrap();
        h.join().map_err(|_| internal("zero-fill"))?.map_err(|e| WalError::poisoned(&e))?;
        self.zeroed = self.zeroed.max(to);
        Ok(())
    }

    /// Start creating the segment after the active one in the background.
    fn prepare_next(&mut self) {
        if self.prepared.is_some() || !self.log.store.prepares_in_background() {
            return;
        }
        let base = self.base + self.capacity;
        let store = self.log.store.clone();
        let capacity = self.log.opts.segment_bytes;
        let prealloc = self.log.opts.prealloc_step();
        let handle = std::thread::Builder::new()
            .name("sturdy-segment".into())
            .spawn(move || store.create(base, &encode_header(base, capacity), prealloc));
        match handle {
            Ok(h) => self.prepared = Some((base, h)),
            Err(_) => self.prepared = None, // created on demand instead
        }
    }

    /// Make `base` (the segment after the active one) the active segment.
    fn enter_segment(&mut self, base: u64) -> Result<()> {
        let ready = match self.prepared.take() {
            Some((b, h)) if b == base => h.join().map_err(|_| internal("segment preparation"))?,
            Some((_, h)) => {
                let _ = h.join();
                Err(internal("prepared the wrong segment"))
            }
            None => self.log.store.create(base, &encode_header(base, self.log.opts.segment_bytes), self.log.opts.prealloc_step()),
        };
        ready?;
        self.base = base;
        self.capacity = self.log.opts.segment_bytes;
        self.end = SEGMENT_HEADER as u64;
        self.zeroed = self.log.opts.prealloc_step().max(SEGMENT_HEADER as u64);
        self.last_sparse = SEGMENT_HEADER as u64;
        self.prepare_next();
        Ok(())
    }

    /// Cancel a background preparation and remove what it made.
    fn discard_prepared(&mut self) -> Result<()> {
        if let Some((b, h)) = self.prepared.take() {
            let _ = h.join();
            self.log.store.remove(b)?;
        }
        Ok(())
    }

    fn truncate_from(&mut self, lsn: u64) -> Result<()> {
        let (first, next) = self.log.bounds();
        if lsn == next {
            return Ok(());
        }
        if lsn < first || lsn > next {
            return Err(WalError::invalid(format!("truncateFrom({lsn}): the log holds LSNs [{first}, {next})")));
        }
        let (base, pos, _) = self.log.locate(lsn).map_err(|e| if e.code == Code::NotFound { WalError::invalid(e.message) } else { e })?;
        self.finish_fill(0)?;
        // Later segments go first, newest first: a crash part-way leaves a prefix of the log.
        let later: Vec<u64> = self.log.state().segs.range(base + 1..).map(|(b, _)| *b).rev().collect();
        if !later.is_empty() {
            self.discard_prepared()?;
        }
        for b in later {
            self.log.store.remove(b)?;
            self.log.state.write().unwrap_or_else(|p| p.into_inner()).segs.remove(&b);
        }
        self.log.store.truncate(base, pos)?;
        self.log.store.sync(base).map_err(|e| WalError::poisoned(&e))?;
        if self.log.opts.preallocate {
            // Zero-fill the rest again so later barriers stay cheap — only once the cut is
            // durable: zeros landing over old frames before it would look like damage.
            let capacity = self.log.state().segs[&base].capacity;
            let to = (pos + self.log.opts.prealloc_step()).min(capacity);
            self.log.store.zero_fill(base, pos, to)?;
            self.log.store.sync(base).map_err(|e| WalError::poisoned(&e))?;
            self.zeroed = to;
        } else {
            self.zeroed = pos;
        }
        let mut st = self.log.state.write().unwrap_or_else(|p| p.into_inner());
        let seg = st.segs.get_mut(&base).expect("segment of a located record");
        seg.end = pos;
        seg.sparse.retain(|&p| p < pos || p == SEGMENT_HEADER as u64);
        if seg.first_record.is_some_and(|f| f >= pos) {
            seg.first_record = None;
        }
        self.base = base;
        self.capacity = seg.capacity;
        self.end = pos;
        self.last_sparse = *seg.sparse.last().unwrap();
        st.refresh_bounds();
        drop(st);
        self.prepare_next();
        Ok(())
    }

    fn truncate_before(&mut self, lsn: u64) -> Result<u64> {
        // A segment goes when every record in it lies below `lsn`: its data ends at or before
        // `lsn`, or `lsn` falls inside its last record.
        let candidates: Vec<(u64, u64)> = {
            let st = self.log.state();
            st.segs.iter().filter(|(&b, _)| b != self.base && b + SEGMENT_HEADER as u64 <= lsn).map(|(b, s)| (*b, b + s.end)).collect()
        };
        let mut doomed = Vec::new();
        for (b, end) in candidates {
            if end <= lsn || self.log.last_record(b)?.is_none_or(|last| last < lsn) {
                doomed.push(b);
            } else {
                break;
            }
        }
        // Oldest first, each removal durable before the next: a crash leaves a suffix.
        for b in doomed {
            self.log.store.remove(b)?;
            let mut st = self.log.state.write().unwrap_or_else(|p| p.into_inner());
            st.segs.remove(&b);
            st.refresh_bounds();
        }
        Ok(self.log.bounds().0)
    }
}

/// Check a group's frames tile it exactly and respect the record limit, then seal them.
fn seal_group(bytes: &mut [u8], max: u32) -> Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        if at + FRAME_HEADER > bytes.len() {
            return Err(WalError::invalid("malformed group: truncated frame header"));
        }
        let len = read_u32(bytes, at + 4);
        if len == MARKER_TAG || len > max {
            return Err(WalError::new(Code::RecordTooLarge, format!("record of {len} bytes exceeds maxRecordBytes ({max})")));
        }
        let end = at + FRAME_HEADER + len as usize;
        if end > bytes.len() {
            return Err(WalError::invalid("malformed group: frame runs past the buffer"));
        }
        seal_record(&mut bytes[at..end]);
        at = end;
    }
    Ok(())
}
