//! Recovery and truncation on the memory store: what survives, what is cut, what is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Code;
use crate::frame::FRAME_HEADER;
use crate::log::Options;
use crate::recovery::RecoveryMode;
use crate::store::{MemStore, Store};
use crate::wal::Wal;

type Image = BTreeMap<u64, Vec<u8>>;

fn opts(segment_bytes: u64) -> Options {
    Options { segment_bytes, max_record_bytes: 1000, ..Options::default() }
}

fn open(image: Image, o: Options) -> crate::error::Result<(Wal, Arc<MemStore>)> {
    let store = Arc::new(MemStore::from_image(image));
    Ok((Wal::open(store.clone(), o)?, store))
}

/// Records of varied sizes, some empty, deterministic.
fn payloads(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (x >> 33) as usize % 300;
            (0..len).map(|j| (i * 31 + j) as u8).collect()
        })
        .collect()
}

/// A log built by appending `records` in groups of `group`, closed; returns the image and LSNs.
fn build(records: &[Vec<u8>], group: usize, o: Options) -> (Image, Vec<u64>) {
    let (wal, store) = open(Image::new(), o).unwrap();
    let mut lsns = Vec::new();
    for chunk in records.chunks(group) {
        let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_slice()).collect();
        lsns.extend(wal.append_batch(&refs).unwrap());
    }
    wal.close().unwrap();
    (store.image(), lsns)
}

fn contents(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.records(0).unwrap()
}

fn expected(records: &[Vec<u8>], lsns: &[u64]) -> Vec<(u64, Vec<u8>)> {
    lsns.iter().copied().zip(records.iter().cloned()).collect()
}

#[test]
fn round_trip_across_many_segments() {
    let records = payloads(400, 1);
    let (image, lsns) = build(&records, 7, opts(4096));
    assert!(image.len() > 10, "expected many segments, got {}", image.len());
    assert!(lsns.windows(2).all(|w| w[0] < w[1]));
    let (wal, _) = open(image, opts(4096)).unwrap();
    assert_eq!(contents(&wal), expected(&records, &lsns));
    for (lsn, data) in expected(&records, &lsns) {
        assert_eq!(wal.log.read(lsn).unwrap(), data);
    }
    assert_eq!(wal.log.report.torn_bytes, 0);
}

#[test]
fn reads_reject_positions_that_are_not_records() {
    let records = payloads(50, 2);
    let (image, lsns) = build(&records, 5, opts(1 << 20));
    let (wal, _) = open(image, opts(1 << 20)).unwrap();
    for &lsn in &lsns {
        for delta in [1u64, 4, 8] {
            if !lsns.contains(&(lsn + delta)) {
                assert_eq!(wal.log.read(lsn + delta).unwrap_err().code, Code::NotFound);
            }
        }
    }
    assert_eq!(wal.log.read(0).unwrap_err().code, Code::NotFound);
    assert_eq!(wal.log.read(u64::MAX / 4).unwrap_err().code, Code::NotFound);
}

