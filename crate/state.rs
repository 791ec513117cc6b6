//! What the log knows about its durable contents: the segments, where each one's valid data
//! ends, and a sparse index of frame positions used to find record boundaries without keeping
//! an entry per record in memory.

use std::collections::BTreeMap;

use crate::segment::SEGMENT_HEADER;

/// One index point per this many bytes of log, at most.
pub const SPARSE_GAP: u64 = 4096;

#[derive(Clone, Debug)]
pub struct SegState {
    pub capacity: u64,
    /// Position just past the last durable frame.
    pub end: u64,
    /// Position of the first record, if the segment has one.
    pub first_record: Option<u64>,
    /// Frame positions, ascending, the first being `SEGMENT_HEADER`.
    pub sparse: Vec<u64>,
}

impl SegState {
    pub fn empty(capacity: u64) -> SegState {
        SegState { capacity, end: SEGMENT_HEADER as u64, first_record: None, sparse: vec![SEGMENT_HEADER as u64] }
    }

    /// The closest indexed frame position at or before `pos`.
    pub fn floor(&self, pos: u64) -> u64 {
        let i = self.sparse.partition_point(|&p| p <= pos);
        self.sparse[i.saturating_sub(1)]
    }
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub segs: BTreeMap<u64, SegState>,
    /// LSN of the oldest record, or `next_lsn` when the log holds none.
    pub first_lsn: u64,
    /// LSN just past the newest durable frame: every record has a smaller LSN, every later
    /// append a larger one.
    pub next_lsn: u64,
}

impl State {
    pub fn refresh_bounds(&mut self) {
        let (&base, last) = self.segs.iter().next_back().expect("a log always has a segment");
        self.next_lsn = base + last.end;
        self.first_lsn = self
            .segs
            .iter()
            .find_map(|(b, s)| s.first_record.map(|p| b + p))
            .unwrap_or(self.next_lsn);
    }

    /// The segment holding `lsn` and its position there, if `lsn` lies in durable data.
    pub fn segment_of(&self, lsn: u64) -> Option<(u64, &SegState, u64)> {
        let (&base, seg) = self.segs.range(..=lsn).next_back()?;
        let pos = lsn - base;
        (pos >= SEGMENT_HEADER as u64 && pos < seg.end).then_some((base, seg, pos))
    }
}
