//! Group commit. The committer takes all queued commands at once, writes every queued group
//! behind one commit marker with one vectored write, and issues one durability barrier for them:
//! an *epoch*.
//!
//! When commands keep arriving while barriers run, two worker threads take turns as the writer,
//! so writing the next epoch overlaps the barrier of the last: a worker holds the writer while it
//! gathers and writes an epoch, then lets go of it and waits for that epoch's barrier; the other
//! worker meanwhile gathers and writes the next. A log whose callers wait for each barrier before
//! sending more (one writer awaiting each append) gains nothing from that and would pay a thread
//! wake-up per epoch, so there one worker writes and syncs each epoch itself.
//! Epochs still finish — become visible to readers and answer their callers — strictly in the
//! order they were written, and a failed barrier fails every epoch after it. Each marker records
//! how much of the log was durable when it was written, which is what lets recovery tell a torn
//! in-flight write from damage (see `frame`). A new segment is begun only once everything before
//! it is durable, and control commands (sync, truncation, close) wait for every earlier epoch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Code, Result, WalError};
use crate::frame::{marker, read_u32, seal, seal_record, FRAME_HEADER, MARKER_LEN, MARKER_TAG};
use crate::log::{Log, Options};
use crate::segment::{encode_header, SEGMENT_HEADER};
use crate::state::{SegState, SPARSE_GAP};
use crate::store::Store;

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
    pub fn reject(self, err: WalError) {
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

/// Start the committer: two workers, or one on a simulated disk (whose operations must happen
/// in one deterministic order). Returns its command channel; the workers end with `Close` or
/// once every sender is gone.
pub fn spawn(log: Arc<Log>) -> Result<Sender<Command>> {
    let (tx, rx) = channel();
    let workers = if log.store.prepares_in_background() { 2 } else { 1 };
    let slot = Arc::new(Mutex::new(Some(Writer::new(log, rx, workers > 1)?)));
    for started in 0..workers {
        let slot = slot.clone();
        match std::thread::Builder::new().name("sturdy-committer".into()).spawn(move || work(&slot)) {
            Ok(_) => {}
            // One worker is enough to be correct; a second only overlaps barriers.
            Err(_) if started > 0 => break,
            Err(e) => return Err(WalError::io("starting the committer thread", e)),
        }
    }
    Ok(tx)
}

/// A worker: take the writer, gather and write an epoch, let go of the writer, and finish the
/// epoch (its barrier, then, in turn, its publication and answers) while the other worker writes.
fn work(slot: &Mutex<Option<Writer>>) {
    // Held across steps: the other worker sleeps on this lock, unwoken, until an epoch is left
    // syncing.
    let mut writer = slot.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let Some(w) = writer.as_mut() else {
            return; // closed by the other worker
        };
        match w.step() {
            Step::More => {}
            Step::Syncing(epoch) => {
                drop(writer);
                epoch.finish();
                writer = slot.lock().unwrap_or_else(|p| p.into_inner());
            }
            Step::Closed(done) => {
                let w = writer.take().expect("checked above");
                drop(writer);
                w.close(done);
                return;
            }
        }
    }
}

/// Epochs finish in the order they were written: epoch `n` waits until `finished == n`.
#[derive(Default)]
struct Turns {
    finished: Mutex<u64>,
    changed: Condvar,
}

