//! A large batch framed on the native side. Its records are copied once, into slices of memory
//! the log owns (outside the JavaScript heap, so staging 100 MiB does not make V8 collect a heap
//! that may hold a million live buffers), and each slice goes to the committer as soon as it is
//! full: the disk writes one slice while the next is copied. Memory for every slice is taken,
//! and every length checked, before any is sent, so a batch that cannot have it or holds a
//! record too large fails whole, with nothing written.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::committer::{Command, Done};
use crate::error::{Code, Result, WalError};
use crate::frame::FRAME_HEADER;
use crate::wal::Wal;

/// A slice is closed, and sent, once it holds this many bytes (one record may take it past).
pub const SLICE_BYTES: usize = 8 << 20;

/// One slice: its framed size and how many records it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slice {
    bytes: usize,
    records: usize,
}

/// How records of byte lengths `lens` fill slices, after checking each against
/// `max_record_bytes`.
fn slices_of(lens: &[usize], max_record_bytes: u32) -> Result<Vec<Slice>> {
    let mut slices: Vec<Slice> = Vec::new();
    for &len in lens {
        if len > max_record_bytes as usize {
            return Err(WalError::new(
                Code::RecordTooLarge,
                format!("record of {len} bytes exceeds maxRecordBytes ({max_record_bytes})"),
            ));
        }
        match slices.last_mut() {
            Some(s) if s.bytes < SLICE_BYTES => {
                s.bytes += FRAME_HEADER + len;
                s.records += 1;
            }
            _ => slices.push(Slice { bytes: FRAME_HEADER + len, records: 1 }),
        }
    }
    Ok(slices)
}

/// Memory for each slice, or `ERR_NO_MEMORY`. One byte more than the slice holds: a `put` may
/// write one byte past its record (a C string's NUL), which the next frame then covers.
fn reserve(slices: &[Slice]) -> Result<Vec<Vec<u8>>> {
    slices
        .iter()
        .map(|s| {
            let mut b = Vec::new();
            b.try_reserve_exact(s.bytes + 1).map_err(|_| {
                WalError::new(Code::NoMemory, format!("could not allocate {} bytes to stage a batch", s.bytes))
            })?;
            Ok(b)
        })
        .collect()
}

/// The committer's answers for a batch's slices, joined into one answer once all are in.
struct Answers {
    /// Slices sent and not yet answered, plus one until staging ends.
    outstanding: usize,
    /// Each slice's batch offset and anchors (`[slice offset, lsn]` pairs), once answered.
    anchors: Vec<(usize, Option<Vec<f64>>)>,
    failed: Option<WalError>,
    done: Option<Done<Vec<f64>>>,
}

impl Answers {
    fn lock(this: &Mutex<Answers>) -> MutexGuard<'_, Answers> {
        this.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One report in: slice `k`'s answer, or (`k` of `None`) how staging ended.
    fn report(this: &Mutex<Answers>, k: Option<usize>, outcome: Result<Vec<f64>>) {
        let mut a = Answers::lock(this);
        match (k, outcome) {
            (Some(k), Ok(anchors)) => a.anchors[k].1 = Some(anchors),
            (None, Ok(_)) => {}
            (_, Err(e)) => {
                a.failed.get_or_insert(e);
            }
        }
        a.outstanding -= 1;
        if a.outstanding > 0 {
            return;
        }
        let done = a.done.take();
        let outcome = match a.failed.take() {
            Some(e) => Err(e),
            None => Ok(a.joined()),
        };
        drop(a);
        if let Some(done) = done {
            done(outcome);
        }
    }

    /// Every slice's anchors, their offsets counted from the start of the batch.
    fn joined(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for (start, anchors) in &self.anchors {
            for pair in anchors.as_deref().unwrap_or_default().chunks_exact(2) {
                out.extend([pair[0] + *start as f64, pair[1]]);
            }
        }
        out
    }
}

/// Frame a batch of records of byte lengths `lens` and hand it to the committer in slices of
/// about [`SLICE_BYTES`], in order after every command sent before. `put(i, len, buf)` appends
/// record `i`'s payload to `buf`, exactly `len` (`lens[i]`) bytes; records are put in order, each slice's just
/// before it is sent. `done` gets `[batch offset, lsn]` anchors once every record is durable, or
/// the first failure. A failure found before sending (a record too large, no memory) leaves
/// nothing written; one from `put`, or a payload of another length, fails the batch with the
/// slices before it sent. `put` may use the buffer's spare capacity, which always has room for
/// the record and one byte more.
pub fn send_batch(wal: &Wal, lens: &[usize], put: impl FnMut(usize, usize, &mut Vec<u8>) -> Result<()>, done: Done<Vec<f64>>) {
    let prepared = slices_of(lens, wal.log.opts.max_record_bytes).and_then(|slices| Ok((reserve(&slices)?, slices)));
    match prepared {
        Ok((buffers, slices)) => send_slices(wal, lens, &slices, buffers, put, done),
        Err(e) => done(Err(e)),
    }
}

