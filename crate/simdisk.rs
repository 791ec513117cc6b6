//! A simulated disk for durability testing: it keeps what was made durable apart from what was
//! only written, and on a simulated power loss keeps — at a seeded schedule's choice — none, a
//! prefix or an arbitrary subset of the unsynced writes, possibly tearing one at a 512-byte
//! sector boundary and filling the torn part with zeros, garbage or the old bytes. It can also
//! fail the Nth write or barrier with EIO or ENOSPC. Everything is driven by one seed, so a
//! failing schedule replays exactly.
//!
//! Several logs can live on one disk, each under its own name (a directory).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Code, Result, WalError};
use crate::segment::file_name;
use crate::store::Store;

pub const SECTOR: u64 = 512;

enum Pending {
    Write { pos: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

#[derive(Default)]
struct SimFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

/// How a crash treats the writes that were not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    None,
    Prefix,
    Subset,
    /// Pick one of the above per file, at random.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Zeros,
    Garbage,
    Old,
    Any,
}

#[derive(Clone, Copy, Debug)]
pub struct CrashPlan {
    pub keep: Keep,
    /// Probability (0..=1) that one kept write is torn.
    pub tear: f64,
    pub fill: Fill,
}

impl Default for CrashPlan {
    fn default() -> Self {
        CrashPlan { keep: Keep::Any, tear: 0.5, fill: Fill::Any }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Any write, a segment's creation included.
    Write,
    Sync,
    /// A segment's creation only.
    Create,
}

/// What the last crash did, for messages and assertions.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    pub pending_ops: u64,
    pub kept_ops: u64,
    pub torn: bool,
}

struct DiskState {
    rng: fastrand::Rng,
    dirs: BTreeMap<String, BTreeMap<u64, SimFile>>,
    locked: BTreeSet<String>,
    /// Bumped by every crash: stores opened before it are dead.
    epoch: u64,
    writes: u64,
    syncs: u64,
    creates: u64,
    ops: u64,
    faults: Vec<(FaultKind, u64, i32)>,
    crash_at_op: Option<(u64, CrashPlan)>,
    last_crash: CrashReport,
    /// Let logs on this disk use background threads and overlap barriers (see `set_concurrent`).
    concurrent: bool,
}

pub struct SimDisk {
    state: Mutex<DiskState>,
    seed: u64,
}

fn os_err(errno: i32, what: &str) -> WalError {
    WalError::io(what, std::io::Error::from_raw_os_error(errno))
}

fn dead() -> WalError {
    WalError::io("the simulated machine lost power", std::io::Error::from_raw_os_error(5))
}

impl SimDisk {
    pub fn new(seed: u64) -> Arc<SimDisk> {
        Arc::new(SimDisk {
            seed,
            state: Mutex::new(DiskState {
                rng: fastrand::Rng::with_seed(seed),
                dirs: BTreeMap::new(),
                locked: BTreeSet::new(),
                epoch: 0,
                writes: 0,
                syncs: 0,
                creates: 0,
                ops: 0,
                faults: Vec::new(),
                crash_at_op: None,
                last_crash: CrashReport::default(),
                concurrent: false,
            }),
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Let logs opened from now on run as on a real disk: segments prepared and zero-filled on
    /// background threads, and a second committer worker overlapping barriers with writes. The
    /// order of operations then depends on thread timing, so a seed no longer replays exactly.
    pub fn set_concurrent(&self, concurrent: bool) {
        self.lock().concurrent = concurrent;
    }

    /// Open the log directory `name` on this disk (one opener at a time, like a real lock).
    pub fn open_store(self: &Arc<Self>, name: &str) -> Result<SimStore> {
        let mut st = self.lock();
        if !st.locked.insert(name.to_string()) {
            return Err(WalError::new(Code::Locked, format!("{name} is locked by another open log on this simulated disk")));
        }
        st.dirs.entry(name.to_string()).or_default();
        Ok(SimStore { disk: self.clone(), name: name.to_string(), epoch: st.epoch })
    }

    /// Fail the `nth` (1 = next) write, barrier or segment creation from now on with `errno`.
    pub fn inject(&self, kind: FaultKind, nth: u64, errno: i32) {
        let mut st = self.lock();
        let at = match kind {
            FaultKind::Write => st.writes,
            FaultKind::Sync => st.syncs,
            FaultKind::Create => st.creates,
        } + nth;
        st.faults.push((kind, at, errno));
    }

    /// Lose power during the `nth` (1 = next) storage operation from now on.
    pub fn crash_after(&self, nth: u64, plan: CrashPlan) {
        let mut st = self.lock();
        st.crash_at_op = Some((st.ops + nth, plan));
    }

    /// Lose power now.
    pub fn crash(&self, plan: CrashPlan) -> CrashReport {
        let mut st = self.lock();
        crash_locked(&mut st, plan);
        st.last_crash.clone()
    }

    pub fn last_crash(&self) -> CrashReport {
        self.lock().last_crash.clone()
    }

    pub fn stats(&self) -> (u64, u64, u64, u64) {
        let st = self.lock();
        (st.writes, st.syncs, st.ops, st.epoch)
    }

    /// Segment file names and their durable and current sizes.
    pub fn files(&self, name: &str) -> Vec<(String, u64, u64)> {
        let st = self.lock();
        st.dirs.get(name).map_or_else(Vec::new, |d| d.iter().map(|(b, f)| (file_name(*b), f.durable.len() as u64, f.current.len() as u64)).collect())
    }

    /// The current bytes of segment `base` in `name`.
    pub fn read_file(&self, name: &str, base: u64) -> Option<Vec<u8>> {
        self.lock().dirs.get(name)?.get(&base).map(|f| f.current.clone())
    }

    /// Overwrite segment `base` in `name`, durably (for corruption tests).
    pub fn write_file(&self, name: &str, base: u64, bytes: Vec<u8>) {
        let mut st = self.lock();
        let f = st.dirs.entry(name.to_string()).or_default().entry(base).or_default();
        f.durable = bytes.clone();
        f.current = bytes;
        f.pending.clear();
    }
}

fn crash_locked(st: &mut DiskState, plan: CrashPlan) {
    let mut report = CrashReport::default();
    let DiskState { rng, dirs, .. } = st;
    for files in dirs.values_mut() {
        for f in files.values_mut() {
            let n = f.pending.len();
            report.pending_ops += n as u64;
            let keep = match plan.keep {
                Keep::Any => [Keep::None, Keep::Prefix, Keep::Subset][rng.usize(0..3)],
                k => k,
            };
            let chosen: Vec<bool> = match keep {
                Keep::None => vec![false; n],
                Keep::Prefix => {
                    let k = rng.usize(0..=n);
                    (0..n).map(|i| i < k).collect()
                }
                _ => (0..n).map(|_| rng.bool()).collect(),
            };
            let kept_writes: Vec<usize> = (0..n).filter(|&i| chosen[i] && matches!(f.pending[i], Pending::Write { .. })).collect();
            let torn = if !kept_writes.is_empty() && rng.f64() < plan.tear { Some(kept_writes[rng.usize(0..kept_writes.len())]) } else { None };
            let mut image = std::mem::take(&mut f.durable);
            for (i, op) in f.pending.drain(..).enumerate() {
                if !chosen[i] {
                    continue;
                }
                report.kept_ops += 1;
                match op {
                    Pending::Truncate { len } => image.resize(len as usize, 0),
                    Pending::Write { pos, data } => {
                        let end = pos + data.len() as u64;
                        // Where the tear falls: a sector boundary inside the write (or its start).
                        let cut = if torn == Some(i) {
                            report.torn = true;
                            let first = pos.div_ceil(SECTOR) * SECTOR;
                            let sectors = if end > first { (end - 1 - first) / SECTOR + 1 } else { 0 };
                            (first + rng.u64(0..=sectors) * SECTOR).min(end).max(pos)
                        } else {
                            end
                        };
                        if image.len() < end as usize {
                            image.resize(end as usize, 0);
                        }
                        let keep_n = (cut - pos) as usize;
                        image[pos as usize..cut as usize].copy_from_slice(&data[..keep_n]);
                        let fill = match plan.fill {
                            Fill::Any => [Fill::Zeros, Fill::Garbage, Fill::Old][rng.usize(0..3)],
                            x => x,
                        };
                        for b in &mut image[cut as usize..end as usize] {
                            match fill {
                                Fill::Zeros => *b = 0,
                                Fill::Garbage => *b = rng.u8(..),
                                _ => {} // the old bytes stay (zeros where the file grew)
                            }
                        }
                    }
                }
            }
            f.current = image.clone();
            f.durable = image;
        }
    }
    st.epoch += 1;
    st.locked.clear();
    st.crash_at_op = None;
    st.last_crash = report;
}

/// One log directory on a [`SimDisk`], seen through the store seam.
pub struct SimStore {
    disk: Arc<SimDisk>,
    name: String,
    epoch: u64,
}

enum Op {
    Write,
    /// A segment's creation: a write, and a creation.
    Create,
    Sync,
    Other,
}

impl SimStore {
    /// Run one storage operation: dead after a crash; counts it; fires a scheduled crash or fault.
    fn op<T>(&self, kind: Op, f: impl FnOnce(&mut BTreeMap<u64, SimFile>) -> Result<T>) -> Result<T> {
        let mut st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        st.ops += 1;
        let mut counted = [None, None];
        match kind {
            Op::Write | Op::Create => {
                st.writes += 1;
                counted[0] = Some((FaultKind::Write, st.writes));
                if matches!(kind, Op::Create) {
                    st.creates += 1;
                    counted[1] = Some((FaultKind::Create, st.creates));
                }
            }
            Op::Sync => {
                st.syncs += 1;
                counted[0] = Some((FaultKind::Sync, st.syncs));
            }
            Op::Other => {}
        }
        for (k, n) in counted.into_iter().flatten() {
            if let Some(i) = st.faults.iter().position(|&(fk, at, _)| fk == k && at == n) {
                let (_, _, errno) = st.faults.remove(i);
                let what = match k {
                    FaultKind::Write => "simulated write failure",
                    FaultKind::Sync => "simulated barrier failure",
                    FaultKind::Create => "simulated segment creation failure",
                };
                return Err(os_err(errno, what));
            }
        }
        if let Some((at, plan)) = st.crash_at_op {
            if st.ops >= at {
                // The operation in progress is cut off mid-way: apply it, then lose power.
                let files = st.dirs.get_mut(&self.name).expect("open store has a directory");
                let _ = f(files);
                crash_locked(&mut st, plan);
                return Err(dead());
            }
        }
        let files = st.dirs.get_mut(&self.name).expect("open store has a directory");
        f(files)
    }
}

fn missing(base: u64) -> WalError {
    WalError::io(&format!("segment {}", file_name(base)), std::io::Error::from(std::io::ErrorKind::NotFound))
}

impl Store for SimStore {
    fn list(&self) -> Result<Vec<u64>> {
        self.op(Op::Other, |files| Ok(files.keys().copied().collect()))
    }

    fn create(&self, base: u64, header: &[u8], prealloc: u64) -> Result<()> {
        // Durable on return, like the file store's write-sync-rename-sync sequence; a crash
        // in the middle of that sequence leaves no segment, which is what happens here.
        self.op(Op::Create, |files| {
            let mut data = header.to_vec();
            data.resize(data.len().max(prealloc as usize), 0);
            files.insert(base, SimFile { durable: data.clone(), current: data, pending: Vec::new() });
            Ok(())
        })
    }

    fn remove(&self, base: u64) -> Result<()> {
        self.op(Op::Other, |files| {
            files.remove(&base);
            Ok(())
        })
    }

    fn write_at(&self, base: u64, pos: u64, bufs: &[&[u8]]) -> Result<()> {
        self.op(Op::Write, |files| {
            let f = files.get_mut(&base).ok_or_else(|| missing(base))?;
            let data: Vec<u8> = bufs.concat();
            let end = pos as usize + data.len();
            if f.current.len() < end {
                f.current.resize(end, 0);
            }
            f.current[pos as usize..end].copy_from_slice(&data);
            f.pending.push(Pending::Write { pos, data });
            Ok(())
        })
    }

    fn read_at(&self, base: u64, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        let f = st.dirs.get(&self.name).and_then(|d| d.get(&base)).ok_or_else(|| missing(base))?;
        let start = (pos as usize).min(f.current.len());
        let n = (f.current.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&f.current[start..start + n]);
        Ok(n)
    }

    fn len(&self, base: u64) -> Result<u64> {
        let st = self.disk.lock();
        if st.epoch != self.epoch {
            return Err(dead());
        }
        st.dirs.get(&self.name).and_then(|d| d.get(&base)).map(|f| f.current.len() as u64).ok_or_else(|| missing(base))
    }

    fn truncate(&self, base: u64, len: u64) -> Result<()> {
        self.op(Op::Other, |files| {
            let f = files.get_mut(&base).ok_or_else(|| missing(base))?;
            f.current.resize(len as usize, 0);
            f.pending.push(Pending::Truncate { len });
            Ok(())
        })
    }

    fn sync(&self, base: u64) -> Result<()> {
        if self.disk.lock().concurrent {
            // A barrier takes a while: long enough for another thread to write meanwhile.
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        self.op(Op::Sync, |files| {
            let f = files.get_mut(&base).ok_or_else(|| missing(base))?;
            for op in f.pending.drain(..) {
                match op {
                    Pending::Truncate { len } => f.durable.resize(len as usize, 0),
                    Pending::Write { pos, data } => {
                        let end = pos as usize + data.len();
                        if f.durable.len() < end {
                            f.durable.resize(end, 0);
                        }
                        f.durable[pos as usize..end].copy_from_slice(&data);
                    }
                }
            }
            Ok(())
        })
    }

    fn prepares_in_background(&self) -> bool {
        self.disk.lock().concurrent
    }

    fn close(&self) {
        let mut st = self.disk.lock();
        if st.epoch == self.epoch {
            st.locked.remove(&self.name);
        }
    }
}
