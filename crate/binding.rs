//! The napi surface: one class, `NativeWal`, driven by the TypeScript `Wal`. Errors cross as
//! JSON in the message (see `WalError::to_json`) and become `SturdyError`s on the other side.
//! Asynchronous calls either hand work to the committer thread (one promise per group) or run
//! on the libuv pool (reads, open). No panic crosses this boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::{Env, JsDeferred};
use napi_derive::napi;

use crate::batch::send_batch;
use crate::committer::{Command, Done, Group, GroupBytes};
use crate::error::{Code, Result as WResult, WalError};
use crate::log::{Chunk, DirectMode, Log, Options};
use crate::sim_binding::NativeSimDisk;
use crate::simdisk::SimDisk;
use crate::wal::Wal;
use crate::recovery::RecoveryMode;
use crate::segment::MAX_LSN;

/// The LSN of a log's first record: after the first segment's header and its commit marker.
#[napi]
pub const FIRST_RECORD_LSN: u32 = (crate::segment::SEGMENT_HEADER + crate::frame::MARKER_LEN) as u32;

/// Bytes a segment spends besides one record's payload: header, commit marker, frame header.
#[napi]
pub const SEGMENT_OVERHEAD: u32 = crate::log::SEGMENT_OVERHEAD as u32;

fn to_napi(e: WalError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, e.to_json())
}

fn guard<T>(f: impl FnOnce() -> WResult<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(_) => Err(to_napi(WalError::new(Code::Io, "internal error (a panic was caught at the native boundary)"))),
    }
}

fn lsn_arg(name: &str, v: f64) -> WResult<u64> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_LSN as f64 {
        Ok(v as u64)
    } else {
        Err(WalError::invalid(format!("{name} must be a non-negative safe integer, got {v}")))
    }
}

#[napi(object)]
pub struct NativeOptions {
    pub segment_bytes: Option<f64>,
    pub max_record_bytes: Option<f64>,
    /// `"strict"` (default) or `"truncate"`.
    pub recovery: Option<String>,
    pub preallocate: Option<bool>,
    /// `"off"`, `"auto"` (default) or `"always"`.
    pub direct_writes: Option<String>,
    pub read_only: Option<bool>,
}

impl NativeOptions {
    fn into_options(self) -> WResult<Options> {
        let mut o = Options::default();
        if let Some(v) = self.segment_bytes {
            o.segment_bytes = lsn_arg("segmentBytes", v)?;
        }
        match self.max_record_bytes {
            Some(v) => o.max_record_bytes = u32::try_from(lsn_arg("maxRecordBytes", v)?).map_err(|_| WalError::invalid("maxRecordBytes is too large"))?,
            // By default, as large as the segments allow, up to the default.
            None => o.max_record_bytes = o.segment_bytes.saturating_sub(crate::log::SEGMENT_OVERHEAD).min(o.max_record_bytes as u64) as u32,
        }
        o.recovery = match self.recovery.as_deref() {
            None | Some("strict") => RecoveryMode::Strict,
            Some("truncate") => RecoveryMode::Truncate,
            Some(other) => return Err(WalError::invalid(format!("recovery must be 'strict' or 'truncate', got '{other}'"))),
        };
        o.preallocate = self.preallocate.unwrap_or(o.preallocate);
        o.direct_writes = match self.direct_writes.as_deref() {
            None => o.direct_writes,
            Some("off") => DirectMode::Off,
            Some("auto") => DirectMode::Auto,
            Some("always") => DirectMode::Always,
            Some(other) => return Err(WalError::invalid(format!("directWrites must be 'off', 'auto' or 'always', got '{other}'"))),
        };
        o.read_only = self.read_only.unwrap_or(false);
        o.validate()?;
        Ok(o)
    }
}

#[napi(object)]
pub struct NativeRecovery {
    pub torn_bytes: f64,
    pub cut_at: Option<f64>,
    pub cut_reason: Option<String>,
    pub dropped_bytes: f64,
    pub segments: f64,
    pub records: f64,
}

#[napi(object)]
pub struct NativeChunk {
    pub data: Buffer,
    pub lsns: Float64Array,
    pub bounds: Uint32Array,
    pub next: f64,
    pub done: bool,
}

impl From<Chunk> for NativeChunk {
    fn from(c: Chunk) -> Self {
        NativeChunk { data: c.data.into(), lsns: c.lsns.into(), bounds: c.bounds.into(), next: c.next as f64, done: c.done }
    }
}

type Resolver<D> = Box<dyn FnOnce(Env) -> napi::Result<D>>;

