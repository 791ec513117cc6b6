//! Open segment descriptors, kept for reuse but bounded: a log of thousands of segments must not
//! hold a descriptor for each, or it runs out of them (and cannot even be reopened).

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Descriptors kept open per kind (page-cache and direct).
pub const MAX_OPEN: usize = 64;

/// The newest segments are never closed here: the committer writes and syncs them, and a barrier
/// must go through the descriptor the writes did (an epoch may end in the segment before the
/// active one while the next is being prepared).
const KEEP_NEWEST: usize = 4;

#[derive(Default)]
pub struct Descriptors {
    map: BTreeMap<u64, Entry>,
    /// Counts uses, to find the least recently used.
    clock: AtomicU64,
}

struct Entry {
    file: Arc<File>,
    used: AtomicU64,
}

impl Descriptors {
    /// Segment `base`'s descriptor, if kept; marks it used (under a shared lock, hence atomics).
    pub fn get(&self, base: u64) -> Option<Arc<File>> {
        let entry = self.map.get(&base)?;
        entry.used.store(self.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(entry.file.clone())
    }

    /// Keep `file` for `base` unless one is kept already (returned instead), then close the least
    /// recently used past `MAX_OPEN`. A reader still holding a closed one keeps it until done.
    pub fn insert(&mut self, base: u64, file: Arc<File>) -> Arc<File> {
        let used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed));
        let file = self.map.entry(base).or_insert(Entry { file, used }).file.clone();
        while self.map.len() > MAX_OPEN {
            let evictable = self.map.len() - KEEP_NEWEST;
            let oldest = self.map.iter().take(evictable).min_by_key(|(_, e)| e.used.load(Ordering::Relaxed)).map(|(&b, _)| b);
            match oldest {
                Some(b) => self.map.remove(&b),
                None => break,
            };
        }
        file
    }

    pub fn remove(&mut self, base: u64) {
        self.map.remove(&base);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<File> {
        Arc::new(File::open(std::env::current_exe().unwrap()).unwrap())
    }

    #[test]
    fn keeps_at_most_max_open_closing_the_least_recently_used_but_never_the_newest() {
        let mut d = Descriptors::default();
        for base in 0..MAX_OPEN as u64 {
            d.insert(base, file());
        }
        // An old segment a reader keeps using stays; the oldest one left alone goes.
        d.get(0).unwrap();
        d.insert(1000, file());
        assert_eq!(d.len(), MAX_OPEN);
        assert!(d.get(0).is_some() && d.get(1).is_none() && d.get(2).is_some());
        // Two old segments read in turn do not push each other out.
        for round in 0..10 {
            d.get(0).unwrap();
            if round == 0 {
                d.insert(1, file());
            }
            d.get(1).unwrap();
        }
        assert!(d.get(0).is_some() && d.get(1).is_some());
        // The newest few stay however long since their last use, whatever is read below them.
        for base in 2000..2004 {
            d.insert(base, file());
        }
        for base in 100..300 {
            d.insert(base, file());
            d.get(base).unwrap();
        }
        assert_eq!(d.len(), MAX_OPEN);
        assert!((2000..2004).all(|b| d.get(b).is_some()));
    }
}
