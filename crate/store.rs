//! The store seam: the log reads and writes segments only through [`Store`], so the same log
//! code runs on files, in memory, and (for the durability harness) on a simulated disk.
//!
//! Segments are addressed by base LSN and a position inside the segment.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::descriptors::Descriptors;
use crate::dir_lock::{Busy, DirLock};
use crate::direct_io::{self, write_zeros, DirectWrites};
use crate::error::{Code, Result, WalError};
use crate::log::DirectMode;
use crate::platform;
use crate::segment::{file_name, parse_name};

pub trait Store: Send + Sync {
    /// Base LSNs of the segments present, ascending.
    fn list(&self) -> Result<Vec<u64>>;
    /// Create segment `base` holding `header`, zero-filled up to `prealloc` bytes when that is
    /// larger. Durable on return: contents and directory entry. Never leaves a half-made segment
    /// under its final name.
    fn create(&self, base: u64, header: &[u8], prealloc: u64) -> Result<()>;
    /// Remove segment `base`; durable on return.
    fn remove(&self, base: u64) -> Result<()>;
    /// Write all of `bufs`, back to back, at `pos`.
    fn write_at(&self, base: u64, pos: u64, bufs: &[&[u8]]) -> Result<()>;
    /// Fill `buf` from `pos`; fewer bytes only at the end of the segment.
    fn read_at(&self, base: u64, pos: u64, buf: &mut [u8]) -> Result<usize>;
    fn len(&self, base: u64) -> Result<u64>;
    /// Cut segment `base` to `len` bytes (not yet durable: call `sync`).
    fn truncate(&self, base: u64, len: u64) -> Result<()>;
    /// The durability barrier for segment `base`.
    fn sync(&self, base: u64) -> Result<()>;
    /// Release files and locks; the store is not used afterwards.
    fn close(&self) {}
    /// The barrier for segment `base` on a thread other than the committer's (a background
    /// zero-fill), through a descriptor of its own. Linux reports a write-back error once per open
    /// file description: a sync through the shared one could take the report from a concurrent
    /// barrier, which would then return success over lost pages.
    fn sync_apart(&self, base: u64) -> Result<()> {
        self.sync(base)
    }
    /// Write zeros over `[from, to)` of segment `base` (not yet durable: call `sync`).
    fn zero_fill(&self, base: u64, from: u64, to: u64) -> Result<()> {
        write_zeros(from, to, |at, zeros| self.write_at(base, at, &[zeros]))
    }
    /// Whether the next segment may be created on a background thread. A simulated disk says
    /// no, so that its operations happen in one deterministic order and a seed replays exactly.
    fn prepares_in_background(&self) -> bool {
        true
    }
}

/// Segment files in a directory, guarded by an advisory lock.
pub struct FileStore {
    dir: PathBuf,
    files: RwLock<Descriptors>,
    lock: Mutex<Option<DirLock>>,
    read_only: bool,
    /// Writes bypass the page cache where the platform allows it; `None` when not asked for,
    /// read-only, or once the file system has refused a direct write.
    direct: RwLock<Option<Arc<DirectWrites>>>,
    /// Writes of this size or more go through the page cache all the same (`DirectMode`).
    buffered_from: u64,
    /// The segments' descriptors for direct writes, opened on first use.
    direct_files: RwLock<Descriptors>,
    /// Segments removed so far (see `cached`).
    removals: AtomicU64,
}

