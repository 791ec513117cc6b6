import { SturdyError } from './errors.js'

/**
 * The records a {@link RaftLog} writes to its write-ahead log. Every record starts with a kind
 * byte; numbers are little-endian unsigned 64-bit integers (always JavaScript safe integers).
 *
 * ```
 * ENTRY     1 | flags u8 | batchSize u32 | index u64 | term u64 | data...
 * TRUNCATE  2 | index u64                       entries from index on are gone
 * PURGE     3 | index u64 | term u64            entries up to index are gone; (index, term) is the purged id
 * RESET     4                                   every entry and the purge boundary are gone
 * ```
 *
 * The first ENTRY of each `append` carries {@link FIRST_OF_BATCH} and the number of entries in
 * the batch: replay applies a batch only once all of its records are present, which is what
 * makes an append (a conflicting one included) all-or-nothing across a power loss. Any ENTRY
 * replaces the entry at its index and everything after it, so a conflicting append needs no
 * separate truncation record, and nothing is ever rewritten in place.
 *
 * @internal
 */
export const KIND_ENTRY = 1
/** @internal */
export const KIND_TRUNCATE = 2
/** @internal */
export const KIND_PURGE = 3
/** @internal */
export const KIND_RESET = 4

/** Flag of the first ENTRY record of an append. @internal */
export const FIRST_OF_BATCH = 1

/** Bytes before an entry's data. @internal */
export const ENTRY_HEADER = 22

const TWO_32 = 2 ** 32

/** Write a safe integer as an unsigned 64-bit little-endian number. */
export function writeU64(buf: Buffer, at: number, n: number): void {
  buf.writeUInt32LE(n % TWO_32, at)
  buf.writeUInt32LE(Math.floor(n / TWO_32), at + 4)
}

/** Read an unsigned 64-bit little-endian number; one beyond the safe range means damage. */
export function readU64(buf: Uint8Array, at: number, lsn: number): number {
  // Byte arithmetic: replay reads two of these per entry, and this is its hot path.
  const hi = (buf[at + 4] | (buf[at + 5] << 8) | (buf[at + 6] << 16)) + buf[at + 7] * 0x1000000
  if (hi >= 1 << 21) throw corruptRecord(lsn, 'a number beyond 2^53')
  return hi * TWO_32 + (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16)) + buf[at + 3] * 0x1000000
}

/** A record that the RaftLog could not have written. */
export function corruptRecord(lsn: number, what: string): SturdyError {
  return new SturdyError('ERR_CORRUPT', `raft log record at LSN ${lsn}: ${what}`, { offset: lsn })
}

/** Scratch buffers up to this size are kept for the next append. */
const KEPT_SCRATCH = 4 << 20

/**
 * Lays out an append's ENTRY records in one reusable buffer. The Wal copies records while
 * `appendBatch` runs, so the same memory can serve every append: no allocation per entry.
 *
 * @internal
 */
export class EntryEncoder {
  #buf = Buffer.allocUnsafe(64 << 10)
  #view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength)

  /** Room for `total` bytes of records; returns the buffer to pass to {@link EntryEncoder.put}. */
  begin(total: number): Buffer {
    if (total > this.#buf.length) {
      const buf = Buffer.allocUnsafe(total <= KEPT_SCRATCH ? Math.max(total, 2 * this.#buf.length) : total)
      if (buf.length > KEPT_SCRATCH) return buf // one-off: a giant append does not pin its memory
      this.#buf = buf
      this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    }
    return this.#buf
  }

  /** Write one ENTRY record at `at` in `buf` (from `begin`); returns it as a view. */
  put(
    buf: Buffer,
    at: number,
    flags: number,
    batchSize: number,
    index: number,
    term: number,
    data: Uint8Array | string,
    len: number,
  ): Buffer {
    const view = buf === this.#buf ? this.#view : new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    buf[at] = KIND_ENTRY
    buf[at + 1] = flags
    view.setUint32(at + 2, batchSize, true)
    view.setUint32(at + 6, index % TWO_32, true)
    view.setUint32(at + 10, Math.floor(index / TWO_32), true)
    view.setUint32(at + 14, term % TWO_32, true)
    view.setUint32(at + 18, Math.floor(term / TWO_32), true)
    if (typeof data === 'string') buf.write(data, at + ENTRY_HEADER, len, 'utf8')
    else buf.set(data, at + ENTRY_HEADER)
    return buf.subarray(at, at + ENTRY_HEADER + len)
  }
}

/** The fields of a decoded ENTRY header. */
export interface EntryHeader {
  first: boolean
  batchSize: number
  index: number
  term: number
}

/** Decode an ENTRY record's header (its data starts at {@link ENTRY_HEADER}). */
export function readEntryHeader(rec: Uint8Array, lsn: number): EntryHeader {
  if (rec.length < ENTRY_HEADER || rec[0] !== KIND_ENTRY) throw corruptRecord(lsn, 'not an entry record')
  const view = rec as Buffer
  const first = (rec[1] & FIRST_OF_BATCH) !== 0
  const batchSize = view.readUInt32LE(2)
  if (first && batchSize === 0) throw corruptRecord(lsn, 'an empty batch')
  return { first, batchSize, index: readU64(rec, 6, lsn), term: readU64(rec, 14, lsn) }
}

/** A TRUNCATE record: entries from `index` on are gone. */
export function truncateRecord(index: number): Buffer {
  const buf = Buffer.allocUnsafe(9)
  buf[0] = KIND_TRUNCATE
  writeU64(buf, 1, index)
  return buf
}

/** A PURGE record: entries up to `index` are gone and `(index, term)` is the last purged id. */
export function purgeRecord(index: number, term: number): Buffer {
  const buf = Buffer.allocUnsafe(17)
  buf[0] = KIND_PURGE
  writeU64(buf, 1, index)
  writeU64(buf, 9, term)
  return buf
}

/** A RESET record: the log starts over. */
export function resetRecord(): Buffer {
  return Buffer.from([KIND_RESET])
}

/** Check that a control record has exactly the length its kind implies. */
export function checkControlLength(rec: Uint8Array, lsn: number): void {
  const expected = rec[0] === KIND_TRUNCATE ? 9 : rec[0] === KIND_PURGE ? 17 : rec[0] === KIND_RESET ? 1 : -1
  if (expected < 0) throw corruptRecord(lsn, `unknown record kind ${rec[0]}`)
  if (rec.length !== expected) throw corruptRecord(lsn, `a kind ${rec[0]} record of ${rec.length} bytes`)
}
