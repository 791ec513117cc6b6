//! Direct writes against a model: random appends (from a few bytes to past the staging buffer,
//! in several slices), truncations, zero-fills and reopens on two segments, each followed by a
//! check that the files, and reads through the store, hold what the same operations leave in
//! a `MemStore` up to where each segment's data ends. Reads near the end, which the ring serves
//! from memory when it holds them, are checked too, and some must have been served that way.
//! Under `DirectMode::Auto` the large writes go through the page cache instead, between direct
//! ones: the same checks hold.

use std::path::Path;

use crate::direct_io::{align_down, align_up, RING};
use crate::log::{DirectMode, AUTO_DIRECT_MAX};
use crate::store::{FileStore, MemStore, Store};

const BASES: [u64; 2] = [0, 1 << 40];
const HEADER: usize = 64;

fn open(dir: &Path, mode: DirectMode) -> FileStore {
    FileStore::open(dir, false, mode).unwrap()
}

fn payload(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    // Non-zero bytes, so zeros written where data belongs would show.
    (0..n).map(|_| rng.u8(1..=255)).collect()
}

fn check(file: &FileStore, model: &MemStore, dir: &Path, ends: &[u64; 2], what: &str, rng: &mut fastrand::Rng) {
    for (i, &base) in BASES.iter().enumerate() {
        let end = ends[i] as usize;
        let mut want = vec![0u8; end];
        assert_eq!(model.read_at(base, 0, &mut want).unwrap(), end);
        let on_disk = std::fs::read(dir.join(crate::segment::file_name(base))).unwrap();
        assert!(on_disk.len() >= end, "{what}: segment {i} is {} bytes, data ends at {end}", on_disk.len());
        assert!(on_disk[..end] == want[..], "{what}: segment {i} differs on disk");
        assert!(on_disk[end..].iter().all(|&b| b == 0), "{what}: segment {i} has non-zero bytes after the end");
        let mut read = vec![0u8; end];
        assert_eq!(file.read_at(base, 0, &mut read).unwrap(), end);
        assert!(read == want, "{what}: segment {i} reads back differently");
        // Small reads near the end: inside the ring's window, across its start, or before it.
        for k in 0..6 {
            let reach = if k % 2 == 0 { 4096 } else { RING + (256 << 10) };
            let back = rng.u64(1..=reach.min(end as u64));
            let from = end as u64 - back;
            let len = rng.u64(1..=back.min(200_000)) as usize;
            let mut got = vec![0u8; len];
            assert_eq!(file.read_at(base, from, &mut got).unwrap(), len);
            let from = from as usize;
            assert!(got[..] == want[from..from + len], "{what}: segment {i}, {len} bytes at {from} read back differently");
        }
    }
}

#[test]
fn direct_writes_match_a_model() {
    writes_match_a_model(DirectMode::Always);
}

#[test]
fn auto_direct_writes_match_a_model() {
    writes_match_a_model(DirectMode::Auto);
}

fn writes_match_a_model(mode: DirectMode) {
    for seed in 0..8u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut file = open(dir, mode);
        let model = MemStore::new();
        let mut ends = [HEADER as u64; 2];
        let mut hits = 0;
        // Where each segment's span of bytes held in the ring began, if the ring is on it.
        let mut window: [Option<u64>; 2] = [None; 2];
        for (i, &base) in BASES.iter().enumerate() {
            let header = payload(&mut rng, HEADER);
            let prealloc = if rng.bool() { 64 << 10 } else { 0 };
            file.create(base, &header, prealloc).unwrap();
            model.create(base, &header, prealloc).unwrap();
            ends[i] = HEADER as u64;
        }
        for step in 0..120 {
            let i = usize::from(rng.u8(..8) == 0);
            let base = BASES[i];
            let what = format!("seed {seed} step {step}");
            match rng.u8(..20) {
                0 => {
                    // Cut back to an earlier point, as truncateFrom and recovery do.
                    let to = rng.u64(HEADER as u64..=ends[i]);
                    file.truncate(base, to).unwrap();
                    model.truncate(base, to).unwrap();
                    window[i] = window[i].map(|began| began.min(to));
                    ends[i] = to;
                }
                1 => {
                    let from = ends[i] + rng.u64(..10_000);
                    let to = from + rng.u64(..300_000);
                    file.zero_fill(base, from, to).unwrap();
                    model.zero_fill(base, from, to).unwrap();
                }
                2 => {
                    hits += file.ring_hits();
                    window = [None; 2];
                    file.close();
                    drop(file);
                    file = open(dir, mode);
                }
                _ => {
                    let n = match rng.u8(..40) {
                        0 => rng.usize(4 << 20..9 << 20), // several stagings
                        1..=12 => rng.usize(4000..200_000),
                        _ => rng.usize(1..5000),
                    };
                    let bytes = payload(&mut rng, n);
                    let mut cuts: Vec<usize> = (0..rng.usize(0..4)).map(|_| rng.usize(0..=n)).collect();
                    cuts.sort_unstable();
                    let mut slices = Vec::new();
                    let mut from = 0;
                    for c in cuts.into_iter().chain([n]) {
                        slices.push(&bytes[from..c]);
                        from = c;
                    }
                    file.write_at(base, ends[i], &slices).unwrap();
                    model.write_at(base, ends[i], &slices).unwrap();
                    ends[i] += n as u64;
                    if mode == DirectMode::Auto && n as u64 >= AUTO_DIRECT_MAX {
                        // Written through the page cache: the ring holds none of it.
                        window[i] = None;
                        check(&file, &model, dir, &ends, &what, &mut rng);
                        continue;
                    }
                    // The ring holds everything written since its window began on this segment (at
                    // the block of a write it did not hold the start of), up to RING bytes back
                    // from the end's block boundary.
                    let lead = align_down(ends[i] - n as u64);
                    let began = window[i].filter(|&began| began <= lead).unwrap_or(lead);
                    let from = began.max(align_up(ends[i]).saturating_sub(RING));
                    (window[i], window[1 - i]) = (Some(from), None);
                    let (mut got, hits) = (vec![0u8; (ends[i] - from) as usize], file.ring_hits());
                    file.read_at(base, from, &mut got).unwrap();
                    assert_eq!(file.ring_hits(), hits + 1, "{what}: the bytes from {from} to {} were not read from the ring", ends[i]);
                    let mut want = vec![0u8; got.len()];
                    model.read_at(base, from, &mut want).unwrap();
                    assert!(got == want, "{what}: the bytes from {from} read back from the ring differently");
                }
            }
            check(&file, &model, dir, &ends, &what, &mut rng);
        }
        // Nothing above fell back to the page cache (a file system without O_DIRECT would).
        assert!(file.writes_directly(), "seed {seed}: direct writes were refused");
        hits += file.ring_hits();
        assert!(hits >= 200, "seed {seed}: only {hits} of 1,440 reads were served from the ring");
        file.close();
    }
}
