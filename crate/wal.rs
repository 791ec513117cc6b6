//! A handle on an open log: the log itself plus the channel to its committer thread. The napi
//! binding wraps it; Rust tests and the durability harness use its blocking methods directly.

use std::path::Path;
use std::sync::mpsc::{sync_channel, SendError, Sender};
use std::sync::{Arc, Condvar, Mutex};

use crate::batch::send_batch;
use crate::committer::{self, Command, Done};
use crate::error::{Code, Result, WalError};
use crate::frame::FRAME_HEADER;
use crate::log::{DirectMode, Log, Options};
use crate::store::{FileStore, Store};

pub struct Wal {
    pub log: Arc<Log>,
    tx: Mutex<Option<Sender<Command>>>,
    /// Set once a close has released the log: a later close waits for it rather than returning
    /// while the first is still sealing and releasing.
    released: Arc<(Mutex<bool>, Condvar)>,
}

fn closed() -> WalError {
    WalError::new(Code::Closed, "the log is closed")
}

impl Wal {
    pub fn open(store: Arc<dyn Store>, opts: Options) -> Result<Wal> {
        let read_only = opts.read_only;
        let log = Log::open(store, opts)?;
        // A read-only log has no writer: no committer, nothing prepared ahead.
        let tx = if read_only { None } else { Some(committer::spawn(log.clone())?) };
        Ok(Wal { log, tx: Mutex::new(tx), released: Arc::new((Mutex::new(false), Condvar::new())) })
    }

    pub fn open_dir(dir: &Path, opts: Options) -> Result<Wal> {
        opts.validate()?;
        Wal::open(Arc::new(FileStore::open(dir, opts.read_only, if opts.preallocate { opts.direct_writes } else { DirectMode::Off })?), opts)
    }

    /// Queue a command for the committer. A command that cannot be queued is answered with
    /// the reason at once (it holds a caller's promise, which would otherwise never settle), and
    /// the reason is returned too.
    pub fn send(&self, cmd: Command) -> Result<()> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let refused = match tx.as_ref() {
            Some(tx) => match tx.send(cmd) {
                Ok(()) => return Ok(()),
                Err(returned) => (returned.0, closed()),
            },
            None if self.log.opts.read_only => (cmd, self.log.check_open().err().unwrap_or_else(|| WalError::invalid("the log is open read-only"))),
            None => (cmd, closed()),
        };
        let (cmd, err) = refused;
        cmd.reject(err.clone());
        Err(err)
    }

    /// Queue a command built around `done` and block until it reports.
    pub fn call<T: Send + 'static>(&self, make: impl FnOnce(Done<T>) -> Command) -> Result<T> {
        let (tx, rx) = sync_channel(1);
        self.send(make(Box::new(move |r| {
            let _ = tx.send(r);
        })))?;
        rx.recv().unwrap_or_else(|_| Err(closed()))
    }

    /// Append records (in slices of a few MiB, as a large `appendBatch` is); blocks until all
    /// are durable and returns their LSNs.
    pub fn append_batch(&self, records: &[&[u8]]) -> Result<Vec<u64>> {
        let (tx, rx) = sync_channel(1);
        let lens: Vec<usize> = records.iter().map(|r| r.len()).collect();
        let put = |i: usize, _len: usize, buf: &mut Vec<u8>| {
            buf.extend_from_slice(records[i]);
            Ok(())
        };
        send_batch(
            self,
            &lens,
            put,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let anchors = rx.recv().unwrap_or_else(|_| Err(closed()))?;
        let mut offset = 0;
        Ok(lens
            .iter()
            .map(|len| {
                let lsn = lsn_at(&anchors, offset);
                offset += FRAME_HEADER + len;
                lsn
            })
            .collect())
    }

    pub fn append(&self, record: &[u8]) -> Result<u64> {
        Ok(self.append_batch(&[record])?[0])
    }

    pub fn sync(&self) -> Result<()> {
        self.call(Command::Sync)
    }

    pub fn truncate_from(&self, lsn: u64) -> Result<()> {
        self.call(|d| Command::TruncateFrom(lsn, d))
    }

    pub fn truncate_before(&self, lsn: u64) -> Result<u64> {
        self.call(|d| Command::TruncateBefore(lsn, d))
    }

    /// Stop the committer after everything queued, and release the store. Idempotent.
    pub fn close_with(&self, done: Done<()>) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let released = self.released.clone();
        let mark = move || {
            *released.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
            released.1.notify_all();
        };
        match tx {
            Some(tx) => {
                let done: Done<()> = Box::new(move |r| {
                    mark();
                    done(r)
                });
                if let Err(SendError(Command::Close(done))) = tx.send(Command::Close(done)) {
                    done(Ok(()));
                }
            }
            None if self.log.opts.read_only => {
                // No committer to stop: release the store here.
                self.log.mark_closed();
                self.log.store.close();
                mark();
                done(Ok(()))
            }
            None => {
                // Closed by an earlier call: answer once that close has released the log.
                let (flag, cv) = &*self.released;
                let mut guard = flag.lock().unwrap_or_else(|p| p.into_inner());
                while !*guard {
                    guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
                done(Ok(()))
            }
        }
    }

    pub fn close(&self) -> Result<()> {
        let (tx, rx) = sync_channel(1);
        self.close_with(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv().unwrap_or(Ok(()))
    }

    /// Every record from `from` on, in order.
    pub fn records(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let c = self.log.read_chunk(next, 1 << 20)?;
            for (i, &lsn) in c.lsns.iter().enumerate() {
                out.push((lsn as u64, c.data[c.bounds[2 * i] as usize..c.bounds[2 * i + 1] as usize].to_vec()));
            }
            if c.done {
                return Ok(out);
            }
            next = c.next;
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The LSN of the record at group offset `offset`, from the committer's `[offset, lsn]` anchors.
pub fn lsn_at(anchors: &[f64], offset: usize) -> u64 {
    let mut i = 0;
    while i + 2 < anchors.len() && anchors[i + 2] as usize <= offset {
        i += 2;
    }
    (anchors[i + 1] as u64) + (offset as u64 - anchors[i] as u64)
}
