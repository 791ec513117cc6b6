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

/// NTFS journals directory metadata and offers no directory-handle flush for this purpose.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Take the advisory lock on a log directory: exclusive for a writer (keeping a second process,
/// or a second open in this process, off it), shared for read-only opens. Held for as long as
/// the returned file lives; `Ok(None)` when someone else holds a conflicting lock.
pub fn lock_dir(dir: &Path, shared: bool) -> io::Result<Option<File>> {
    let path = dir.join("LOCK");
    let file = if shared {
        // A reader writes nothing: without a LOCK file no writer has ever held this log open.
        match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(File::open(dir)?)),
            Err(e) => return Err(e),
        }
    } else {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?
    };
    let locked = if shared { file.try_lock_shared() } else { file.try_lock() };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
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

/// Block size that direct I/O offsets, lengths and buffers are aligned to (a multiple of every
/// logical block size in use).
#[cfg(target_os = "linux")]
const DIRECT_ALIGN: u64 = 4096;

/// Write zeros over `[from, to)` of the file at `path` (also open as `file`) without leaving
/// them in the page cache: the aligned middle goes through an `O_DIRECT` handle. A barrier on
/// the same file then has no megabytes of dirty zeros to write back first — buffered, a 16 MiB
/// fill turns the next commit's 0.3 ms barrier into 10 ms. The unaligned ends, and file systems
/// without direct I/O (tmpfs), are written through the page cache. Not yet durable.
#[cfg(target_os = "linux")]
pub fn write_zeros_uncached(file: &File, path: &Path, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    const CHUNK: usize = 1 << 20;
    let buffered = |from: u64, to: u64| -> io::Result<()> {
        let zeros = vec![0u8; CHUNK.min((to - from) as usize)];
        let mut at = from;
        while at < to {
            let n = (to - at).min(CHUNK as u64) as usize;
            pwritev_all(file, at, &[&zeros[..n]])?;
            at += n as u64;
        }
        Ok(())
    };
    let start = from.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
    let end = to / DIRECT_ALIGN * DIRECT_ALIGN;
    let direct = if start < end { OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok() } else { None };
    let Some(direct) = direct else {
        return if from < to { buffered(from, to) } else { Ok(()) };
    };
    buffered(from, start)?;
    let zeros = AlignedZeros::new(CHUNK)?;
    let mut at = start;
    while at < end {
        let n = (end - at).min(CHUNK as u64) as usize;
        match pwritev_all(&direct, at, &[&zeros.as_slice()[..n]]) {
            Ok(()) => at += n as u64,
            // Direct I/O refused at run time (an unusual block size): fall back.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return buffered(at, to),
            Err(e) => return Err(e),
        }
    }
    buffered(end.max(start), to)
}

/// A zeroed buffer aligned for direct I/O.
#[cfg(target_os = "linux")]
struct AlignedZeros {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

#[cfg(target_os = "linux")]
impl AlignedZeros {
    fn new(len: usize) -> io::Result<AlignedZeros> {
        let layout = std::alloc::Layout::from_size_align(len, DIRECT_ALIGN as usize).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(AlignedZeros { ptr, layout })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `layout.size()` initialised (zeroed) bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for AlignedZeros {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The direct-I/O middle and the buffered ends together zero exactly `[from, to)`, also
    /// past the end of the file, and the page cache sees the zeros at once.
    #[test]
    fn zeros_uncached_cover_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let len = (3 << 20) + 123;
        pwritev_all(&file, 0, &[&vec![0xAB; len]]).unwrap();
        for (from, to) in [(1000u64, (2 << 20) + 777), (4096, 8192), (5, 9), ((3 << 20) + 100, (5 << 20) + 3)] {
            write_zeros_uncached(&file, &path, from, to).unwrap();
            let mut buf = vec![0u8; (to as usize).max(len) + 10];
            let got = pread_fill(&file, 0, &mut buf).unwrap();
            assert_eq!(got as u64, (len as u64).max(to), "file length after zeroing [{from}, {to})");
            for (i, &b) in buf[..got].iter().enumerate() {
                let i = i as u64;
                let expect_zero = (from..to).contains(&i);
                assert!(if expect_zero { b == 0 } else { b == 0xAB || i >= len as u64 }, "byte {i} after zeroing [{from}, {to}): {b:#x}");
            }
            pwritev_all(&file, 0, &[&vec![0xAB; len]]).unwrap();
        }
    }
}
