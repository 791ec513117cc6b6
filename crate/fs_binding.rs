//! The platform's durability calls for single files and directories, for the TypeScript
//! `Directory` layer: so macOS gets F_FULLFSYNC and Windows gets write-through renames.

use std::fs::File;
use std::io;
use std::path::Path;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::WalError;
use crate::platform;

fn guarded(what: &str, f: impl FnOnce() -> io::Result<()>) -> napi::Result<()> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let mut err = WalError::io(what, e);
            if err.errno == Some(2) {
                err.code = crate::error::Code::NotFound;
            }
            Err(napi::Error::new(Status::GenericFailure, err.to_json()))
        }
        Err(_) => Err(napi::Error::new(Status::GenericFailure, WalError::new(crate::error::Code::Io, "internal error").to_json())),
    }
}

/// Open `path` as the barrier needs it. Unix: `fsync` needs no particular access, so read-only,
/// or write-only for a file only writable (either way a file with either permission syncs);
/// opening a directory that way succeeds, so it is refused here as opening it for writing would
/// refuse it.
#[cfg(not(windows))]
fn open_for_sync(path: &Path) -> io::Result<File> {
    let file = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => std::fs::OpenOptions::new().write(true).open(path)?,
        opened => opened?,
    };
    if file.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    Ok(file)
}

/// Windows: for writing, as `FlushFileBuffers` refuses a handle without write access.
#[cfg(windows)]
fn open_for_sync(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().write(true).open(path)
}

fn fsync_path(path: &Path) -> io::Result<()> {
    platform::durable_sync(&open_for_sync(path)?)
}

/// Rename in one step, replacing `to`. Windows: `MoveFileExW` with write-through, which returns
/// only once the move is flushed (the directory flushes below still run, as on Unix).
#[cfg(windows)]
fn rename(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::{MoveFileExW, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH};
    let wide = |p: &Path| p.as_os_str().encode_wide().chain(std::iter::once(0)).collect::<Vec<u16>>();
    let (f, t) = (wide(from), wide(to));
    // SAFETY: both are NUL-terminated wide strings that outlive the call.
    if unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(windows))]
fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// Rename, then make both directory entries durable: the destination's directory first, then
/// the source's. Write-through alone does not promise the directories are flushed on Windows
/// (a file system may journal the move lazily), so every platform syncs them.
fn rename_then_sync(from: &Path, to: &Path) -> io::Result<()> {
    rename(from, to)?;
    let parent = |p: &Path| p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let (a, b) = (parent(to), parent(from));
    platform::sync_dir(&a)?;
    if a != b {
        platform::sync_dir(&b)?;
    }
    Ok(())
}

pub struct FsTask {
    what: &'static str,
    job: Option<Box<dyn FnOnce() -> io::Result<()> + Send>>,
}

impl Task for FsTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        let job = self.job.take().expect("compute runs once");
        guarded(self.what, job)
    }

    fn resolve(&mut self, _env: Env, _out: ()) -> napi::Result<()> {
        Ok(())
    }
}

fn task(what: &'static str, job: impl FnOnce() -> io::Result<()> + Send + 'static) -> AsyncTask<FsTask> {
    AsyncTask::new(FsTask { what, job: Some(Box::new(job)) })
}

/// Flush a file's data to stable storage with the platform's true barrier.
#[napi(ts_return_type = "Promise<void>")]
pub fn sync_file(path: String) -> AsyncTask<FsTask> {
    task("syncing a file", move || fsync_path(Path::new(&path)))
}

#[napi(js_name = "syncFileSync")]
pub fn sync_file_blocking(path: String) -> napi::Result<()> {
    guarded("syncing a file", || fsync_path(Path::new(&path)))
}

/// Make a directory's entries durable (a no-op where the OS journals them, as on Windows).
#[napi(ts_return_type = "Promise<void>")]
pub fn sync_dir(path: String) -> AsyncTask<FsTask> {
    task("syncing a directory", move || platform::sync_dir(Path::new(&path)))
}

#[napi(js_name = "syncDirSync")]
pub fn sync_dir_blocking(path: String) -> napi::Result<()> {
    guarded("syncing a directory", || platform::sync_dir(Path::new(&path)))
}

/// Atomically rename `from` to `to` (replacing it) and make the change durable.
#[napi(ts_return_type = "Promise<void>")]
pub fn rename_durable(from: String, to: String) -> AsyncTask<FsTask> {
    task("renaming durably", move || rename_then_sync(Path::new(&from), Path::new(&to)))
}
