// Shared helpers for the sturdy test suite: temp directories, segment files, bit flips, and the
// on-disk format (so tests can check and damage frames without going through the library).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Wal, SturdyError } from '../dist/index.mjs'

export { Wal, SturdyError }

/** Segment header length and frame layout (crate/segment.rs, crate/frame.rs). */
export const SEGMENT_HEADER = 64
export const FRAME_HEADER = 8
export const MARKER_LEN = 24
export const MARKER_TAG = 0x80000010

/** Small-segment options used by most multi-segment tests (maxRecordBytes at the documented limit). */
export const SMALL = Object.freeze({ segmentBytes: 4096, maxRecordBytes: 4096 - 104 })

/** A fresh temp directory, removed when the test ends. */
export function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A path inside a fresh temp directory that does not exist yet. */
export function freshPath(t, name = 'wal') {
  return path.join(tmpDir(t), name)
}

/** Copy a (closed) log directory to a fresh temp directory. */
export function copyLog(t, src) {
  const dst = tmpDir(t)
  fs.cpSync(src, dst, { recursive: true })
  return dst
}

export function segName(base) {
  return `${String(base).padStart(20, '0')}.wal`
}

/** Segment files in `dir`, ascending by base LSN: `{ name, base, path, size }`. */
export function segments(dir) {
  return fs
    .readdirSync(dir)
    .filter((n) => /^\d{20}\.wal$/.test(n))
    .map((name) => {
      const p = path.join(dir, name)
      return { name, base: Number(name.slice(0, 20)), path: p, size: fs.statSync(p).size }
    })
    .sort((a, b) => a.base - b.base)
}

/** The segment file holding `lsn` and the byte position of `lsn` in it. */
export function locate(dir, lsn) {
  const segs = segments(dir).filter((s) => s.base <= lsn)
  const seg = segs[segs.length - 1]
  if (!seg) throw new Error(`no segment holds LSN ${lsn}`)
  return { ...seg, pos: lsn - seg.base }
}

/** Flip bit `bit` (0-7) of byte `offset` in `file`. */
export function flipBit(file, offset, bit = 0) {
  const fd = fs.openSync(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    if (fs.readSync(fd, b, 0, 1, offset) !== 1) throw new Error(`offset ${offset} is past the end of ${file}`)
    b[0] ^= 1 << bit
    fs.writeSync(fd, b, 0, 1, offset)
  } finally {
    fs.closeSync(fd)
  }
}

/** Deterministic pseudo-random bytes. */
export function bytes(len, seed = 1) {
  const out = Buffer.alloc(len)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < len; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** Every record, via `entries()`, as `[{ lsn, data }]` with copied buffers. */
export async function readAll(wal, options) {
  const out = []
  for await (const { lsn, data } of wal.entries(options)) out.push({ lsn, data: Buffer.from(data) })
  return out
}

/**
 * Assert that `wal` holds exactly `expected` (`[{ lsn, data }]`, data a Buffer or string), both
 * through `entries()` and through `read()`.
 */
export async function assertRecords(t, wal, expected, message = '') {
  const got = await readAll(wal)
  t.is(got.length, expected.length, `${message} record count`)
  t.deepEqual(
    got.map((e) => e.lsn),
    expected.map((e) => e.lsn),
    `${message} LSNs`,
  )
  let bad = 0
  for (let i = 0; i < Math.min(got.length, expected.length); i++) {
    if (!got[i].data.equals(Buffer.from(expected[i].data))) bad++
  }
  t.is(bad, 0, `${message} entries() payloads`)
  const reads = await Promise.all(expected.map((e) => wal.read(e.lsn)))
  bad = 0
  for (let i = 0; i < expected.length; i++) if (!reads[i].equals(Buffer.from(expected[i].data))) bad++
  t.is(bad, 0, `${message} read() payloads`)
}

/** `t.throwsAsync` for a promise that must reject with a SturdyError of `code`. */
export function rejectsWith(t, promise, code, message) {
  return t.throwsAsync(promise, { instanceOf: SturdyError, code }, message)
}

/** `t.throws` for a call that must throw a SturdyError of `code` synchronously. */
export function throwsWith(t, fn, code, message) {
  return t.throws(fn, { instanceOf: SturdyError, code }, message)
}

// CRC32C (Castagnoli), to forge and verify frames independently of the library.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1
    table[i] = c >>> 0
  }
  return table
})()

export function crc32c(buf, crc = 0) {
  let c = ~crc >>> 0
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8)
  return ~c >>> 0
}

/** A record frame as the library writes it: `[crc32c][len][payload]`, crc over len and payload. */
export function recordFrame(payload) {
  const f = Buffer.alloc(FRAME_HEADER + payload.length)
  f.writeUInt32LE(payload.length, 4)
  Buffer.from(payload).copy(f, FRAME_HEADER)
  f.writeUInt32LE(crc32c(f.subarray(4)), 0)
  return f
}