impl FileStore {
    /// Open (creating if needed) the log directory and take its lock; read-only opens take a
    /// shared lock and change nothing. `direct` says which writes bypass the page cache where the
    /// platform and file system allow it.
    pub fn open(dir: &Path, read_only: bool, direct: DirectMode) -> Result<FileStore> {
        if read_only && !dir.is_dir() {
            return Err(WalError::new(Code::NotFound, format!("{}: no log directory there", dir.display())));
        }
        if !dir.exists() {
            // Every directory created here must have a durable entry in its parent.
            let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
            fs::create_dir_all(dir).map_err(|e| WalError::io("creating the log directory", e))?;
            for created in missing.iter().rev() {
                let parent = created.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                platform::sync_dir(parent).map_err(|e| WalError::io("syncing a new directory's parent", e))?;
            }
        } else if !dir.is_dir() {
            return Err(WalError::invalid(format!("{} is not a directory", dir.display())));
        }
        let lock = match DirLock::take(dir, read_only).map_err(|e| WalError::io("locking the log directory", e))? {
            Ok(lock) => lock,
            Err(busy) => {
                let who = match busy {
                    Busy::ThisProcess => "another open log in this process holds it",
                    Busy::OtherProcess => "another process holds it",
                };
                return Err(WalError::new(Code::Locked, format!("{} is locked: {who}", dir.display())));
            }
        };
        let buffered_from = direct.buffered_from();
        let direct = if read_only || buffered_from == 0 { None } else { Some(Arc::new(DirectWrites::default())) };
        let store = FileStore {
            dir: dir.to_path_buf(),
            files: RwLock::new(Descriptors::default()),
            lock: Mutex::new(Some(lock)),
            read_only,
            direct: RwLock::new(direct),
            buffered_from,
            direct_files: RwLock::new(Descriptors::default()),
            removals: AtomicU64::new(0),
        };
        if !read_only {
            store.remove_leftovers()?;
        }
        Ok(store)
    }

    /// Temporary files from a segment creation that a crash interrupted.
    fn remove_leftovers(&self) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| WalError::io("listing the log directory", e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| WalError::io("listing the log directory", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.strip_suffix(".tmp").and_then(parse_name).is_some() {
                fs::remove_file(entry.path()).map_err(|e| WalError::io("removing a leftover temporary segment", e))?;
                removed = true;
            }
        }
        if removed {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        platform::sync_dir(&self.dir).map_err(|e| WalError::io("syncing the log directory", e))
    }

    fn file(&self, base: u64) -> Result<Arc<File>> {
        self.cached(&self.files, base, |path| self.open_buffered(path)).map_err(|e| seg_err("opening", base, e))
    }

    /// A descriptor of a segment file for reads and page-cache writes.
    fn open_buffered(&self, path: &Path) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(!self.read_only).open(path)
    }

