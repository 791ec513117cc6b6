//! Every platform syscall the log makes: positioned I/O, the true durability barrier,
//! directory sync and the advisory directory lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Flush `file`'s data to stable storage.
///
/// Linux: `fdatasync`. macOS: `fcntl(F_FULLFSYNC)`, because plain `fsync` there leaves data in
/// the drive's cache. Windows: `FlushFileBuffers` (what `sync_data` calls).
#[cfg(target_os = "macos")]
pub fn durable_sync(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: the descriptor is valid while `file` is borrowed; F_FULLFSYNC takes no pointer.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
pub fn durable_sync(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// Make a directory's entries (created, renamed, removed files) durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    durable_sync(&handle)
}

/// NTFS journals directory changes but writes its journal lazily, so a create or delete can be
/// undone by a power loss: flushing a handle to the directory (opened for writing, with backup
/// semantics, as a directory must be) makes them durable. A file system that refuses to flush a
/// directory leaves nothing to do here but what NTFS's own journal gives, as before.
#[cfg(windows)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
    // ERROR_INVALID_FUNCTION, ERROR_ACCESS_DENIED, ERROR_NOT_SUPPORTED, ERROR_INVALID_PARAMETER.
    let refused = |e: &io::Error| matches!(e.raw_os_error(), Some(1 | 5 | 50 | 87));
    let flushed = OpenOptions::new().read(true).write(true).custom_flags(FILE_FLAG_BACKUP_SEMANTICS).open(dir).and_then(|handle| handle.sync_all());
    match flushed {
        Err(e) if refused(&e) => Ok(()),
        other => other,
    }
}

#[cfg(not(any(unix, windows)))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Take the advisory lock on a log directory: exclusive for a writer, shared for read-only
/// opens. Held for as long as the returned files live; `Ok(None)` when a conflicting lock is
/// held (see `dir_lock`, which also keeps opens within this process apart).
///
/// The lock is on the `LOCK` file, and on Unix on the directory itself too. A read-only open
/// creates nothing, so where the `LOCK` file is missing (a log copied without it) it has only
/// the directory to lock; a writer locks both, and so meets it whichever it finds.
pub fn lock_dir(dir: &Path, shared: bool) -> io::Result<Option<Vec<File>>> {
    let mut held = Vec::new();
    #[cfg(unix)]
    {
        let handle = File::open(dir)?;
        match try_lock(&handle, shared) {
            Ok(true) => held.push(handle),
            Ok(false) => return Ok(None),
            // A file system that cannot lock a directory (NFS emulates flock with fcntl locks,
            // and an exclusive one needs a descriptor open for writing): the LOCK file alone
            // serves, as it did before the directory was locked too.
            Err(_) => {}
        }
    }
    let path = dir.join("LOCK");
    let file = if shared {
        match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(held)),
            Err(e) => return Err(e),
        }
    } else {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?
    };
    if !try_lock(&file, shared)? {
        return Ok(None);
    }
    held.push(file);
    Ok(Some(held))
}

/// Try to lock `file` (shared or exclusive) without waiting: `false` if a conflicting lock is held.
fn try_lock(file: &File, shared: bool) -> io::Result<bool> {
    match if shared { file.try_lock_shared() } else { file.try_lock() } {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Open `path` for writes that bypass the page cache (Linux `O_DIRECT`). Elsewhere, and where
/// the file system refuses it, an error of kind `InvalidInput` (EINVAL).
#[cfg(target_os = "linux")]
pub fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)
}

#[cfg(not(target_os = "linux"))]
pub fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::new(io::ErrorKind::InvalidInput, "direct I/O is used on Linux only"))
}

/// Write every byte of `bufs` at `offset`, as one vectored positioned write where the OS has it.
#[cfg(unix)]
pub fn pwritev_all(file: &File, mut offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    const MAX_IOV: usize = 512;
    let mut index = 0; // first slice not yet fully written
    let mut skip = 0; // bytes of bufs[index] already written
    while index < bufs.len() {
        let iov: Vec<libc::iovec> = bufs[index..bufs.len().min(index + MAX_IOV)]
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let b = if i == 0 { &b[skip..] } else { b };
                libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }
            })
            .collect();
        // SAFETY: every iovec points into a live slice borrowed for this call.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset as libc::off_t) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "the file accepted zero bytes"));
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 && index < bufs.len() {
            let left = bufs[index].len() - skip;
            if n >= left {
                n -= left;
                index += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
        while index < bufs.len() && bufs[index].len() == skip {
            index += 1;
            skip = 0;
        }
    }
    Ok(())
}

#[cfg(windows)]
pub fn pwritev_all(file: &File, mut offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    for buf in bufs {
        let mut buf: &[u8] = buf;
        while !buf.is_empty() {
            match file.seek_write(buf, offset) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file accepted zero bytes")),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Fill `buf` from `offset`; returns fewer bytes only at end of file.
pub fn pread_fill(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_at(file, buf, offset);
        #[cfg(windows)]
        let r = std::os::windows::fs::FileExt::seek_read(file, buf, offset);
        match r {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                offset += n as u64;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}
