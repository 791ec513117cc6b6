//! Segment files: fixed-capacity files named by their base LSN. A byte at position `p` of the
//! segment with base `b` has LSN `b + p`, so LSNs are byte offsets and never change.
//!
//! Header (64 bytes): magic `STURDYWL`, format version, header length, base LSN, capacity, and a
//! CRC32C over those fields. Frames start right after it.

use crate::error::{Result, WalError};
use crate::frame::read_u64;
use crate::log::MAX_SEGMENT_BYTES;

pub const SEGMENT_HEADER: usize = 64;
/// The largest LSN: JavaScript numbers hold integers exactly up to here.
pub const MAX_LSN: u64 = (1 << 53) - 1;
const MAGIC: &[u8; 8] = b"STURDYWL";
/// 2: commit markers carry `durable_end` and a checksum bound to their position.
const VERSION: u32 = 2;
const SUFFIX: &str = ".wal";

pub fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// The base LSN a segment file name encodes, if `name` is one.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn encode_header(base: u64, capacity: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER as u32).to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Validate a segment header read from the file with base `base`; returns its capacity.
pub fn decode_header(buf: &[u8], base: u64) -> Result<u64> {
    let name = file_name(base);
    if buf.len() < SEGMENT_HEADER {
        return Err(WalError::corrupt(&name, 0, "truncated segment header"));
    }
    if &buf[0..8] != MAGIC {
        return Err(WalError::corrupt(&name, 0, "bad segment magic"));
    }
    if crc32c::crc32c(&buf[0..32]) != u32::from_le_bytes(buf[32..36].try_into().unwrap()) {
        return Err(WalError::corrupt(&name, 0, "segment header checksum mismatch"));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(WalError::corrupt(&name, 8, &format!("unsupported segment format version {version}")));
    }
    if read_u64(buf, 16) != base {
        return Err(WalError::corrupt(&name, 16, "segment base LSN does not match its file name"));
    }
    let capacity = read_u64(buf, 24);
    // A checksum only says the header was written whole: a capacity no log makes, or one that
    // would take LSNs past what JavaScript can hold, cannot be this log's.
    if !(SEGMENT_HEADER as u64 * 2..=MAX_SEGMENT_BYTES).contains(&capacity) {
        return Err(WalError::corrupt(&name, 24, "implausible segment capacity"));
    }
    if base > MAX_LSN - capacity {
        return Err(WalError::corrupt(&name, 16, "segment lies past the largest LSN"));
    }
    Ok(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(0)), Some(0));
        assert_eq!(parse_name(&file_name(67_108_864)), Some(67_108_864));
        assert_eq!(parse_name("123.wal"), None);
        assert_eq!(parse_name("0000000000000000000a.wal"), None);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(128, 4096);
        assert_eq!(decode_header(&h, 128).unwrap(), 4096);
        assert!(decode_header(&h, 0).is_err());
        let mut bad = h;
        bad[20] ^= 1;
        assert!(decode_header(&bad, 128).is_err());
    }
}
