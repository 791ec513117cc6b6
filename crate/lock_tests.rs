//! The directory lock against a forked child: a child process holds a copy of the lock's
//! descriptor from the fork until it execs or exits, which must not turn a reopen into
//! `ERR_LOCKED` — while a second open in this process, or in another, is still refused.

use crate::error::Code;
use crate::log::Options;
use crate::wal::Wal;

#[test]
fn a_reopen_waits_out_a_forked_childs_copy_of_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    // No segment prepared in the background: closing is quick, well inside the child's hold.
    let opts = || Options { preallocate: false, ..Options::default() };
    let wal = Wal::open_dir(dir.path(), opts()).unwrap();
    let lsn = wal.append(b"before the fork").unwrap();
    // SAFETY: the child only sleeps and exits, both async-signal-safe, so forking this
    // multi-threaded process is sound. It holds the inherited lock descriptor for 50 ms.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        unsafe {
            libc::usleep(50_000);
            libc::_exit(0);
        }
    }
    wal.close().unwrap();
    drop(wal);
    let mut status = 0;
    let alive = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == 0;
    assert!(alive, "set-up: the child exited before the reopen, which would then prove nothing");
    // The child still holds its copy: the reopen waits for it instead of failing.
    let reopened = Wal::open_dir(dir.path(), opts());
    unsafe { libc::waitpid(child, &mut status, 0) };
    let reopened = reopened.unwrap_or_else(|e| panic!("reopen refused while a forked child held a copy of the lock: {e}"));
    assert_eq!(reopened.records(0).unwrap(), vec![(lsn, b"before the fork".to_vec())]);
    // An open in this process is still refused, at once, and says where the holder is.
    let second = Wal::open_dir(dir.path(), opts()).err().unwrap();
    assert_eq!(second.code, Code::Locked);
    assert!(second.message.contains("in this process"), "{}", second.message);
    reopened.close().unwrap();
}
