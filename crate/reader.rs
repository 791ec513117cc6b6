//! Buffered positioned reads over one segment, shared by recovery and by record lookups.

use crate::error::Result;
use crate::store::Store;

pub struct SegmentReader<'a> {
    store: &'a dyn Store,
    base: u64,
    len: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    chunk: usize,
}

impl<'a> SegmentReader<'a> {
    pub fn new(store: &'a dyn Store, base: u64, len: u64, chunk: usize) -> Self {
        SegmentReader { store, base, len, buf: Vec::new(), buf_pos: 0, chunk }
    }

    /// Bytes in the segment.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Up to `n` bytes at `pos` (fewer only where the segment ends).
    pub fn get(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        let want = (n as u64).min(self.len.saturating_sub(pos)) as usize;
        let have = pos >= self.buf_pos && pos + want as u64 <= self.buf_pos + self.buf.len() as u64;
        if !have {
            let size = want.max(self.chunk).min(self.len.saturating_sub(pos) as usize);
            self.buf.resize(size, 0);
            let got = self.store.read_at(self.base, pos, &mut self.buf)?;
            self.buf.truncate(got);
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        let end = (start + want).min(self.buf.len());
        Ok(&self.buf[start..end])
    }
}