#[test]
fn torn_last_write_cut_at_every_byte() {
    let records = payloads(30, 3);
    let (image, lsns) = build(&records, 3, opts(8192));
    let last_base = *image.range(..=*lsns.last().unwrap()).next_back().unwrap().0;
    let last_seg = &image[&last_base];
    assert!(lsns[lsns.len() - 3] > last_base, "the last group must sit in one segment");
    // The last write is the last group: a marker and three records.
    let first_lost = lsns[lsns.len() - 3];
    let start = (first_lost - last_base) as usize - 24;
    for cut in start..last_seg.len() {
        let mut torn = image.clone();
        torn.get_mut(&last_base).unwrap().truncate(cut);
        let (wal, _) = open(torn, opts(8192)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let got = contents(&wal);
        let kept = lsns.iter().filter(|&&l| l - last_base + FRAME_HEADER as u64 + records[lsns.iter().position(|&x| x == l).unwrap()].len() as u64 <= cut as u64).count();
        assert_eq!(got, expected(&records[..kept], &lsns[..kept]), "cut at {cut}");
        // Appends continue and survive a reopen.
        let new = wal.append(b"after the tear").unwrap();
        assert!(new >= wal.log.bounds().0);
        wal.close().unwrap();
    }
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_a_torn_tail() {
    let records = payloads(20, 4);
    let (image, lsns) = build(&records, 4, opts(1 << 20));
    for fill in [0u8, 0xAB] {
        let mut torn = image.clone();
        let last = *lsns.last().unwrap();
        let data_seg = *torn.range(..=last).next_back().unwrap().0;
        let end = (last - data_seg) as usize + FRAME_HEADER + records.last().unwrap().len();
        let seg = torn.get_mut(&data_seg).unwrap();
        seg.resize(seg.len().max(end + 1000), 0);
        seg[end..end + 1000].fill(fill);
        let (wal, store) = open(torn, opts(1 << 20)).unwrap();
        assert_eq!(contents(&wal), expected(&records, &lsns));
        // Zero-filled space beyond the end is the preallocated kind, not a torn write.
        assert_eq!(wal.log.report.torn_bytes, if fill == 0 { 0 } else { 1000 }, "fill {fill}");
        let lsn = wal.append(b"x").unwrap();
        wal.close().unwrap();
        let (wal, _) = open(store.image(), opts(1 << 20)).unwrap();
        assert_eq!(wal.log.read(lsn).unwrap(), b"x");
    }
}

#[test]
fn a_flipped_bit_before_the_last_write_is_corruption() {
    let records = payloads(40, 5);
    let (image, lsns) = build(&records, 4, opts(1 << 20));
    let base = *image.keys().next().unwrap();
    // Every bit of a record in the middle: its header and its payload.
    let target = 17;
    let pos = (lsns[target] - base) as usize;
    let frame_len = FRAME_HEADER + records[target].len();
    for bit in 0..frame_len * 8 {
        let mut bad = image.clone();
        bad.get_mut(&base).unwrap()[pos + bit / 8] ^= 1 << (bit % 8);
        match open(bad.clone(), opts(1 << 20)) {
            Err(e) => {
                assert_eq!(e.code, Code::Corrupt, "bit {bit}");
                assert_eq!(e.offset, Some(pos as u64), "bit {bit}: {e}");
                assert!(e.segment.is_some());
            }
            Ok(_) => panic!("bit {bit}: damage in a non-tail record was not detected"),
        }
        let (wal, _) = open(bad, Options { recovery: RecoveryMode::Truncate, ..opts(1 << 20) }).unwrap();
        assert_eq!(contents(&wal), expected(&records[..target], &lsns[..target]), "bit {bit}");
        assert_eq!(wal.log.report.cut_at, Some(lsns[target]));
        assert!(wal.log.report.dropped_bytes > 0);
    }
}

#[test]
fn a_flipped_bit_in_the_last_write_of_a_closed_log_is_corruption() {
    // The last group has no later commit marker to vouch for it but the one close writes.
    let records = payloads(12, 9);
    let (image, lsns) = build(&records, 4, opts(1 << 20));
    let base = *image.keys().next().unwrap();
    let target = 8; // the first record of the last group
    let pos = (lsns[target] - base) as usize;
    for bit in [0, 37, (FRAME_HEADER + records[target].len()) * 8 - 1] {
        let mut bad = image.clone();
        bad.get_mut(&base).unwrap()[pos + bit / 8] ^= 1 << (bit % 8);
        let err = open(bad.clone(), opts(1 << 20)).err().unwrap_or_else(|| panic!("bit {bit}: acknowledged records cut without a word"));
        assert_eq!((err.code, err.offset), (Code::Corrupt, Some(pos as u64)), "bit {bit}: {err}");
        let (wal, _) = open(bad, Options { recovery: RecoveryMode::Truncate, ..opts(1 << 20) }).unwrap();
        assert_eq!(contents(&wal), expected(&records[..target], &lsns[..target]), "bit {bit}");
        assert_eq!(wal.log.report.cut_at, Some(lsns[target]));
    }
}

#[test]
fn a_log_reopened_after_a_crash_is_sealed_by_its_next_clean_close_even_without_writes() {
    let records = payloads(12, 9);
    let (mut image, lsns) = build(&records, 4, opts(1 << 20));
    let base = *image.keys().next().unwrap();
    let last = lsns.len() - 1;
    let seal_at = (lsns[last] - base) as usize + FRAME_HEADER + records[last].len();
    // As a crash would have left it: no seal.
    image.get_mut(&base).unwrap()[seal_at..seal_at + 24].fill(0);
    let (wal, store) = open(image, opts(1 << 20)).unwrap();
    assert!(!wal.log.report.sealed);
    wal.close().unwrap();
    let mut sealed = store.image();
    let pos = (lsns[8] - base) as usize + FRAME_HEADER;
    sealed.get_mut(&base).unwrap()[pos] ^= 1;
    let err = open(sealed, opts(1 << 20)).err().expect("damage in the last write passed for a torn tail");
    assert_eq!(err.code, Code::Corrupt);
    // And a sealed log opened and closed without writes is left exactly as it was.
    let image = store.image();
    let (wal, store) = open(image.clone(), opts(1 << 20)).unwrap();
    assert!(wal.log.report.sealed);
    wal.close().unwrap();
    assert!(store.image() == image, "a sealed log was changed by an open and a close");
}

/// 200 records in groups of 3 over at least `segments` small segments: records, image, LSNs, segment bases.
fn sealed_segments(segments: usize) -> (Vec<Vec<u8>>, Image, Vec<u64>, Vec<u64>) {
    let records = payloads(200, 6);
    let (image, lsns) = build(&records, 3, opts(4096));
    let bases: Vec<u64> = image.keys().copied().collect();
    assert!(bases.len() >= segments);
    (records, image, lsns, bases)
}

#[test]
fn damage_in_a_sealed_segment_is_corruption() {
    let (records, image, lsns, bases) = sealed_segments(4);
    let sealed = bases[1];
    let in_sealed: Vec<usize> = (0..lsns.len()).filter(|&i| lsns[i] >= sealed && lsns[i] < bases[2]).collect();
    let last_in_sealed = *in_sealed.last().unwrap();

    // Flip a payload bit of the last record of a sealed segment.
    let mut bad = image.clone();
    let pos = (lsns[last_in_sealed] - sealed) as usize + FRAME_HEADER;
    bad.get_mut(&sealed).unwrap()[pos] ^= 0x10;
    assert_eq!(open(bad, opts(4096)).err().unwrap().code, Code::Corrupt);

    // Cut a sealed segment short (its last record vanishes).
    let mut bad = image.clone();
    let cut = (lsns[last_in_sealed] - sealed) as usize;
    bad.get_mut(&sealed).unwrap().truncate(cut);
    let e = open(bad.clone(), opts(4096)).err().unwrap();
    assert_eq!(e.code, Code::Corrupt, "{e}");
    let (wal, _) = open(bad, Options { recovery: RecoveryMode::Truncate, ..opts(4096) }).unwrap();
    assert_eq!(contents(&wal), expected(&records[..last_in_sealed], &lsns[..last_in_sealed]));

    // Damage the segment header.
    let mut bad = image.clone();
    bad.get_mut(&sealed).unwrap()[20] ^= 1;
    assert_eq!(open(bad, opts(4096)).err().unwrap().code, Code::Corrupt);

    // A segment missing in the middle.
    let mut bad = image.clone();
    bad.remove(&bases[2]);
    assert_eq!(open(bad, opts(4096)).err().unwrap().code, Code::Corrupt);
}

#[test]
fn the_earliest_of_two_damages_is_where_recovery_cuts() {
    // A bad record in one sealed segment and a bad header (or a missing segment) further on:
    // the record is the first damage, whatever the header check finds first.
    let (records, image, lsns, bases) = sealed_segments(5);
    let target = (0..lsns.len()).find(|&i| lsns[i] > bases[1] && lsns[i] + 200 < bases[2]).unwrap();
    let pos = (lsns[target] - bases[1]) as usize + FRAME_HEADER - 1;
    for later in ["header", "missing"] {
        let mut bad = image.clone();
        bad.get_mut(&bases[1]).unwrap()[pos] ^= 0x10;
        if later == "header" {
            bad.get_mut(&bases[3]).unwrap()[20] ^= 1;
        } else {
            bad.remove(&bases[3]);
        }
        let e = open(bad.clone(), opts(4096)).err().unwrap();
        assert_eq!((e.code, e.offset), (Code::Corrupt, Some(lsns[target] - bases[1])), "{later}: {e}");
        let (wal, _) = open(bad, Options { recovery: RecoveryMode::Truncate, ..opts(4096) }).unwrap();
        assert_eq!(contents(&wal), expected(&records[..target], &lsns[..target]), "{later}: a hole, or more kept than lies before the damage");
        assert_eq!(wal.log.report.cut_at, Some(lsns[target]), "{later}");
    }
}

#[test]
fn a_log_dropped_whole_for_a_bad_first_header_never_hands_out_an_old_lsn_again() {
    let records = payloads(60, 7);
    let (mut image, lsns) = build(&records, 3, opts(4096));
    let first = *image.keys().next().unwrap();
    image.get_mut(&first).unwrap()[20] ^= 1;
    // The newest segment cut short too: its records' LSNs were handed out all the same.
    let newest = *image.range(..=*lsns.last().unwrap()).next_back().unwrap().0;
    image.retain(|&b, _| b <= newest); // and no segment prepared after it
    image.get_mut(&newest).unwrap().truncate(crate::segment::SEGMENT_HEADER + 10);
    let (wal, _) = open(image, Options { recovery: RecoveryMode::Truncate, ..opts(4096) }).unwrap();
    assert!(contents(&wal).is_empty());
    let lsn = wal.append(b"the first record of the new log").unwrap();
    assert!(lsn > *lsns.last().unwrap(), "LSN {lsn} handed out again (the old log went up to {})", lsns.last().unwrap());
}

#[test]
fn an_empty_prepared_segment_after_the_tail_is_harmless() {
    let records = payloads(10, 7);
    let (mut image, lsns) = build(&records, 2, opts(1 << 20));
    let (&base, seg) = image.iter().next_back().unwrap();
    let next = base + 1_048_576;
    let header = crate::segment::encode_header(next, 1 << 20);
    let _ = seg;
    image.insert(next, header.to_vec());
    let (wal, _) = open(image, opts(1 << 20)).unwrap();
    assert_eq!(contents(&wal), expected(&records, &lsns));
}

#[test]
fn truncate_from_and_before_survive_reopen() {
    let records = payloads(300, 8);
    let (image, lsns) = build(&records, 5, opts(4096));
    let (wal, store) = open(image, opts(4096)).unwrap();
    // Cut in the middle of a group in a middle segment.
    let cut = 152;
    wal.truncate_from(lsns[cut]).unwrap();
    assert_eq!(wal.log.bounds().1, lsns[cut]);
    let more = wal.append_batch(&[b"one", b"two"]).unwrap();
    assert!(more[0] >= lsns[cut]);
    let first = wal.truncate_before(lsns[100]).unwrap();
    assert!(first > lsns[0] && first <= lsns[100]);
    wal.close().unwrap();

    let (wal, _) = open(store.image(), opts(4096)).unwrap();
    let got = contents(&wal);
    let kept_from = lsns.iter().position(|&l| l >= first).unwrap();
    let mut want = expected(&records[kept_from..cut], &lsns[kept_from..cut]);
    want.push((more[0], b"one".to_vec()));
    want.push((more[1], b"two".to_vec()));
    assert_eq!(got, want);
    assert_eq!(wal.log.read(lsns[0]).unwrap_err().code, Code::NotFound);
}

#[test]
fn truncate_from_rejects_positions_inside_records() {
    let records = payloads(10, 9);
    let (image, lsns) = build(&records, 10, opts(1 << 20));
    let (wal, _) = open(image, opts(1 << 20)).unwrap();
    assert_eq!(wal.truncate_from(lsns[3] + 1).unwrap_err().code, Code::InvalidArg);
    assert_eq!(wal.truncate_from(lsns[9] + 10_000).unwrap_err().code, Code::InvalidArg);
    assert_eq!(contents(&wal), expected(&records, &lsns));
    wal.truncate_from(lsns[0]).unwrap();
    assert!(contents(&wal).is_empty());
    assert_eq!(wal.log.bounds().0, wal.log.bounds().1);
}

#[test]
fn emptying_the_log_never_renumbers() {
    let records = payloads(100, 10);
    let (image, lsns) = build(&records, 10, opts(4096));
    let (wal, store) = open(image, opts(4096)).unwrap();
    let end = wal.log.bounds().1;
    wal.truncate_before(u64::MAX / 2).unwrap();
    wal.close().unwrap();
    let (wal, _) = open(store.image(), opts(4096)).unwrap();
    let lsn = wal.append(b"later").unwrap();
    assert!(lsn > *lsns.last().unwrap() && lsn >= end);
}

#[test]
fn oversized_records_reject_their_group_only() {
    let (wal, _) = open(Image::new(), opts(1 << 20)).unwrap();
    let big = vec![1u8; 1001];
    assert_eq!(wal.append(&big).unwrap_err().code, Code::RecordTooLarge);
    let lsn = wal.append(b"fine").unwrap();
    assert_eq!(wal.log.read(lsn).unwrap(), b"fine");
}

#[test]
fn a_failing_store_poisons_the_log() {
    struct FailingSync(MemStore, std::sync::atomic::AtomicBool);
    impl Store for FailingSync {
        fn list(&self) -> crate::error::Result<Vec<u64>> { self.0.list() }
        fn create(&self, b: u64, h: &[u8], p: u64) -> crate::error::Result<()> { self.0.create(b, h, p) }
        fn remove(&self, b: u64) -> crate::error::Result<()> { self.0.remove(b) }
        fn write_at(&self, b: u64, p: u64, bufs: &[&[u8]]) -> crate::error::Result<()> { self.0.write_at(b, p, bufs) }
        fn read_at(&self, b: u64, p: u64, buf: &mut [u8]) -> crate::error::Result<usize> { self.0.read_at(b, p, buf) }
        fn len(&self, b: u64) -> crate::error::Result<u64> { self.0.len(b) }
        fn truncate(&self, b: u64, l: u64) -> crate::error::Result<()> { self.0.truncate(b, l) }
        fn sync(&self, b: u64) -> crate::error::Result<()> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::error::WalError::io("sync", std::io::Error::from_raw_os_error(5)));
            }
            self.0.sync(b)
        }
    }
    let store = Arc::new(FailingSync(MemStore::new(), false.into()));
    let wal = Wal::open(store.clone(), opts(1 << 20)).unwrap();
    let ok = wal.append(b"before").unwrap();
    store.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = wal.append(b"during").unwrap_err();
    assert_eq!(e.code, Code::Poisoned);
    assert_eq!(e.errno, Some(5));
    store.1.store(false, std::sync::atomic::Ordering::SeqCst);
    // Never retried into a success.
    assert_eq!(wal.append(b"after").unwrap_err().code, Code::Poisoned);
    assert_eq!(wal.sync().unwrap_err().code, Code::Poisoned);
    assert_eq!(wal.log.read(ok).unwrap(), b"before");
    assert_eq!(wal.log.bounds().1, ok + FRAME_HEADER as u64 + 6);
}

