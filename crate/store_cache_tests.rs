//! The descriptor cache against removal: a reader that opened a segment just before it was
//! removed and made anew must not leave the removed file's descriptor cached, or the log would go
//! on writing (and syncing) a file that no longer has a name.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use crate::log::DirectMode;
use crate::store::{FileStore, Store};

const BASE: u64 = 1 << 20;

/// A store over one segment at `BASE`, opened with nothing cached: its next use opens the file.
fn store_of_one_segment(dir: &tempfile::TempDir) -> FileStore {
    let first = FileStore::open(dir.path(), false, DirectMode::Off).unwrap();
    first.create(BASE, b"first life", 0).unwrap();
    first.close();
    FileStore::open(dir.path(), false, DirectMode::Off).unwrap()
}

#[test]
fn a_descriptor_opened_before_a_removal_is_not_cached_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = BASE;
    let store = store_of_one_segment(&dir);
    let stale_ino = std::fs::metadata(dir.path().join(crate::segment::file_name(base))).unwrap().ino();
    // The reader's open, and then, before it caches what it opened, a removal and a re-creation.
    let mut opened = false;
    let got = store
        .cached_file(base, |path| {
            opened = true;
            let stale = File::open(path);
            store.remove(base).unwrap();
            store.create(base, b"second life", 0).unwrap();
            stale
        })
        .unwrap();
    assert!(opened, "the segment was cached already");
    assert_eq!(got.metadata().unwrap().ino(), stale_ino, "the reader gets what it opened, for this one use");
    let live = std::fs::metadata(dir.path().join(crate::segment::file_name(base))).unwrap().ino();
    let cached = store.cached_file(base, |_| panic!("the live segment is cached")).unwrap();
    assert_eq!(cached.metadata().unwrap().ino(), live, "the cache holds the removed file instead of the live one");
}

#[test]
fn a_read_that_began_before_close_caches_nothing_in_the_closed_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of_one_segment(&dir);
    store.cached_file(BASE, |path| {
        let file = File::open(path);
        store.close();
        file
    })
    .unwrap();
    let mut opened = false;
    store
        .cached_file(BASE, |path| {
            opened = true;
            File::open(path)
        })
        .unwrap();
    assert!(opened, "a descriptor was cached in the closed store");
}
