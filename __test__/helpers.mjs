// Shared helpers for the sturdy test suite: temp directories, segment files, bit flips, and the
// on-disk format (so tests can check and damage frames without going through the library).
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'

import { Wal, SturdyError } from '../dist/index.mjs'

export { Wal, SturdyError }

/** Every file under `dir` with its bytes (base64), to show that nothing was written. */
export function fileBytes(dir) {
  const out = {}
  for (const sub of fs.readdirSync(dir, { recursive: true })) {
    const p = path.join(dir, sub)
    if (fs.statSync(p).isFile()) out[sub] = fs.readFileSync(p).toString('base64')
  }
  return out
}

/** Segment header length and frame layout (crate/segment.rs, crate/frame.rs). */
export const SEGMENT_HEADER = 64
export const FRAME_HEADER = 8
export const MARKER_LEN = 24
export const MARKER_TAG = 0x80000010

/** Bytes a segment needs besides one record's payload: segment header, commit marker, frame header. */
export const SEGMENT_OVERHEAD = 96

/** Small-segment options used by most multi-segment tests (maxRecordBytes at the documented limit). */
export const SMALL = Object.freeze({ segmentBytes: 4096, maxRecordBytes: 4096 - SEGMENT_OVERHEAD })

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

/**
 * Open `dir` expecting a SturdyError of `code`; a log that opens anyway is closed again (so a
 * failing test leaks no handle) and fails the test. Returns the error, if any.
 */
export async function openFails(t, dir, options, code, message = '') {
  let wal
  try {
    wal = await Wal.open(dir, options)
  } catch (e) {
    t.true(e instanceof SturdyError, `${message} a SturdyError`)
    t.is(e.code, code, `${message} error code`)
    return e
  }
  const r = wal.recovery
  await wal.close()
  t.fail(`${message} open succeeded (expected ${code}); recovery: ${JSON.stringify(r)}`)
  return undefined
}

/** `t.throws` for a call that must throw a SturdyError of `code` synchronously. */
export function throwsWith(t, fn, code, message) {
  return t.throws(fn, { instanceOf: SturdyError, code }, message)
}

// CRC32C (Castagnoli), to check and build on-disk structures independently of the library.
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

/** A segment header as the library writes it (crate/segment.rs): magic, format version 2, lengths, CRC. */
export function segmentHeader(base, capacity) {
  const h = Buffer.alloc(SEGMENT_HEADER)
  h.write('STURDYWL', 0, 'latin1')
  h.writeUInt32LE(2, 8)
  h.writeUInt32LE(SEGMENT_HEADER, 12)
  h.writeBigUInt64LE(BigInt(base), 16)
  h.writeBigUInt64LE(BigInt(capacity), 24)
  h.writeUInt32LE(crc32c(h.subarray(0, 32)), 32)
  return h
}

/** A small seeded PRNG (mulberry32): `next()` in [0, 1), `int(lo, hi)` in [lo, hi). */
export function rng(seed) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo))
  return { next, int }
}

/** FNV-1a (32 bit) of the UTF-8 name, modulo `shards`: the stream store's documented hash policy, written out independently. */
export function shardOf(name, shards) {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h % shards
}

/** The first name `${prefix}${i}` that lands in `shard`. */
export function nameIn(shard, shards, prefix) {
  for (let i = 0; ; i++) if (shardOf(`${prefix}${i}`, shards) === shard) return `${prefix}${i}`
}

/** A durable store refuses keys that are not strings and blobs that are not bytes: ERR_INVALID_ARG. */
export async function assertRefusesBadKeysAndBlobs(t, store) {
  const bad = { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }
  for (const key of [undefined, null, 1, {}, Buffer.from('k')]) {
    await t.throwsAsync(store.persist(key, Buffer.from('x')), bad)
    await t.throwsAsync(store.delete(key), bad)
    await t.throwsAsync(store.load(key), bad)
  }
  for (const blob of [undefined, null, 'v', 1, [1], new ArrayBuffer(1)]) await t.throwsAsync(store.persist('k', blob), bad)
}

/**
 * Watches the groups handed to the committer (until the test ends): their byte sizes in order,
 * and the bytes handed over and not yet settled, now and at their peak. Tests using it run
 * serially: it swaps the native commit for a counting one.
 */
export function watchInFlight(t) {
  const { NativeWal } = createRequire(import.meta.url)('../dist/native.js')
  const commit = NativeWal.prototype.commit
  const seen = { now: 0, peak: 0, groups: 0, sizes: [] }
  NativeWal.prototype.commit = function (chunks) {
    const bytes = chunks.reduce((n, c) => n + c.length, 0)
    seen.now += bytes
    seen.peak = Math.max(seen.peak, seen.now)
    seen.groups++
    seen.sizes.push(bytes)
    return commit.call(this, chunks).finally(() => (seen.now -= bytes))
  }
  t.teardown(() => (NativeWal.prototype.commit = commit))
  return seen
}
