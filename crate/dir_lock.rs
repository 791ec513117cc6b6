//! The lock on a log directory: one writer, or any number of read-only opens.
//!
//! The OS lock (`flock`, `LockFileEx` on Windows; see `platform::lock_dir`) keeps other
//! processes off. A table of the directories this process holds keeps a second open in this
//! process off at once, and says which of the two it was.
//!
//! A lock found busy while this process holds none on the directory is tried again for a short
//! while: a child process that this one forks (Node spawning a command, say) holds a copy of the
//! lock's descriptor from the fork until it execs, so a log closed and reopened meanwhile would
//! otherwise be refused for nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::platform;

/// How long a busy lock is tried again before the directory is reported locked.
const RETRY_FOR: Duration = Duration::from_millis(100);

/// What identifies a directory however it is named: device and inode on Unix.
#[cfg(unix)]
type Key = (u64, u64);
#[cfg(not(unix))]
type Key = std::path::PathBuf;

#[cfg(unix)]
fn key_of(dir: &Path) -> io::Result<Key> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn key_of(dir: &Path) -> io::Result<Key> {
    std::fs::canonicalize(dir)
}

/// Who in this process holds a directory.
enum Holders {
    Writer,
    Readers(usize),
}

static HELD: Mutex<Option<HashMap<Key, Holders>>> = Mutex::new(None);

fn with_held<T>(f: impl FnOnce(&mut HashMap<Key, Holders>) -> T) -> T {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    f(held.get_or_insert_with(HashMap::new))
}

/// Why a directory could not be locked.
pub enum Busy {
    /// Another open log in this process holds it.
    ThisProcess,
    /// Another process holds it.
    OtherProcess,
}

/// A held directory lock; dropping it releases the lock.
pub struct DirLock {
    files: Vec<File>,
    key: Key,
}

impl DirLock {
    /// Lock `dir`: shared for a read-only open, exclusive otherwise.
    pub fn take(dir: &Path, shared: bool) -> io::Result<Result<DirLock, Busy>> {
        let key = key_of(dir)?;
        // Claim the directory in this process first, so a concurrent open here sees the claim.
        #[allow(clippy::clone_on_copy)] // the key is a path off Unix
        let claimed = with_held(|held| match (held.get_mut(&key), shared) {
            (None, _) => {
                held.insert(key.clone(), if shared { Holders::Readers(1) } else { Holders::Writer });
                true
            }
            (Some(Holders::Readers(n)), true) => {
                *n += 1;
                true
            }
            _ => false,
        });
        if !claimed {
            return Ok(Err(Busy::ThisProcess));
        }
        let unclaim = |key: &Key| with_held(|held| release(held, key));
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(1);
        loop {
            match platform::lock_dir(dir, shared) {
                Ok(Some(files)) => return Ok(Ok(DirLock { files, key })),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Ok(None) => {
                    unclaim(&key);
                    return Ok(Err(Busy::OtherProcess));
                }
                Err(e) => {
                    unclaim(&key);
                    return Err(e);
                }
            }
        }
    }
}

fn release(held: &mut HashMap<Key, Holders>, key: &Key) {
    match held.get_mut(key) {
        Some(Holders::Readers(n)) if *n > 1 => *n -= 1,
        Some(_) => {
            held.remove(key);
        }
        None => {}
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        self.files.clear(); // the OS lock goes first: an open here may then take it at once
        with_held(|held| release(held, &self.key));
    }
}