#[test]
fn read_only_opens_report_damage_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = || Options { preallocate: false, ..opts(4096) };
    let records = payloads(40, 11);
    let wal = Wal::open_dir(dir.path(), o()).unwrap();
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
    let lsns = wal.append_batch(&refs).unwrap();
    wal.close().unwrap();
    drop(wal);
    // A torn tail: garbage after the last record of the last segment.
    let last = *lsns.last().unwrap();
    let seg = dir.path().join(crate::segment::file_name(last - last % 4096));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&seg, &bytes).unwrap();
    let files_before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();

    let ro = Options { read_only: true, ..o() };
    let a = Wal::open_dir(dir.path(), ro.clone()).unwrap();
    let b = Wal::open_dir(dir.path(), ro.clone()).unwrap(); // readers share the lock
    assert_eq!(a.log.report.torn_bytes, 100);
    assert_eq!(a.records(0).unwrap(), expected(&records, &lsns));
    assert_eq!(a.append(b"no").unwrap_err().code, Code::InvalidArg);
    assert_eq!(Wal::open_dir(dir.path(), o()).err().unwrap().code, Code::Locked); // no writer meanwhile
    a.close().unwrap();
    b.close().unwrap();
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the torn tail is left in place");
    let files_after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files_before.len(), files_after.len(), "no segment prepared or removed");
    // A writer locks readers out, and a missing directory is not created.
    let w = Wal::open_dir(dir.path(), o()).unwrap();
    assert_eq!(Wal::open_dir(dir.path(), ro.clone()).err().unwrap().code, Code::Locked);
    drop(w);
    assert_eq!(Wal::open_dir(&dir.path().join("missing"), ro).err().unwrap().code, Code::NotFound);
    assert!(!dir.path().join("missing").exists());
}

