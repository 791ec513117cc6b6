//! On-disk framing. Every frame is `[crc32c: u32 LE][len: u32 LE][payload]`, the checksum
//! covering the length field and the payload. A record's LSN is the byte offset of its frame.
//!
//! Two kinds of frame share that shape:
//! - a **record**: `len` < 2^31, the payload is the user's bytes;
//! - a **commit marker**: `len` = `MARKER_TAG` (high bit set), a 16-byte payload holding where
//!   the log ended before it (`prev_end`) and how much of the log was already durable when it
//!   was written (`durable_end` ≤ `prev_end`; less while earlier writes are still being
//!   synced). Its checksum also covers its own LSN, so a marker is valid only where it was
//!   written. Every write that the committer makes starts with a marker. So a damaged frame at
//!   LSN `p` is corruption if a valid marker after it claims `durable_end > p`; otherwise it is
//!   part of the torn tail: writes that were in flight, none of them acknowledged.
//! - a **seal**: a marker with `len` = `SEAL_TAG`, written by a clean close just past the end
//!   of the log, claiming all of it durable (`prev_end` = `durable_end` = its own LSN). It is not
//!   part of the log: the log ends where it starts, and the next write goes over it. Without it
//!   the newest write would have no marker after it, and damage there would pass for a torn
//!   tail after a clean close.

pub const FRAME_HEADER: usize = 8;
pub const MARKER_TAG: u32 = 0x8000_0010;
pub const MARKER_LEN: usize = FRAME_HEADER + 16;
/// The length field of a seal (same layout as a marker).
pub const SEAL_TAG: u32 = 0x8000_0011;
/// Records are shorter than 2^31 bytes, so a length never collides with the marker tag.
pub const MAX_PAYLOAD: u32 = 0x7fff_ffff;

/// Checksum of a frame: the length field, then the payload.
pub fn frame_crc(len_field: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_field.to_le_bytes()), payload)
}

pub fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}

pub fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

/// Fill in the checksum of a record frame laid out as `[crc placeholder][len][payload]`.
pub fn seal_record(frame: &mut [u8]) {
    let len = read_u32(frame, 4);
    let crc = frame_crc(len, &frame[FRAME_HEADER..]);
    frame[..4].copy_from_slice(&crc.to_le_bytes());
}

/// Checksum of a marker or seal (`tag`) at `lsn`: its position, then the frame as usual.
fn marker_crc(lsn: u64, tag: u32, payload: &[u8]) -> u32 {
    let seed = crc32c::crc32c(&lsn.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c_append(seed, &tag.to_le_bytes()), payload)
}

fn tagged(tag: u32, lsn: u64, prev_end: u64, durable_end: u64) -> [u8; MARKER_LEN] {
    debug_assert!(durable_end <= prev_end && prev_end <= lsn);
    let mut m = [0u8; MARKER_LEN];
    m[4..8].copy_from_slice(&tag.to_le_bytes());
    m[8..16].copy_from_slice(&prev_end.to_le_bytes());
    m[16..24].copy_from_slice(&durable_end.to_le_bytes());
    let crc = marker_crc(lsn, tag, &m[8..]);
    m[..4].copy_from_slice(&crc.to_le_bytes());
    m
}

/// A commit marker at `lsn`: the log ended at `prev_end` before this write, and was durable up
/// to `durable_end` when it was written.
pub fn marker(lsn: u64, prev_end: u64, durable_end: u64) -> [u8; MARKER_LEN] {
    tagged(MARKER_TAG, lsn, prev_end, durable_end)
}

/// A seal at `end`, the end of a log that is durable up to there.
pub fn seal(end: u64) -> [u8; MARKER_LEN] {
    tagged(SEAL_TAG, end, end, end)
}

/// What the bytes at some position hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A record with a valid checksum and this payload length.
    Record { len: u32 },
    /// A commit marker that belongs at this position.
    Marker { prev_end: u64, durable_end: u64 },
    /// A seal that belongs at this position: the log ends here, durable.
    Seal,
    /// Not a valid frame (torn, zeroed, corrupt or never written).
    Invalid,
    /// The frame header says more bytes follow than `buf` holds: the caller must supply them
    /// (`need` bytes in total) or, at end of file, treat the frame as invalid.
    NeedMore { need: usize },
}