impl Turns {
    fn finished(&self) -> u64 {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until every epoch before `seq` has finished.
    fn wait_for(&self, seq: u64) {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        while *finished < seq {
            finished = self.changed.wait(finished).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn end(&self, seq: u64) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = seq + 1;
        self.changed.notify_all();
    }
}

enum Step {
    More,
    /// An epoch is written; its barrier and the rest are for the worker that wrote it.
    Syncing(Epoch),
    Closed(Option<Done<()>>),
}

/// What writing an epoch left to do.
enum Written {
    /// Already durable and published (a new segment, or no second worker): only answer.
    Durable(Vec<Vec<f64>>),
    /// Written to the active segment: the barrier and publication are still to come.
    Pending(Vec<Vec<f64>>, SegmentWrite),
}

/// One epoch on its way to its callers.
struct Epoch {
    seq: u64,
    log: Arc<Log>,
    turns: Arc<Turns>,
    written: Result<Written>,
    dones: Vec<Done<Vec<f64>>>,
    /// The bytes stay alive until every caller has its answer.
    groups: Vec<Group>,
}

impl Epoch {
    fn finish(self) {
        let Epoch { seq, log, turns, written, dones, groups } = self;
        let synced = written.and_then(|w| match w {
            Written::Durable(placements) => Ok((placements, None)),
            Written::Pending(placements, write) => barrier(&log, write.base).map(|()| (placements, Some(write))),
        });
        turns.wait_for(seq);
        // A failed barrier before this one may have dropped pages that this barrier never saw.
        let outcome = synced.and_then(|x| match log.poisoned() {
            Some(p) => Err(WalError::poisoned(&p)),
            None => Ok(x),
        });
        match outcome {
            Ok((placements, write)) => {
                if let Some(write) = write {
                    publish(&log, std::slice::from_ref(&write));
                }
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
        drop(groups);
        turns.end(seq);
    }
}

/// Run `f` on an unpoisoned log; an I/O failure or a panic in it poisons the log.
fn guard<T>(log: &Log, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(p) = log.poisoned() {
        return Err(WalError::poisoned(&p));
    }
    let out = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(internal(what)));
    if let Err(e) = &out {
        if e.code == Code::Io || e.code == Code::Poisoned {
            log.set_poison(e);
        }
    }
    out
}

/// The durability barrier for segment `base`.
fn barrier(log: &Log, base: u64) -> Result<()> {
    guard(log, "sync", || log.store.sync(base).map_err(|e| WalError::poisoned(&e)))
}

/// Make durable writes visible to readers.
fn publish(log: &Log, writes: &[SegmentWrite]) {
    let mut st = log.state.write().unwrap_or_else(|p| p.into_inner());
    for w in writes {
        let seg = st.segs.entry(w.base).or_insert_with(|| SegState::empty(w.capacity));
        seg.end = w.end;
        if seg.first_record.is_none() {
            seg.first_record = w.first_record;
        }
        seg.sparse.extend(w.sparse.iter().copied().filter(|&p| p > SEGMENT_HEADER as u64));
    }
    st.refresh_bounds();
}

fn internal(what: &str) -> WalError {
    WalError::new(Code::Io, format!("internal error in the committer ({what}); the log is poisoned"))
}

struct Writer {
    log: Arc<Log>,
    rx: Receiver<Command>,
    turns: Arc<Turns>,
    /// Whether a second worker can overlap barriers (otherwise every epoch is synced at once).
    overlap: bool,
    /// The next epoch's number.
    seq: u64,
    /// Consecutive short waits for work: a writer that keeps coming straight back (one awaiting
    /// each append) is met by a short spin instead of a sleep and a wake-up.
    short_gaps: u32,
    /// The commands being handled were sent while an earlier barrier ran: more will likely come
    /// during this epoch's, so let the other worker take them.
    backlog: bool,
    base: u64,
    capacity: u64,
    end: u64,
    last_sparse: u64,
    prepared: Option<(u64, Prep)>,
    /// The active segment is zero-filled up to here (a hint: only speed depends on it).
    zeroed: u64,
    /// The prepared segment is zero-filled up to here (0: not yet known).
    next_zeroed: u64,
    /// A background zero-fill, in the active segment or the prepared one.
    filling: Option<Fill>,
    /// The next zero-fill's size: it doubles while the log keeps writing, up to PREALLOC_MAX.
    fill_step: u64,
    /// Recent epochs' size in bytes (a moving average): zero-filling pays only for small ones.
    epoch_bytes: u64,
    /// The log was written or cut since it opened, or was not sealed then: close seals it (see
    /// `seal`).
    changed: bool,
}

enum Piece {
    /// The epoch's marker for this segment (all markers are built once the layout is known).
    Marker,
    Bytes { group: usize, chunk: usize, from: usize, to: usize },
}

/// The segment after the active one, created in the background.
enum Prep {
    Creating(JoinHandle<Result<()>>),
    Created(Result<()>),
}

impl Prep {
    fn wait(self) -> Result<()> {
        match self {
            Prep::Creating(h) => h.join().map_err(|_| internal("segment preparation"))?,
            Prep::Created(r) => r,
        }
    }
}

/// A zero-fill of `[from, to)` in segment `base` on a background thread, which stops early (at a
/// piece boundary) once asked to and returns how far it got.
struct Fill {
    base: u64,
    from: u64,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<u64>>,
}

/// Zero-fills go in pieces of this size, so that a fill asked to stop stops soon.
const FILL_PIECE: u64 = 1 << 20;

/// How far a newly created segment is zero-filled: its header and the first preallocation step.
fn zeroed_at_creation(opts: &Options) -> u64 {
    opts.prealloc_step().max(SEGMENT_HEADER as u64)
}

/// Zero-fill `[from, to)` of segment `base` piece by piece until done or `stop`ped, then make it
/// durable. Returns where the filled space ends.
fn fill_zeros(store: &dyn Store, base: u64, from: u64, to: u64, stop: &AtomicBool) -> Result<u64> {
    let mut at = from;
    while at < to && !stop.load(Ordering::Relaxed) {
        // Pieces end on FILL_PIECE boundaries: a direct fill leaves the partial blocks at a
        // piece's edges alone, which must not leave gaps between pieces.
        let next = ((at / FILL_PIECE + 1) * FILL_PIECE).min(to);
        store.zero_fill(base, at, next)?;
        at = next;
    }
    // Through a descriptor of its own: a write-back error stays for the barriers to report.
    store.sync_apart(base)?;
    Ok(at)
}

struct SegmentWrite {
    base: u64,
    capacity: u64,
    pos: u64,
    /// Where the log ended before this write (the marker's `prev_end`).
    prev_end: u64,
    pieces: Vec<Piece>,
    end: u64,
    first_record: Option<u64>,
    sparse: Vec<u64>,
}

impl Writer {
    fn new(log: Arc<Log>, rx: Receiver<Command>, overlap: bool) -> Result<Writer> {
        let (base, capacity, end, last_sparse) = {
            let st = log.state();
            let (&base, seg) = st.segs.iter().next_back().expect("a log always has a segment");
            (base, seg.capacity, seg.end, *seg.sparse.last().unwrap())
        };
        let zeroed = log.store.len(base)?;
        let fill_step = log.opts.prealloc_step();
        let log_sealed = log.report.sealed;
        let next_zeroed = zeroed_at_creation(&log.opts);
        let mut w = Writer {
            log,
            rx,
            turns: Arc::new(Turns::default()),
            overlap,
            seq: 0,
            short_gaps: 0,
            backlog: false,
            base,
            capacity,
            end,
            last_sparse,
            prepared: None,
            zeroed,
            next_zeroed,
            filling: None,
            fill_step,
            epoch_bytes: 0,
            // Not sealed when opened (a crash, say): the last write before it has nothing after it
            // to vouch for it, so close seals even if nothing is written meanwhile.
            changed: !log_sealed,
        };
        w.prepare_next();
        Ok(w)
    }

    /// Gather the queued commands and carry them out; appends after the last control command
    /// become an epoch that may be left syncing.
    fn step(&mut self) -> Step {
        let idle_from = Instant::now();
        let first = match self.rx.try_recv() {
            Ok(c) => {
                self.backlog = true; // queued during the last barrier
                c
            }
            Err(_) => {
                let first = if self.short_gaps >= 2 { spin_recv(&self.rx, SPIN_FOR) } else { None };
                let Some(first) = first.or_else(|| self.rx.recv().ok()) else {
                    return Step::Closed(None); // every handle is gone
                };
                self.backlog = self.turns.finished() < self.seq; // sent while the other worker syncs
                first
            }
        };
        self.short_gaps = if idle_from.elapsed() <= SPIN_FOR { self.short_gaps.saturating_add(1) } else { 0 };
        let mut queue = vec![first];
        while let Ok(c) = self.rx.try_recv() {
            queue.push(c);
        }
        let mut appends: Vec<(Group, Done<Vec<f64>>)> = Vec::new();
        let mut queue = queue.into_iter();
        while let Some(cmd) = queue.next() {
            match cmd {
                Command::Append(bytes, done) => appends.push((bytes, done)),
                Command::Close(done) => {
                    self.commit_now(std::mem::take(&mut appends));
                    for c in queue {
                        c.reject(WalError::new(Code::Closed, "the log is closed"));
                    }
                    return Step::Closed(Some(done));
                }
                other => {
                    self.commit_now(std::mem::take(&mut appends));
                    self.turns.wait_for(self.seq);
                    self.control(other);
                }
            }
        }
        self.commit(appends)
    }

    /// Once every epoch has finished: release the log and answer `close`.
    fn close(mut self, done: Option<Done<()>>) {
        self.turns.wait_for(self.seq);
        self.log.mark_closed();
        let _ = self.finish_fill(0);
        self.seal();
        if let Some((_, prep)) = self.prepared.take() {
            let _ = prep.wait();
        }
        while let Ok(c) = self.rx.try_recv() {
            c.reject(WalError::new(Code::Closed, "the log is closed"));
        }
        self.log.store.close();
        if let Some(done) = done {
            done(Ok(()));
        }
    }

    /// On close, vouch for everything written with a seal just past the end (see `frame`).
    /// Damage in the newest epoch otherwise reads as a torn write on the next open (no later
    /// marker says it was durable), and its acknowledged records would be cut without a word. A
    /// log only read (or whose open failed) is left exactly as it was.
    fn seal(&mut self) {
        // Not in an empty segment: the seal would be its first frame, where recovery expects the
        // marker that joins it to the segment before.
        let room = self.end > SEGMENT_HEADER as u64 && self.end + MARKER_LEN as u64 <= self.capacity;
        if !self.changed || !room || self.log.poisoned().is_some() {
            return; // nothing new, or no room: the next epoch's marker will vouch for it
        }
        // Best effort: every acknowledged record is durable already, and a seal that fails to land
        // (a full disk, say) only leaves a torn tail, which recovery cuts.
        let _ = self.log.store.write_at(self.base, self.end, &[&seal(self.base + self.end)]).and_then(|()| self.log.store.sync(self.base));
    }

    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let log = self.log.clone();
        guard(&log, what, || f(self))
    }

    fn control(&mut self, cmd: Command) {
        match cmd {
            Command::Sync(done) => done(barrier(&self.log, self.base)),
            Command::TruncateFrom(lsn, done) => done(self.guarded("truncateFrom", |w| w.truncate_from(lsn))),
            Command::TruncateBefore(lsn, done) => done(self.guarded("truncateBefore", |w| w.truncate_before(lsn))),
            Command::Append(..) | Command::Close(_) => unreachable!("handled by step"),
        }
    }

    /// Commit appends and finish the epoch here, before anything else happens.
    fn commit_now(&mut self, appends: Vec<(Group, Done<Vec<f64>>)>) {
        if let Step::Syncing(epoch) = self.commit(appends) {
            epoch.finish();
        }
    }

    /// Seal and write the groups as one epoch. Returns it still syncing when its barrier can
    /// overlap the next epoch's write.
    fn commit(&mut self, appends: Vec<(Group, Done<Vec<f64>>)>) -> Step {
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
        if groups.is_empty() {
            return Step::More;
        }
        let seq = self.seq;
        self.seq += 1;
        let written = self.guarded("append", |w| w.write_epoch(&groups, seq));
        let syncing = self.backlog && matches!(written, Ok(Written::Pending(..)));
        let epoch = Epoch { seq, log: self.log.clone(), turns: self.turns.clone(), written, dones, groups };
        if syncing {
            return Step::Syncing(epoch);
        }
        epoch.finish();
        Step::More
    }

    /// Lay epoch `seq` out (rotating segments as needed) and write it. Within the active segment,
    /// with a second worker, that is all: the barrier is left to the caller. Otherwise wait for
    /// every earlier epoch, then make this one durable and publish it to readers.
    fn write_epoch(&mut self, groups: &[Group], seq: u64) -> Result<Written> {
        let seg_bytes = self.log.opts.segment_bytes;
        let mut writes: Vec<SegmentWrite> = Vec::new();
        let mut placements: Vec<Vec<f64>> = Vec::with_capacity(groups.len());

        fn open_write(writes: &mut Vec<SegmentWrite>, base: u64, capacity: u64, pos: u64, prev_end: u64, last_sparse: u64) {
            let mut sparse = Vec::new();
            if pos >= last_sparse + SPARSE_GAP {
                sparse.push(pos);
            }
            writes.push(SegmentWrite {
                base,
                capacity,
                pos,
                prev_end,
                pieces: vec![Piece::Marker],
                end: pos + MARKER_LEN as u64,
                first_record: None,
                sparse,
            });
        }
        // Start in the active segment, or in the next one when the marker and the first record
        // do not fit (a marker never goes past a segment's capacity).
        let first_size = groups.iter().flatten().map(|c| c.as_ref().as_ref()).find(|c| !c.is_empty()).map(|c| FRAME_HEADER as u64 + read_u32(c, 4) as u64);
        let Some(first_size) = first_size else {
            return Ok(Written::Durable(groups.iter().map(|_| Vec::new()).collect())); // nothing to write
        };
        let prev_end = self.end_lsn();
        let mut last_sparse = if self.end + MARKER_LEN as u64 + first_size <= self.capacity {
            open_write(&mut writes, self.base, self.capacity, self.end, prev_end, self.last_sparse);
            writes[0].sparse.last().copied().unwrap_or(self.last_sparse)
        } else {
            open_write(&mut writes, self.base + self.capacity, seg_bytes, SEGMENT_HEADER as u64, prev_end, 0);
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
                        open_write(&mut writes, base, seg_bytes, SEGMENT_HEADER as u64, prev_end, 0);
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

        // Overlap this barrier with the next write only within the active segment: recovery
        // needs every segment before the last to be complete and durable.
        let overlap = self.overlap && writes.len() == 1 && writes[0].base == self.base;
        if !overlap {
            self.turns.wait_for(seq);
            // An earlier epoch's barrier may have failed meanwhile: nothing may follow it.
            if let Some(p) = self.log.poisoned() {
                return Err(WalError::poisoned(&p));
            }
        }
        // What a marker may claim was durable: everything before it, unless earlier epochs are
        // still syncing — then only what has been published.
        let durable = |prev_end: u64| if overlap { self.log.bounds().1.min(prev_end) } else { prev_end };
        let markers: Vec<[u8; MARKER_LEN]> = writes.iter().map(|w| marker(w.base + w.pos, w.prev_end, durable(w.prev_end))).collect();
        for (i, w) in writes.iter().enumerate() {
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
                    Piece::Marker => &markers[i][..],
                    Piece::Bytes { group, chunk, from, to } => &groups[group][chunk].as_ref().as_ref()[from..to],
                })
                .collect();
            self.log.store.write_at(w.base, w.pos, &iov)?;
            if !overlap {
                self.log.store.sync(w.base).map_err(|e| WalError::poisoned(&e))?;
            }
        }
        self.changed = true;
        let written: u64 = writes.iter().map(|w| w.end - w.pos).sum();
        self.epoch_bytes = (self.epoch_bytes * 7 + written) / 8;
        let last = writes.last().unwrap();
        self.base = last.base;
        self.capacity = last.capacity;
        self.end = last.end;
        self.last_sparse = last_sparse;
        if !overlap {
            publish(&self.log, &writes);
        }
        self.extend_zeroes()?;
        Ok(if overlap { Written::Pending(placements, writes.pop().unwrap()) } else { Written::Durable(placements) })
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

    /// Keep zero-filled space ahead of a writer of small epochs: when less than half a step is
    /// left, fill the next step in the background (inline on a simulated disk, for determinism).
    /// With enough ahead and the active segment half written, fill the prepared segment instead,
    /// a step at a time: a fill in the file being written holds up its writes (the file's lock)
    /// and its barriers (the dirty zeros), one in the next file does neither.
    fn extend_zeroes(&mut self) -> Result<()> {
        if matches!(&self.filling, Some(f) if f.handle.is_finished()) {
            self.finish_fill(0)?;
        }
        let step = self.fill_step;
        if step == 0 || self.filling.is_some() {
            return Ok(());
        }
        if self.epoch_bytes > crate::log::FILL_MAX_EPOCH {
            return Ok(()); // large epochs: appending past the zeroed space costs less
        }
        let (base, from, to) = if self.zeroed < self.capacity && self.zeroed < self.end + step / 2 {
            let from = self.zeroed.max(self.end);
            (self.base, from, (from + step).min(self.capacity))
        } else if self.end >= self.capacity / 2 && self.next_segment_created() {
            let from = self.next_zeroed;
            let capacity = self.log.opts.segment_bytes;
            if from >= capacity {
                return Ok(());
            }
            (self.base + self.capacity, from, (from + step).min(capacity))
        } else {
            return Ok(());
        };
        self.fill_step = (step * 2).min(crate::log::PREALLOC_MAX);
        let store = self.log.store.clone();
        if !store.prepares_in_background() {
            // (Only ever the active segment: nothing is prepared ahead on such a store.)
            self.zeroed = fill_zeros(&*store, base, from, to, &AtomicBool::new(false)).map_err(|e| WalError::poisoned(&e))?;
            return Ok(());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let fill = move || fill_zeros(&*store, base, from, to, &stopped);
        // Without a thread, the log simply appends past the zeroed space.
        if let Ok(handle) = std::thread::Builder::new().name("sturdy-zero-fill".into()).spawn(fill) {
            self.filling = Some(Fill { base, from, stop, handle });
        }
        Ok(())
    }

    /// Whether the prepared segment exists (its creation joined, so a fill may start on it).
    fn next_segment_created(&mut self) -> bool {
        match self.prepared.take() {
            Some((base, Prep::Creating(h))) if h.is_finished() => {
                let created = h.join().map_err(|_| internal("segment preparation")).and_then(|r| r);
                let ok = created.is_ok();
                self.prepared = Some((base, Prep::Created(created)));
                ok
            }
            Some((base, prep)) => {
                let ok = matches!(prep, Prep::Created(Ok(())));
                self.prepared = Some((base, prep));
                ok
            }
            None => false,
        }
    }

    /// Stop and wait for a background zero-fill: any (`write_end` 0), or one that a write into
    /// the active segment ending at `write_end` would run into. A failed fill poisons the log:
    /// its barrier shares the file with ours, and a reported write-back error is not reported
    /// twice.
    fn finish_fill(&mut self, write_end: u64) -> Result<()> {
        let overlaps = matches!(&self.filling, Some(f) if write_end == 0 || (f.base == self.base && write_end > f.from));
        if !overlaps {
            return Ok(());
        }
        let fill = self.filling.take().unwrap();
        fill.stop.store(true, Ordering::Relaxed);
        let reached = fill.handle.join().map_err(|_| internal("zero-fill"))?.map_err(|e| WalError::poisoned(&e))?;
        if fill.base == self.base {
            self.zeroed = self.zeroed.max(reached);
        } else {
            self.next_zeroed = self.next_zeroed.max(reached);
        }
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
            Ok(h) => self.prepared = Some((base, Prep::Creating(h))),
            Err(_) => self.prepared = None, // created on demand instead
        }
        self.next_zeroed = zeroed_at_creation(&self.log.opts);
    }

    /// Make `base` (the segment after the active one) the active segment.
    fn enter_segment(&mut self, base: u64) -> Result<()> {
        let ready = match self.prepared.take() {
            Some((b, prep)) if b == base => prep.wait(),
            Some((_, prep)) => {
                let _ = prep.wait();
                Err(internal("prepared the wrong segment"))
            }
            None => self.log.store.create(base, &encode_header(base, self.log.opts.segment_bytes), self.log.opts.prealloc_step()),
        };
        ready?;
        self.base = base;
        self.capacity = self.log.opts.segment_bytes;
        self.end = SEGMENT_HEADER as u64;
        self.zeroed = self.next_zeroed;
        self.last_sparse = SEGMENT_HEADER as u64;
        self.prepare_next();
        Ok(())
    }

    /// Cancel a background preparation and remove what it made.
    fn discard_prepared(&mut self) -> Result<()> {
        self.finish_fill(0)?;
        if let Some((b, prep)) = self.prepared.take() {
            let _ = prep.wait();
            self.next_zeroed = zeroed_at_creation(&self.log.opts);
            self.log.store.remove(b)?;
        }
        Ok(())
    }

    fn truncate_from(&mut self, lsn: u64) -> Result<()> {
        let log = self.log.clone();
        let _truncating = log.truncation();
        let (first, next) = self.log.bounds();
        if lsn == next {
            return Ok(());
        }
        if lsn < first || lsn > next {
            return Err(WalError::invalid(format!("truncateFrom({lsn}): the log holds LSNs [{first}, {next})")));
        }
        let (base, pos, _) = self.log.locate(lsn).map_err(|e| if e.code == Code::NotFound { WalError::invalid(e.message) } else { e })?;
        self.finish_fill(0)?;
        self.changed = true;
        // Readers see the cut before any file changes under them (see `Log::retry_truncated`).
        let later: Vec<u64> = {
            let mut st = self.log.state_for_truncation();
            let later: Vec<u64> = st.segs.range(base + 1..).map(|(b, _)| *b).rev().collect();
            for b in &later {
                st.segs.remove(b);
            }
            let seg = st.segs.get_mut(&base).expect("segment of a located record");
            seg.end = pos;
            seg.sparse.retain(|&p| p < pos || p == SEGMENT_HEADER as u64);
            if seg.first_record.is_some_and(|f| f >= pos) {
                seg.first_record = None;
            }
            self.capacity = seg.capacity;
            self.last_sparse = *seg.sparse.last().unwrap();
            st.refresh_bounds();
            later
        };
        self.base = base;
        self.end = pos;
        // Later segments go first, newest first: a crash part-way leaves a prefix of the log.
        if !later.is_empty() {
            self.discard_prepared()?;
        }
        for b in later {
            self.log.store.remove(b)?;
        }
        self.log.store.truncate(base, pos)?;
        self.log.store.sync(base).map_err(|e| WalError::poisoned(&e))?;
        if self.log.opts.preallocate {
            // Zero-fill the rest again so later barriers stay cheap — only once the cut is
            // durable: zeros landing over old frames before it would look like damage.
            let to = (pos + self.log.opts.prealloc_step()).min(self.capacity);
            self.log.store.zero_fill(base, pos, to)?;
            self.log.store.sync(base).map_err(|e| WalError::poisoned(&e))?;
            self.zeroed = to;
        } else {
            self.zeroed = pos;
        }
        self.prepare_next();
        Ok(())
    }

    fn truncate_before(&mut self, lsn: u64) -> Result<u64> {
        let log = self.log.clone();
        let _truncating = log.truncation();
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
        // Oldest first, each removal durable before the next: a crash leaves a suffix. Each
        // segment leaves the state before its file goes (see `Log::retry_truncated`).
        for b in doomed {
            {
                let mut st = self.log.state_for_truncation();
                st.segs.remove(&b);
                st.refresh_bounds();
            }
            self.log.store.remove(b)?;
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