    /// Segment `base`'s descriptor from `files`, opened with `open` on first use.
    ///
    /// A reader may open a segment just before it is removed and come to cache the descriptor
    /// only after the segment is made anew under the same name (a `truncate_from` and the
    /// appends after it): the log would then write to the removed file. So a descriptor opened
    /// while a removal ran is used once, not cached, and one cached meanwhile is kept.
    fn cached(&self, files: &RwLock<Descriptors>, base: u64, open: impl FnOnce(&Path) -> std::io::Result<File>) -> std::io::Result<Arc<File>> {
        if let Some(f) = files.read().unwrap_or_else(|p| p.into_inner()).get(base) {
            return Ok(f);
        }
        let removals = self.removals.load(Ordering::SeqCst);
        let file = Arc::new(open(&self.dir.join(file_name(base)))?);
        let mut files = files.write().unwrap_or_else(|p| p.into_inner());
        // Nor in a closed store (a read that began before the close).
        if self.removals.load(Ordering::SeqCst) != removals || self.lock.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Ok(file);
        }
        Ok(files.insert(base, file))
    }

    /// `cached` for the page-cache descriptors, opening with `open`.
    #[cfg(test)]
    pub(crate) fn cached_file(&self, base: u64, open: impl FnOnce(&Path) -> std::io::Result<File>) -> std::io::Result<Arc<File>> {
        self.cached(&self.files, base, open)
    }

    /// Forget what was kept for segment `base`, which is being removed: descriptors and bytes.
    fn forget(&self, base: u64) {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let mut direct_files = self.direct_files.write().unwrap_or_else(|p| p.into_inner());
        self.removals.fetch_add(1, Ordering::SeqCst);
        files.remove(base);
        direct_files.remove(base);
        drop((files, direct_files));
        if let Some(d) = self.direct() {
            d.forget_from(base, 0);
        }
    }

    /// Whether writes still go past the page cache (asked for, and not refused so far).
    pub fn writes_directly(&self) -> bool {
        self.direct().is_some()
    }

    /// Reads served from the ring of direct writes since this store opened.
    #[cfg(test)]
    pub fn ring_hits(&self) -> u64 {
        self.direct().map_or(0, |d| d.hits.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn direct(&self) -> Option<Arc<DirectWrites>> {
        self.direct.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run `write` with segment `base`'s direct descriptor when direct writes are on; if the
    /// file system refuses direct I/O, stop trying it and return `false`: the caller writes
    /// through the page cache.
    fn write_direct(&self, base: u64, write: impl FnOnce(&DirectWrites, &File) -> std::io::Result<()>) -> Result<bool> {
        let Some(direct) = self.direct() else {
            return Ok(false);
        };
        match self.cached(&self.direct_files, base, platform::open_direct).and_then(|file| write(&direct, &file)) {
            Ok(()) => Ok(true),
            Err(e) if direct_io::unsupported(&e) => {
                self.direct.write().unwrap_or_else(|p| p.into_inner()).take();
                Ok(false)
            }
            Err(e) => Err(seg_err("writing", base, e)),
        }
    }
}

fn seg_err(what: &str, base: u64, e: std::io::Error) -> WalError {
    WalError::io(&format!("{what} segment {}", file_name(base)), e)
}

impl Store for FileStore {
    fn list(&self) -> Result<Vec<u64>> {
        let mut bases = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| WalError::io("listing the log directory", e))? {
            let entry = entry.map_err(|e| WalError::io("listing the log directory", e))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        Ok(bases)
    }

    fn create(&self, base: u64, header: &[u8], prealloc: u64) -> Result<()> {
        let name = file_name(base);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| seg_err("creating", base, e))?;
        platform::pwritev_all(&file, 0, &[header]).map_err(|e| seg_err("writing the header of", base, e))?;
        // Zero-filled space, unlike fallocate'd space, needs no metadata update when written.
        write_zeros(header.len() as u64, prealloc, |at, zeros| {
            platform::pwritev_all(&file, at, &[zeros]).map_err(|e| seg_err("preallocating", base, e))
        })?;
        platform::durable_sync(&file).map_err(|e| seg_err("syncing new", base, e))?;
        fs::rename(&tmp, self.dir.join(&name)).map_err(|e| seg_err("naming new", base, e))?;
        self.sync_dir()?;
        self.files.write().unwrap_or_else(|p| p.into_inner()).insert(base, Arc::new(file));
        Ok(())
    }

    fn remove(&self, base: u64) -> Result<()> {
        // Descriptors go before the file (Windows may not remove a file this process holds
        // open), and again after it: a reader may have cached the file in between (see `cached`).
        self.forget(base);
        let removed = fs::remove_file(self.dir.join(file_name(base)));
        self.forget(base);
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(seg_err("removing", base, e)),
        }
        self.sync_dir()
    }

    fn write_at(&self, base: u64, pos: u64, bufs: &[&[u8]]) -> Result<()> {
        let file = self.file(base)?;
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if len < self.buffered_from {
            if self.write_direct(base, |d, direct| d.write_at(base, direct, &file, pos, bufs))? {
                return Ok(());
            }
        } else if let Some(d) = self.direct() {
            // The ring no longer holds what follows `pos`. The kernel keeps the page cache and
            // direct writes coherent: the next direct write reads its first block back through
            // the cache, and writes back a dirty cached page it covers before writing.
            d.forget_from(base, pos);
        }
        platform::pwritev_all(&file, pos, bufs).map_err(|e| seg_err("writing", base, e))
    }

    fn zero_fill(&self, base: u64, from: u64, to: u64) -> Result<()> {
        let zero = |d: &DirectWrites, direct: &File| {
            d.forget_from(base, from);
            direct_io::zero_fill(direct, from, to)
        };
        if self.write_direct(base, zero)? {
            return Ok(());
        }
        write_zeros(from, to, |at, zeros| self.write_at(base, at, &[zeros]))
    }

    fn read_at(&self, base: u64, pos: u64, buf: &mut [u8]) -> Result<usize> {
        if self.direct().is_some_and(|d| d.read_at(base, pos, buf)) {
            return Ok(buf.len());
        }
        platform::pread_fill(&*self.file(base)?, pos, buf).map_err(|e| seg_err("reading", base, e))
    }

    fn len(&self, base: u64) -> Result<u64> {
        Ok(self.file(base)?.metadata().map_err(|e| seg_err("reading the size of", base, e))?.len())
    }

    fn truncate(&self, base: u64, len: u64) -> Result<()> {
        if let Some(d) = self.direct() {
            d.forget_from(base, len);
        }
        self.file(base)?.set_len(len).map_err(|e| seg_err("truncating", base, e))
    }

    fn sync(&self, base: u64) -> Result<()> {
        platform::durable_sync(&*self.file(base)?).map_err(|e| seg_err("syncing", base, e))
    }

    fn sync_apart(&self, base: u64) -> Result<()> {
        let file = self.open_buffered(&self.dir.join(file_name(base))).map_err(|e| seg_err("opening", base, e))?;
        platform::durable_sync(&file).map_err(|e| seg_err("syncing", base, e))
    }

    fn close(&self) {
        // Under the cache locks, so that a reader caching a descriptor meanwhile either does so
        // before they are cleared or finds the store closed (see `cached`).
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let mut direct_files = self.direct_files.write().unwrap_or_else(|p| p.into_inner());
        files.clear();
        direct_files.clear();
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop((files, direct_files));
        self.direct.write().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Segments in memory: for tests and for building simulated disks on. `sync` is a no-op.
#[derive(Default)]
pub struct MemStore {
    segments: Mutex<BTreeMap<u64, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A copy of every segment's bytes.
    pub fn image(&self) -> BTreeMap<u64, Vec<u8>> {
        self.lock().clone()
    }

    pub fn from_image(image: BTreeMap<u64, Vec<u8>>) -> MemStore {
        MemStore { segments: Mutex::new(image) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<u8>>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn missing(base: u64) -> WalError {
    WalError::io(&format!("segment {}", file_name(base)), std::io::Error::from(std::io::ErrorKind::NotFound))
}

impl Store for MemStore {
    fn list(&self) -> Result<Vec<u64>> {
        Ok(self.lock().keys().copied().collect())
    }

    fn create(&self, base: u64, header: &[u8], prealloc: u64) -> Result<()> {
        let mut data = header.to_vec();
        data.resize(data.len().max(prealloc as usize), 0);
        self.lock().insert(base, data);
        Ok(())
    }

    fn remove(&self, base: u64) -> Result<()> {
        self.lock().remove(&base);
        Ok(())
    }

    fn write_at(&self, base: u64, pos: u64, bufs: &[&[u8]]) -> Result<()> {
        let mut segs = self.lock();
        let data = segs.get_mut(&base).ok_or_else(|| missing(base))?;
        let mut at = pos as usize;
        for b in bufs {
            if data.len() < at + b.len() {
                data.resize(at + b.len(), 0);
            }
            data[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Ok(())
    }

    fn read_at(&self, base: u64, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let segs = self.lock();
        let data = segs.get(&base).ok_or_else(|| missing(base))?;
        let start = (pos as usize).min(data.len());
        let n = (data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn len(&self, base: u64) -> Result<u64> {
        Ok(self.lock().get(&base).ok_or_else(|| missing(base))?.len() as u64)
    }

    fn truncate(&self, base: u64, len: u64) -> Result<()> {
        let mut segs = self.lock();
        segs.get_mut(&base).ok_or_else(|| missing(base))?.resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self, _base: u64) -> Result<()> {
        Ok(())
    }
}
