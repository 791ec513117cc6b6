//! The hardware-accelerated CRC32C the log frames use, for the TypeScript layers' own formats
//! (checkpoints, stores), so every checksum in sturdy is the same function.

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// CRC32C (Castagnoli) of `bytes`, continuing from `crc` (0, or omitted, to start).
#[napi(js_name = "crc32c")]
pub fn crc32c(bytes: Uint8Array, crc: Option<u32>) -> u32 {
    crc32c::crc32c_append(crc.unwrap_or(0), &bytes)
}
