//! Zero-filling ahead: while small epochs fill the active segment, the segment prepared after it
//! is zero-filled in the background, so the log never fills the file it is writing once past
//! its first segment; and a log that rolls into that segment keeps every record.

use std::time::{Duration, Instant};

use crate::log::{Options, PREALLOC_FIRST};
use crate::segment::file_name;
use crate::wal::Wal;

const SEGMENT: u64 = 8 << 20;

#[test]
fn the_next_segment_is_zero_filled_while_small_epochs_fill_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_bytes: SEGMENT, max_record_bytes: 1 << 20, ..Options::default() };
    let wal = Wal::open_dir(dir.path(), opts.clone()).unwrap();
    let next = dir.path().join(file_name(SEGMENT));
    let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    let record = |i: usize, n: usize| -> Vec<u8> { (0..n).map(|k| (i * 31 + k) as u8 | 1).collect() };
    let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
    let append = |n: usize, written: &mut Vec<(u64, Vec<u8>)>| {
        let data = record(written.len(), n);
        let lsn = wal.append(&data).unwrap();
        written.push((lsn, data));
        lsn
    };
    // Past half of the first segment in small epochs (one 4 KiB record each).
    while append(4096, &mut written) < SEGMENT * 5 / 8 {}
    // Each small epoch lets the committer start the next step of filling; the next segment
    // must be filled whole while this one still has room.
    let deadline = Instant::now() + Duration::from_secs(20);
    while len(&next) < SEGMENT && Instant::now() < deadline {
        append(64, &mut written);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(len(&next), SEGMENT, "the next segment was zero-filled to {} bytes only (it starts with {PREALLOC_FIRST})", len(&next));
    assert!(written.last().unwrap().0 < SEGMENT, "the log moved on to the next segment before the check");

    // Into the filled segment and beyond, then back.
    while append(4096, &mut written) < SEGMENT + (3 << 20) {}
    wal.close().unwrap();
    let wal = Wal::open_dir(dir.path(), opts).unwrap();
    let got = wal.records(0).unwrap();
    assert_eq!(got.len(), written.len());
    assert!(got == written, "records differ after reopening");
    wal.close().unwrap();
}
