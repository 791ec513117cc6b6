//! napi surface of the simulated disk (`SimulatedDisk` in `sturdy/testing`).

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::WalError;
use crate::segment::parse_name;
use crate::simdisk::{CrashPlan, CrashReport, FaultKind, Fill, Keep, SimDisk};

fn invalid(msg: String) -> napi::Error {
    napi::Error::new(Status::GenericFailure, WalError::invalid(msg).to_json())
}

fn count(name: &str, v: f64) -> napi::Result<u64> {
    if v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= 9007199254740991.0 {
        Ok(v as u64)
    } else {
        Err(invalid(format!("{name} must be a positive integer, got {v}")))
    }
}

#[napi(object)]
pub struct NativeCrashPlan {
    /// `"none" | "prefix" | "subset" | "any"`
    pub keep: Option<String>,
    pub tear: Option<f64>,
    /// `"zeros" | "garbage" | "old" | "any"`
    pub fill: Option<String>,
}

impl NativeCrashPlan {
    fn into_plan(plan: Option<NativeCrashPlan>) -> napi::Result<CrashPlan> {
        let mut p = CrashPlan::default();
        let Some(n) = plan else { return Ok(p) };
        if let Some(k) = n.keep {
            p.keep = match k.as_str() {
                "none" => Keep::None,
                "prefix" => Keep::Prefix,
                "subset" => Keep::Subset,
                "any" => Keep::Any,
                _ => return Err(invalid(format!("keep must be 'none', 'prefix', 'subset' or 'any', got '{k}'"))),
            };
        }
        if let Some(t) = n.tear {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid(format!("tear must be a probability between 0 and 1, got {t}")));
            }
            p.tear = t;
        }
        if let Some(f) = n.fill {
            p.fill = match f.as_str() {
                "zeros" => Fill::Zeros,
                "garbage" => Fill::Garbage,
                "old" => Fill::Old,
                "any" => Fill::Any,
                _ => return Err(invalid(format!("fill must be 'zeros', 'garbage', 'old' or 'any', got '{f}'"))),
            };
        }
        Ok(p)
    }
}

#[napi(object)]
pub struct NativeCrashReport {
    pub pending_ops: f64,
    pub kept_ops: f64,
    pub torn: bool,
}

impl From<CrashReport> for NativeCrashReport {
    fn from(r: CrashReport) -> Self {
        NativeCrashReport { pending_ops: r.pending_ops as f64, kept_ops: r.kept_ops as f64, torn: r.torn }
    }
}

#[napi(object)]
pub struct NativeSimFile {
    pub name: String,
    pub durable_bytes: f64,
    pub bytes: f64,
}

#[napi(object)]
pub struct NativeSimStats {
    pub writes: f64,
    pub syncs: f64,
    pub ops: f64,
    pub crashes: f64,
}

/// The native simulated disk. Use `SimulatedDisk` from `sturdy/testing` instead.
#[napi]
pub struct NativeSimDisk {
    pub(crate) disk: Arc<SimDisk>,
}

#[napi]
impl NativeSimDisk {
    #[napi(constructor)]
    pub fn new(seed: f64) -> napi::Result<Self> {
        if !(seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0 && seed <= 9007199254740991.0) {
            return Err(invalid(format!("seed must be a non-negative safe integer, got {seed}")));
        }
        Ok(NativeSimDisk { disk: SimDisk::new(seed as u64) })
    }

    /// Let logs opened on this disk from now on run as on a real one: two committer workers
    /// overlapping barriers, segments prepared in the background (see `SimDisk::set_concurrent`).
    #[napi]
    pub fn set_concurrent(&self, concurrent: bool) {
        self.disk.set_concurrent(concurrent);
    }

    #[napi]
    pub fn crash(&self, plan: Option<NativeCrashPlan>) -> napi::Result<NativeCrashReport> {
        Ok(self.disk.crash(NativeCrashPlan::into_plan(plan)?).into())
    }

    #[napi]
    pub fn crash_after(&self, ops: f64, plan: Option<NativeCrashPlan>) -> napi::Result<()> {
        self.disk.crash_after(count("ops", ops)?, NativeCrashPlan::into_plan(plan)?);
        Ok(())
    }

    #[napi]
    pub fn last_crash(&self) -> NativeCrashReport {
        self.disk.last_crash().into()
    }

    #[napi]
    pub fn fail_write(&self, nth: f64, errno: i32) -> napi::Result<()> {
        self.disk.inject(FaultKind::Write, count("nth", nth)?, errno);
        Ok(())
    }

    #[napi]
    pub fn fail_sync(&self, nth: f64, errno: i32) -> napi::Result<()> {
        self.disk.inject(FaultKind::Sync, count("nth", nth)?, errno);
        Ok(())
    }

    #[napi]
    pub fn stats(&self) -> NativeSimStats {
        let (writes, syncs, ops, crashes) = self.disk.stats();
        NativeSimStats { writes: writes as f64, syncs: syncs as f64, ops: ops as f64, crashes: crashes as f64 }
    }

    #[napi]
    pub fn files(&self, dir: String) -> Vec<NativeSimFile> {
        self.disk
            .files(&dir)
            .into_iter()
            .map(|(name, durable, current)| NativeSimFile { name, durable_bytes: durable as f64, bytes: current as f64 })
            .collect()
    }

    #[napi]
    pub fn read_file(&self, dir: String, file: String) -> Option<Buffer> {
        self.disk.read_file(&dir, parse_name(&file)?).map(Buffer::from)
    }

    #[napi]
    pub fn write_file(&self, dir: String, file: String, bytes: Buffer) -> napi::Result<()> {
        let base = parse_name(&file).ok_or_else(|| invalid(format!("'{file}' is not a segment file name")))?;
        self.disk.write_file(&dir, base, bytes.to_vec());
        Ok(())
    }
}