/// A JS promise and the `Done` that settles it from any thread.
fn promise<'e, T: Send + 'static, D: ToNapiValue + 'static>(
    env: &'e Env,
    map: fn(T) -> D,
) -> napi::Result<(Done<T>, Object<'e>)> {
    let (deferred, obj): (JsDeferred<D, Resolver<D>>, Object<'e>) = env.create_deferred()?;
    let done: Done<T> = Box::new(move |r: WResult<T>| match r {
        Ok(v) => deferred.resolve(Box::new(move |_env| Ok(map(v)))),
        Err(e) => deferred.reject(to_napi(e)),
    });
    Ok((done, obj))
}

/// Where a log lives: a directory, or a name on a simulated disk.
enum Target {
    Dir(String),
    Simulated(Arc<SimDisk>, String),
}

fn open_handle(target: Target, opts: NativeOptions) -> WResult<NativeWal> {
    let opts = opts.into_options()?;
    let wal = match target {
        Target::Dir(dir) => Wal::open_dir(&PathBuf::from(dir), opts)?,
        Target::Simulated(disk, name) => Wal::open(Arc::new(disk.open_store(&name)?), opts)?,
    };
    Ok(NativeWal { inner: Arc::new(wal) })
}

pub struct OpenTask {
    args: Option<(Target, NativeOptions)>,
}

impl Task for OpenTask {
    type Output = NativeWal;
    type JsValue = NativeWal;

    fn compute(&mut self) -> napi::Result<NativeWal> {
        let (target, opts) = self.args.take().expect("compute runs once");
        guard(|| open_handle(target, opts))
    }

    fn resolve(&mut self, _env: Env, out: NativeWal) -> napi::Result<NativeWal> {
        Ok(out)
    }
}

pub struct ReadTask {
    log: Arc<Log>,
    lsn: f64,
}

impl Task for ReadTask {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> napi::Result<Vec<u8>> {
        guard(|| self.log.read(lsn_arg("lsn", self.lsn)?))
    }

    fn resolve(&mut self, _env: Env, out: Vec<u8>) -> napi::Result<Buffer> {
        Ok(out.into())
    }
}

/// Several records in one trip to the libuv pool.
pub struct ReadManyTask {
    log: Arc<Log>,
    lsns: Vec<f64>,
}

impl Task for ReadManyTask {
    type Output = Vec<Vec<u8>>;
    type JsValue = Vec<Buffer>;

    fn compute(&mut self) -> napi::Result<Vec<Vec<u8>>> {
        guard(|| self.lsns.iter().map(|&lsn| self.log.read(lsn_arg("lsn", lsn)?)).collect())
    }

    fn resolve(&mut self, _env: Env, out: Vec<Vec<u8>>) -> napi::Result<Vec<Buffer>> {
        Ok(out.into_iter().map(Buffer::from).collect())
    }
}

pub struct ChunkTask {
    log: Arc<Log>,
    from: f64,
    max_bytes: u32,
}

impl Task for ChunkTask {
    type Output = Chunk;
    type JsValue = NativeChunk;

    fn compute(&mut self) -> napi::Result<Chunk> {
        guard(|| self.log.read_chunk(lsn_arg("from", self.from)?, self.max_bytes as usize))
    }

    fn resolve(&mut self, _env: Env, out: Chunk) -> napi::Result<NativeChunk> {
        Ok(out.into())
    }
}

/// The native write-ahead log. Use the TypeScript `Wal` class instead of this.
#[napi]
pub struct NativeWal {
    inner: Arc<Wal>,
}

fn group_of(chunks: Vec<Buffer>) -> Group {
    chunks.into_iter().map(|b| Box::new(b) as Box<dyn GroupBytes>).collect()
}

// Anchors go to JavaScript as a plain array (`Vec<f64>` as it is): usually two numbers, for
// which an external `Float64Array` (a finalizer per group, run by the GC) cost more than the
// numbers.
use std::convert::identity as anchors;

/// Elements read per handle scope while a batch is staged: one scope for a million elements
/// would hold millions of handles until the call returns.
const READS_PER_SCOPE: usize = 4096;

/// Reads the records of a batch from an array the TypeScript layer built itself (so reading an
/// element runs no JavaScript): all `Uint8Array`s, or all strings (written as UTF-8, as
/// `Buffer.from` would), in a fresh handle scope every [`READS_PER_SCOPE`] reads.
struct BatchElements<'a> {
    env: napi::sys::napi_env,
    array: napi::sys::napi_value,
    strings: bool,
    scope: napi::sys::napi_handle_scope,
    reads: usize,
    _array: std::marker::PhantomData<&'a Array<'a>>,
}

impl<'a> BatchElements<'a> {
    fn new(env: &'a Env, array: &'a Array<'a>, strings: bool) -> Self {
        let array = array.value().value;
        BatchElements { env: env.raw(), array, strings, scope: std::ptr::null_mut(), reads: 0, _array: std::marker::PhantomData }
    }