/// Frames for `records`, sealed, behind a commit marker at `lsn`.
fn epoch(lsn: u64, prev_end: u64, durable_end: u64, records: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = crate::frame::marker(lsn, prev_end, durable_end).to_vec();
    for r in records {
        let at = bytes.len();
        bytes.extend_from_slice(&[0u8; 4]);
        bytes.extend_from_slice(&(r.len() as u32).to_le_bytes());
        bytes.extend_from_slice(r);
        crate::frame::seal_record(&mut bytes[at..]);
    }
    bytes
}

/// Two epochs in flight at a power loss: the second was written while the first was still
/// syncing, and only the second reached the disk intact. Its marker claims no more than what
/// was durable before the first, so the damage is the torn tail of unacknowledged writes, not
/// corruption — unless the marker claims the first epoch was durable.
#[test]
fn a_torn_epoch_overtaken_by_the_next_is_a_torn_tail_unless_a_marker_vouches_for_it() {
    let records = payloads(12, 9);
    let (image, lsns) = build(&records, 4, opts(1 << 20));
    let base = *image.keys().next().unwrap();
    let end = lsns.last().unwrap() + (FRAME_HEADER + records.last().unwrap().len()) as u64;
    let first = payloads(3, 10);
    let second = payloads(2, 11);
    let e1 = epoch(end, end, end, &first);
    let end1 = end + e1.len() as u64;
    for (claim, corrupt) in [(end, false), (end1, true)] {
        let e2 = epoch(end1, end1, claim, &second);
        for tear in [5usize, 24, 24 + 3, e1.len() - 1] {
            let mut img = image.clone();
            let seg = img.get_mut(&base).unwrap();
            let at = (end - base) as usize;
            seg.resize(at + e1.len() + e2.len() + 100, 0);
            seg[at..at + e1.len()].copy_from_slice(&e1);
            seg[at + e1.len()..at + e1.len() + e2.len()].copy_from_slice(&e2);
            seg[at + tear] ^= 0x40; // the first epoch did not land whole
            match open(img, opts(1 << 20)) {
                Ok((wal, store)) => {
                    assert!(!corrupt, "claim {claim}, tear {tear}: damage the second marker vouches for was cut as a torn tail");
                    // What survives is the first epoch's frames before the damaged one.
                    let mut want = expected(&records, &lsns);
                    let mut kept = if tear < 24 { 0 } else { 24 };
                    for r in &first {
                        let size = FRAME_HEADER + r.len();
                        if tear < 24 || kept + size > tear {
                            break;
                        }
                        want.push((end + kept as u64, r.clone()));
                        kept += size;
                    }
                    assert!(contents(&wal) == want, "tear {tear}: the log before the two epochs and the first's intact prefix");
                    assert!(wal.log.report.torn_bytes > 0);
                    // Nothing of the second epoch comes back later: new appends take its place.
                    let lsn = wal.append(b"after").unwrap();
                    assert_eq!(lsn, end + kept as u64 + 24);
                    wal.close().unwrap();
                    let (wal, _) = open(store.image(), opts(1 << 20)).unwrap();
                    want.push((lsn, b"after".to_vec()));
                    assert!(contents(&wal) == want, "tear {tear}: after a reopen");
                }
                Err(e) => {
                    assert!(corrupt, "claim {claim}, tear {tear}: a torn in-flight epoch refused: {e}");
                    assert_eq!(e.code, Code::Corrupt);
                }
            }
        }
    }
}