/// Decode the frame starting at `buf[0]`, which sits at LSN `lsn`. `max_len` bounds a record's
/// payload (a larger length field cannot be a record of this log).
pub fn decode(buf: &[u8], lsn: u64, max_len: u32) -> Frame {
    if buf.len() < FRAME_HEADER {
        return Frame::NeedMore { need: FRAME_HEADER };
    }
    let crc = read_u32(buf, 0);
    let len = read_u32(buf, 4);
    if len == MARKER_TAG || len == SEAL_TAG {
        if buf.len() < MARKER_LEN {
            return Frame::NeedMore { need: MARKER_LEN };
        }
        let (prev_end, durable_end) = (read_u64(buf, 8), read_u64(buf, 16));
        if marker_crc(lsn, len, &buf[8..MARKER_LEN]) != crc || durable_end > prev_end || prev_end > lsn {
            return Frame::Invalid;
        }
        if len == SEAL_TAG {
            return if durable_end == lsn { Frame::Seal } else { Frame::Invalid };
        }
        return Frame::Marker { prev_end, durable_end };
    }
    if len > max_len {
        return Frame::Invalid;
    }
    let total = FRAME_HEADER + len as usize;
    if buf.len() < total {
        return Frame::NeedMore { need: total };
    }
    if frame_crc(len, &buf[FRAME_HEADER..total]) != crc {
        return Frame::Invalid;
    }
    Frame::Record { len }
}

/// What the valid commit marker or seal for position `lsn` at `buf[0]` claims durable (an LSN),
/// if one is there.
pub fn marker_at(buf: &[u8], lsn: u64) -> Option<u64> {
    if buf.len() < MARKER_LEN || !matches!(read_u32(buf, 4), MARKER_TAG | SEAL_TAG) {
        return None;
    }
    match decode(buf, lsn, 0) {
        Frame::Marker { durable_end, .. } => Some(durable_end),
        Frame::Seal => Some(lsn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_bit_flips_are_caught() {
        let payload = b"hello, sturdy";
        let mut frame = vec![0u8; FRAME_HEADER + payload.len()];
        frame[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        frame[8..].copy_from_slice(payload);
        seal_record(&mut frame);
        assert_eq!(decode(&frame, 0, 1 << 20), Frame::Record { len: payload.len() as u32 });
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(decode(&bad, 0, 1 << 20), Frame::Record { len } if len == payload.len() as u32 && bad[8..] == payload[..]), "bit {bit}");
        }
    }

    #[test]
    fn zeroes_are_never_a_frame() {
        assert_eq!(decode(&[0u8; 64], 0, 1 << 20), Frame::Invalid);
    }

    #[test]
    fn empty_record_is_valid() {
        let mut frame = vec![0u8; FRAME_HEADER];
        seal_record(&mut frame);
        assert_eq!(decode(&frame, 7, 10), Frame::Record { len: 0 });
    }

    #[test]
    fn marker_is_bound_to_its_position() {
        let m = marker(4096, 100, 64);
        assert_eq!(decode(&m, 4096, 10), Frame::Marker { prev_end: 100, durable_end: 64 });
        assert_eq!(decode(&m, 4097, 10), Frame::Invalid);
        assert_eq!(marker_at(&m, 4096), Some(64));
        assert_eq!(marker_at(&m, 0), None);
    }

    #[test]
    fn a_seal_is_bound_to_its_position_and_claims_the_log_up_to_it() {
        let m = seal(4096);
        assert_eq!(decode(&m, 4096, 10), Frame::Seal);
        assert_eq!(decode(&m, 4120, 10), Frame::Invalid);
        assert_eq!(marker_at(&m, 4096), Some(4096));
        // Not a marker with another tag: a marker's bytes under the seal tag do not check out.
        let mut forged = marker(4096, 4096, 4096);
        forged[4..8].copy_from_slice(&SEAL_TAG.to_le_bytes());
        assert_eq!(decode(&forged, 4096, 10), Frame::Invalid);
    }

    #[test]
    fn a_marker_claiming_more_than_it_could_is_invalid() {
        let mut m = marker(4096, 100, 100);
        m[16..24].copy_from_slice(&101u64.to_le_bytes()); // durable_end past prev_end
        let crc = marker_crc(4096, MARKER_TAG, &m[8..]);
        m[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&m, 4096, 10), Frame::Invalid);
    }
}
