//! Reads racing truncations on real files: a reader that found a record and then finds its
//! segment file removed or cut must report `NotFound`, and a chunk read must return what is left
//! of the log — the answers they would get a moment later — never an I/O or corruption error,
//! which callers (the stream store replanning a read, a Raft follower) cannot tell from damage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::Code;
use crate::log::Options;
use crate::store::Store;
use crate::wal::Wal;

/// A log of 3,000 records of 500 B in small segments with nothing prepared ahead (many removals,
/// quickly), and their LSNs.
fn racing_log() -> (tempfile::TempDir, Arc<Wal>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_bytes: 8192, max_record_bytes: 1024, preallocate: false, ..Options::default() };
    let wal = Arc::new(Wal::open_dir(dir.path(), opts).unwrap());
    let lsns = (0..3000).map(|_| wal.append(&[7u8; 500]).unwrap()).collect();
    (dir, wal, lsns)
}

/// Read the record at `lsn`: whether it was found (with its bytes) or reported `NotFound`, the
/// only other answer a read racing truncation may give.
fn read_found(wal: &Wal, lsn: u64) -> bool {
    match wal.log.read(lsn) {
        Ok(data) => {
            assert_eq!(data.len(), 500);
            true
        }
        Err(e) => {
            assert_eq!(e.code, Code::NotFound, "a read racing truncation failed with {e}");
            false
        }
    }
}

#[test]
fn a_read_racing_truncate_before_finds_the_record_or_not_found() {
    let (_dir, wal, lsns) = racing_log();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (wal, lsns, done) = (wal.clone(), lsns.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut found, mut gone) = (0u64, 0u64);
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    // Just at and above the first record: where truncation is about to cut.
                    let first = wal.log.bounds().0;
                    let k = lsns.partition_point(|&l| l < first) + i % 8;
                    if read_found(&wal, lsns[k.min(lsns.len() - 1)]) {
                        found += 1;
                    } else {
                        gone += 1;
                    }
                    i += 1;
                }
                (found, gone)
            })
        })
        .collect();
    for k in (0..lsns.len() - 20).step_by(5) {
        wal.truncate_before(lsns[k]).unwrap();
    }
    done.store(true, Ordering::Release);
    let (mut found, mut gone) = (0, 0);
    for r in readers {
        let (f, g) = r.join().unwrap();
        (found, gone) = (found + f, gone + g);
    }
    assert!(found > 0 && gone > 0, "the reads never raced the truncation: {found} found, {gone} not found");
    wal.close().unwrap();
}

#[test]
fn a_chunk_read_racing_truncate_before_starts_at_the_new_first_record() {
    let (_dir, wal, lsns) = racing_log();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (wal, done) = (wal.clone(), done.clone());
            std::thread::spawn(move || {
                let mut chunks = 0u64;
                while !done.load(Ordering::Acquire) {
                    // From the first record: the segment truncation is about to remove.
                    let from = wal.log.bounds().0;
                    let chunk = wal.log.read_chunk(from, 4096).unwrap_or_else(|e| panic!("a chunk read racing truncation failed with {e}"));
                    assert!(!chunk.lsns.is_empty(), "a chunk of a non-empty log came back empty");
                    assert!(chunk.lsns[0] >= from as f64, "the chunk starts before where it was asked to");
                    let bounds = &chunk.bounds;
                    assert!(bounds.chunks(2).all(|b| b[1] - b[0] == 500), "a record came back with the wrong length");
                    chunks += 1;
                }
                chunks
            })
        })
        .collect();
    for k in (0..lsns.len() - 20).step_by(5) {
        wal.truncate_before(lsns[k]).unwrap();
    }
    done.store(true, Ordering::Release);
    let chunks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(chunks > 0, "no chunk was read while truncating");
    wal.close().unwrap();
}

#[test]
fn a_read_racing_truncate_from_finds_the_record_or_not_found() {
    let (_dir, wal, mut lsns) = racing_log();
    let record = vec![7u8; 500];
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (wal, lsns, done) = (wal.clone(), lsns.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut found, mut gone, mut chunks) = (0u64, 0u64, 0u64);
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    // Just below the end: where truncation is about to cut.
                    let next = wal.log.bounds().1;
                    let k = lsns.partition_point(|&l| l < next).saturating_sub(1 + i % 8);
                    if read_found(&wal, lsns[k]) {
                        found += 1;
                    } else {
                        gone += 1;
                    }
                    let chunk = wal.log.read_chunk(lsns[k], 4096).unwrap_or_else(|e| panic!("a chunk read racing truncation failed with {e}"));
                    assert!(chunk.bounds.chunks(2).all(|b| b[1] - b[0] == 500), "a record came back with the wrong length");
                    chunks += 1;
                    i += 1;
                }
                (found, gone, chunks)
            })
        })
        .collect();
    // Cut a few records at a time, refilling now and then so the cuts cross segments.
    for round in 0..600 {
        let cut = lsns.len() - 3;
        wal.truncate_from(lsns[cut]).unwrap();
        lsns.truncate(cut);
        if round % 50 == 49 {
            lsns.extend((0..120).map(|_| wal.append(&record).unwrap()));
        }
    }
    done.store(true, Ordering::Release);
    let (mut found, mut gone) = (0, 0);
    for r in readers {
        let (f, g, c) = r.join().unwrap();
        assert!(c > 0);
        (found, gone) = (found + f, gone + g);
    }
    assert!(found > 0 && gone > 0, "the reads never raced the truncation: {found} found, {gone} not found");
    wal.close().unwrap();
}

#[test]
fn a_chunk_read_over_bytes_changed_under_it_fails_cleanly() {
    // What a reader holding a stale view can find: a frame whose length no longer fits the
    // segment (its file cut and written anew). It must fail (and so be retried), not panic.
    let store = Arc::new(crate::store::MemStore::new());
    let opts = Options { segment_bytes: 1 << 20, max_record_bytes: 1024, ..Options::default() };
    let wal = Wal::open(store.clone(), opts).unwrap();
    let lsns: Vec<u64> = (0..4).map(|_| wal.append(&[7u8; 500]).unwrap()).collect();
    let (base, pos, _) = wal.log.locate(lsns[0]).unwrap();
    store.write_at(base, pos + 4, &[&u32::MAX.wrapping_sub(1).to_le_bytes()]).unwrap();
    let err = wal.log.read_chunk(lsns[2], 4096).err().expect("a walk over a damaged frame fails");
    assert_eq!(err.code, Code::Corrupt, "{err}");
    wal.close().unwrap();
}
