import { SturdyError } from './errors.js'
import type { RecordWriter } from './group.js'

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

/**
 * An append's ENTRY records, laid out by the Wal straight into its staging buffer
 * (`Wal.appendWritten`): each entry's data is copied once, from the caller's memory to the log's.
 *
 * @internal
 */
export class EntryBatch implements RecordWriter {
  /**
   * Entries `first`, `first + 1`, ... with `terms[k]` and `data[k]`: values captured when the
   * append was checked, so what is written is what was checked. `lengths[k]` is entry k's record
   * length, {@link ENTRY_HEADER} plus its data's.
   */
  constructor(
    readonly first: number,
    readonly terms: Float64Array,
    readonly data: (Uint8Array | string)[],
    readonly lengths: Float64Array,
  ) {}

  write(k: number, buf: Buffer, at: number): void {
    const index = this.first + k
    const term = this.terms[k]
    buf[at] = KIND_ENTRY
    buf[at + 1] = k === 0 ? FIRST_OF_BATCH : 0
    putU32(buf, at + 2, k === 0 ? this.terms.length : 0)
    putU32(buf, at + 6, index >>> 0)
    putU32(buf, at + 10, Math.floor(index / TWO_32))
    putU32(buf, at + 14, term >>> 0)
    putU32(buf, at + 18, Math.floor(term / TWO_32))
    const data = this.data[k]
    if (typeof data === 'string') buf.write(data, at + ENTRY_HEADER, this.lengths[k] - ENTRY_HEADER, 'utf8')
    else buf.set(data, at + ENTRY_HEADER)
  }
}

function putU32(buf: Buffer, at: number, n: number): void {
  buf[at] = n
  buf[at + 1] = n >>> 8
  buf[at + 2] = n >>> 16
  buf[at + 3] = n >>> 24
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