fn send_slices(
    wal: &Wal,
    lens: &[usize],
    slices: &[Slice],
    buffers: Vec<Vec<u8>>,
    mut put: impl FnMut(usize, usize, &mut Vec<u8>) -> Result<()>,
    done: Done<Vec<f64>>,
) {
    let mut start = 0;
    let anchors = slices
        .iter()
        .map(|s| {
            let at = start;
            start += s.bytes;
            (at, None)
        })
        .collect();
    let answers = Arc::new(Mutex::new(Answers { outstanding: 1, anchors, failed: None, done: Some(done) }));
    let mut next = 0;
    let mut staged = Ok(Vec::new());
    'slices: for (k, (s, mut buf)) in slices.iter().zip(buffers).enumerate() {
        for (i, &len) in lens.iter().enumerate().skip(next).take(s.records) {
            buf.extend_from_slice(&[0; 4]);
            buf.extend_from_slice(&(len as u32).to_le_bytes());
            let before = buf.len();
            if let Err(e) = put(i, len, &mut buf) {
                staged = Err(e);
                break 'slices;
            }
            if buf.len() - before != len {
                staged = Err(WalError::invalid(format!("record {i} changed length while the batch was being appended")));
                break 'slices;
            }
        }
        next += s.records;
        Answers::lock(&answers).outstanding += 1;
        let mine = answers.clone();
        let answer: Done<Vec<f64>> = Box::new(move |r| Answers::report(&mine, Some(k), r));
        // A refused slice is answered through its `done` (the log closed or failed): the
        // batch fails with that, and the slices after it are not sent.
        if wal.send(Command::Append(vec![Box::new(buf)], answer)).is_err() {
            break;
        }
    }
    Answers::report(&answers, None, staged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Options;

    #[test]
    fn slices_close_once_full() {
        let max = u32::MAX;
        assert_eq!(slices_of(&[], max).unwrap(), vec![]);
        assert_eq!(slices_of(&[100, 100], max).unwrap(), vec![Slice { bytes: 216, records: 2 }]);
        assert_eq!(slices_of(&[100, 100], 99).unwrap_err().code, Code::RecordTooLarge);
        // A slice past the size takes no more records; a record larger than a slice goes alone.
        let big = SLICE_BYTES;
        assert_eq!(
            slices_of(&[100, big, 100, big, big], max).unwrap(),
            vec![
                Slice { bytes: 108 + big + 8, records: 2 },
                Slice { bytes: 108 + big + 8, records: 2 },
                Slice { bytes: big + 8, records: 1 },
            ]
        );
    }

    #[test]
    fn a_batch_of_many_slices_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_dir(dir.path(), Options::default()).unwrap();
        let first = wal.append(b"before").unwrap();
        // Several slices, of records of varied lengths.
        let records: Vec<Vec<u8>> = (0..30_000u32).map(|i| vec![(i % 251) as u8; 1000 + (i % 7) as usize]).collect();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let lens: Vec<usize> = refs.iter().map(|r| r.len()).collect();
        assert!(slices_of(&lens, u32::MAX).unwrap().len() > 3);
        let lsns = wal.append_batch(&refs).unwrap();
        assert!(lsns[0] > first);
        let after = wal.append(b"after").unwrap();
        assert!(after > *lsns.last().unwrap());
        drop(wal);
        let wal = Wal::open_dir(dir.path(), Options::default()).unwrap();
        let stored = wal.records(0).unwrap();
        assert_eq!(stored.len(), records.len() + 2);
        assert_eq!(stored[0], (first, b"before".to_vec()));
        for (i, (lsn, data)) in stored[1..=records.len()].iter().enumerate() {
            assert_eq!((*lsn, data), (lsns[i], &records[i]), "record {i}");
        }
        assert_eq!(stored[records.len() + 1], (after, b"after".to_vec()));
    }

    #[test]
    fn a_batch_sent_to_a_closed_log_fails_whole() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_dir(dir.path(), Options::default()).unwrap();
        wal.close().unwrap();
        let record = [1u8; 100];
        let err = wal.append_batch(&[&record[..]; 10]).unwrap_err();
        assert_eq!(err.code, Code::Closed);
    }

    #[test]
    fn a_record_too_large_fails_the_batch_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_dir(dir.path(), Options { max_record_bytes: 1000, ..Options::default() }).unwrap();
        let small = [1u8; 1000];
        let mut records: Vec<&[u8]> = vec![&small; 3 * SLICE_BYTES / 1000];
        let big = [2u8; 1001];
        records.push(&big);
        let err = wal.append_batch(&records).unwrap_err();
        assert_eq!(err.code, Code::RecordTooLarge);
        assert_eq!(wal.records(0).unwrap(), vec![]);
    }

    /// Sends `n` records of 1000 bytes whose `put` fails at record `fail_at`; returns the
    /// outcome and what the log holds after.
    fn put_failing_at(fail_at: usize, n: usize) -> (Result<Vec<f64>>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_dir(dir.path(), Options::default()).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let put = |i: usize, _len: usize, buf: &mut Vec<u8>| {
            if i == fail_at {
                return Err(WalError::invalid("not bytes"));
            }
            buf.extend_from_slice(&[7u8; 1000]);
            Ok(())
        };
        send_batch(&wal, &vec![1000; n], put, Box::new(move |r| tx.send(r).unwrap()));
        let outcome = rx.recv().unwrap();
        (outcome, wal.records(0).unwrap().len())
    }

    #[test]
    fn a_put_that_fails_fails_the_batch_after_the_slices_before_it() {
        let per_slice = SLICE_BYTES.div_ceil(1008);
        let (outcome, stored) = put_failing_at(2 * per_slice + 5, 4 * per_slice);
        assert_eq!(outcome.unwrap_err().code, Code::InvalidArg);
        assert_eq!(stored, 2 * per_slice);
        let (outcome, stored) = put_failing_at(0, 10);
        assert_eq!(outcome.unwrap_err().code, Code::InvalidArg);
        assert_eq!(stored, 0);
    }

    #[test]
    fn an_empty_batch_answers_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_dir(dir.path(), Options::default()).unwrap();
        assert_eq!(wal.append_batch(&[]).unwrap(), Vec::<u64>::new());
    }
}
