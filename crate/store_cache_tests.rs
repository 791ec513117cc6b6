//! The descriptor cache against removal: a reader that opened a segment just before it was
//! removed and made anew must not leave the removed file's descriptor cached, or the log would go
//! on writing (and syncing) a file that no longer has a name.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use crate::log::DirectMode;
use crate::store::{FileStore, Store};

#[test]
fn a_descriptor_opened_before_a_removal_is_not_cached_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1 << 20;
    let first = FileStore::open(dir.path(), false, DirectMode::Off).unwrap();
    first.create(base, b"first life", 0).unwrap();
    first.close();
    // Opened anew: nothing cached, so the next use of the segment opens its file.
    let store = FileStore::open(dir.path(), false, DirectMode::Off).unwrap();
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
    let base = 1 << 20;
    let first = FileStore::open(dir.path(), false, DirectMode::Off).unwrap();
    first.create(base, b"a segment", 0).unwrap();
    first.close();
    let store = FileStore::open(dir.path(), false, DirectMode::Off).unwrap();
    store.cached_file(base, |path| {
        let file = File::open(path);
        store.close();
        file
    })
    .unwrap();
    let mut opened = false;
    store
        .cached_file(base, |path| {
            opened = true;
            File::open(path)
        })
        .unwrap();
    assert!(opened, "a descriptor was cached in the closed store");
}