    /// Append element `i`'s bytes, `len` of them as measured, to `buf`, which has room for them
    /// and one byte more (a string is written with a NUL after it). An element of any other
    /// length is refused before anything is copied.
    fn put(&mut self, i: usize, len: usize, buf: &mut Vec<u8>) -> WResult<()> {
        use napi::sys;
        if self.reads.is_multiple_of(READS_PER_SCOPE) {
            self.close();
            // SAFETY: opened and closed on this thread within the native call, with nothing
            // from it escaping: an element's bytes are copied before its handle goes.
            if unsafe { sys::napi_open_handle_scope(self.env, &mut self.scope) } != sys::Status::napi_ok {
                self.scope = std::ptr::null_mut();
                return Err(WalError::new(Code::NoMemory, "could not open a handle scope"));
            }
        }
        self.reads += 1;
        let env = self.env;
        let changed = || {
            // A failed napi call may leave a JavaScript exception pending; the batch's promise
            // is its only answer, so the exception goes.
            let mut pending = std::ptr::null_mut();
            unsafe { sys::napi_get_and_clear_last_exception(env, &mut pending) };
            WalError::invalid(format!("record {i} changed while the batch was being appended"))
        };
        let mut value = std::ptr::null_mut();
        let index = u32::try_from(i).map_err(|_| changed())?;
        // SAFETY: `array` is a live array value of this call; `value` receives a handle.
        if unsafe { sys::napi_get_element(self.env, self.array, index, &mut value) } != sys::Status::napi_ok {
            return Err(changed());
        }
        if self.strings {
            let spare = buf.spare_capacity_mut();
            // Room for the measured length and the NUL only: a longer string is cut short, and
            // refused by its length.
            let room = spare.len().min(len + 1);
            let spare = &mut spare[..room];
            let mut written = 0;
            // SAFETY: napi writes at most `spare.len()` bytes (the string, cut short if it
            // must be, then a NUL) into memory `buf` owns, and reports how many before the NUL.
            let status = unsafe { sys::napi_get_value_string_utf8(self.env, value, spare.as_mut_ptr().cast(), spare.len(), &mut written) };
            if status != sys::Status::napi_ok || written >= spare.len() {
                return Err(changed());
            }
            // SAFETY: the first `written` spare bytes were just written.
            unsafe { buf.set_len(buf.len() + written) };
        } else {
            // SAFETY: a value of this call's scope.
            let view = unsafe { Uint8ArraySlice::from_napi_value(self.env, value) }.map_err(|_| changed())?;
            if view.len() != len {
                return Err(changed());
            }
            buf.extend_from_slice(&view);
        }
        Ok(())
    }

    fn close(&mut self) {
        if !self.scope.is_null() {
            unsafe { napi::sys::napi_close_handle_scope(self.env, self.scope) };
            self.scope = std::ptr::null_mut();
        }
    }
}

impl Drop for BatchElements<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

#[napi]
impl NativeWal {
    #[napi(ts_return_type = "Promise<NativeWal>")]
    pub fn open(dir: String, options: NativeOptions) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask { args: Some((Target::Dir(dir), options)) })
    }

    #[napi]
    pub fn open_sync(dir: String, options: NativeOptions) -> napi::Result<NativeWal> {
        guard(|| open_handle(Target::Dir(dir), options))
    }

    /// Open the log named `name` on a simulated disk.
    #[napi(ts_return_type = "Promise<NativeWal>")]
    pub fn open_simulated(disk: &NativeSimDisk, name: String, options: NativeOptions) -> AsyncTask<OpenTask> {
        AsyncTask::new(OpenTask { args: Some((Target::Simulated(disk.disk.clone(), name), options)) })
    }

    #[napi]
    pub fn open_simulated_sync(disk: &NativeSimDisk, name: String, options: NativeOptions) -> napi::Result<NativeWal> {
        guard(|| open_handle(Target::Simulated(disk.disk.clone(), name), options))
    }

    /// Hand one group (frames laid out by the caller over one or more chunks) to the committer.
    /// Resolves once durable with `[groupOffset, lsn]` anchors.
    #[napi(ts_return_type = "Promise<number[]>")]
    pub fn commit<'e>(&self, env: &'e Env, chunks: Vec<Buffer>) -> napi::Result<Object<'e>> {
        let (done, obj) = promise(env, anchors)?;
        // A command the log refuses is answered through its promise (see `Wal::send`).
        let _ = self.inner.send(Command::Append(group_of(chunks), done));
        Ok(obj)
    }

    /// Hand a large batch to the committer, framed here rather than in JavaScript staging
    /// buffers (see `batch`): `records` is an array the caller built itself, of `Uint8Array`s or
    /// (`strings`) of strings, and `lens` their byte lengths (UTF-8 for strings). Resolves once
    /// all are durable with `[batchOffset, lsn]` anchors.
    #[napi(ts_return_type = "Promise<number[]>")]
    pub fn commit_batch<'e>(&self, env: &'e Env, records: Array<'e>, lens: Float64ArraySlice<'e>, strings: bool) -> napi::Result<Object<'e>> {
        if lens.len() != records.len() as usize {
            return Err(to_napi(WalError::invalid("a batch and its lengths differ in count")));
        }
        let (done, obj) = promise(env, anchors)?;
        guard(|| {
            let lens = lens.iter().map(|&l| l as usize).collect::<Vec<_>>();
            let mut elements = BatchElements::new(env, &records, strings);
            send_batch(&self.inner, &lens, |i, len, buf| elements.put(i, len, buf), done);
            Ok(())
        })?;
        Ok(obj)
    }

    #[napi]
    pub fn commit_sync(&self, chunks: Vec<Buffer>) -> napi::Result<Vec<f64>> {
        guard(|| self.inner.call(|d| Command::Append(group_of(chunks), d)))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn sync<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let (done, obj) = promise(env, |()| ())?;
        let _ = self.inner.send(Command::Sync(done));
        Ok(obj)
    }

    #[napi]
    pub fn sync_sync(&self) -> napi::Result<()> {
        guard(|| self.inner.call(Command::Sync))
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn truncate_from<'e>(&self, env: &'e Env, lsn: f64) -> napi::Result<Object<'e>> {
        let lsn = lsn_arg("lsn", lsn).map_err(to_napi)?;
        let (done, obj) = promise(env, |()| ())?;
        let _ = self.inner.send(Command::TruncateFrom(lsn, done));
        Ok(obj)
    }

    #[napi(ts_return_type = "Promise<number>")]
    pub fn truncate_before<'e>(&self, env: &'e Env, lsn: f64) -> napi::Result<Object<'e>> {
        let lsn = lsn_arg("lsn", lsn).map_err(to_napi)?;
        let (done, obj) = promise(env, |first: u64| first as f64)?;
        let _ = self.inner.send(Command::TruncateBefore(lsn, done));
        Ok(obj)
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> napi::Result<Object<'e>> {
        let (done, obj) = promise(env, |()| ())?;
        self.inner.close_with(done);
        Ok(obj)
    }

    #[napi]
    pub fn close_sync(&self) -> napi::Result<()> {
        guard(|| self.inner.close())
    }

    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read(&self, lsn: f64) -> AsyncTask<ReadTask> {
        AsyncTask::new(ReadTask { log: self.inner.log.clone(), lsn })
    }

    #[napi(ts_return_type = "Promise<Buffer[]>")]
    pub fn read_many(&self, lsns: Vec<f64>) -> AsyncTask<ReadManyTask> {
        AsyncTask::new(ReadManyTask { log: self.inner.log.clone(), lsns })
    }

    #[napi]
    pub fn read_sync(&self, lsn: f64) -> napi::Result<Buffer> {
        guard(|| self.inner.log.read(lsn_arg("lsn", lsn)?)).map(Buffer::from)
    }

    #[napi(ts_return_type = "Promise<NativeChunk>")]
    pub fn read_chunk(&self, from: f64, max_bytes: u32) -> AsyncTask<ChunkTask> {
        AsyncTask::new(ChunkTask { log: self.inner.log.clone(), from, max_bytes })
    }

    #[napi]
    pub fn first_lsn(&self) -> f64 {
        self.inner.log.bounds().0 as f64
    }

    #[napi]
    pub fn dropped_end(&self) -> napi::Result<f64> {
        guard(|| self.inner.log.dropped_end()).map(|v| v as f64)
    }

    #[napi]
    pub fn next_lsn(&self) -> f64 {
        self.inner.log.bounds().1 as f64
    }

    #[napi]
    pub fn recovery(&self) -> NativeRecovery {
        let r = &self.inner.log.report;
        NativeRecovery {
            torn_bytes: r.torn_bytes as f64,
            cut_at: r.cut_at.map(|v| v as f64),
            cut_reason: r.cut_reason.clone(),
            dropped_bytes: r.dropped_bytes as f64,
            segments: r.segments as f64,
            records: r.records as f64,
        }
    }

    /// Segment capacity, for callers that size their work to it.
    #[napi]
    pub fn max_record_bytes(&self) -> f64 {
        self.inner.log.opts.max_record_bytes as f64
    }
}
