import { SturdyError } from './errors.js'
import type { RecordWriter } from './group.js'
import type { RaftEntry } from './raft-log.js'

/**
 * The records a {@link RaftLog} writes to its write-ahead log. Every record starts with a kind
 * byte; numbers are little-endian unsigned 64-bit integers (always JavaScript safe integers).
 *
 * ```
 * BATCH     5 | flags u8 | count u32 | first u64 | term u64 | [terms u64 × count] | lengths u32 × count | data...
 * ENTRY     1 | flags u8 | batchSize u32 | index u64 | term u64 | data...
 * TRUNCATE  2 | index u64                       entries from index on are gone
 * PURGE     3 | index u64 | term u64            entries up to index are gone; (index, term) is the purged id
 * RESET     4                                   every entry and the purge boundary are gone
 * ```
 *
 * An `append` of several entries is one BATCH record: entries `first...first + count - 1`, each
 * with `term` unless {@link VARIED_TERMS} is set and the terms follow, then each entry's data
 * length, then the data back to back. One record is written whole or not at all, which makes the
 * append (a conflicting one included) all-or-nothing across a power loss, and it frames the
 * entries once rather than once each: about 4 bytes of overhead per entry instead of 30.
 *
 * An append of one entry, or one too large for a single record, is ENTRY records, one per entry.
 * The first carries {@link FIRST_OF_BATCH} and the number of entries: replay applies them only
 * once all are present. Any record with entries replaces the entry at its first index and
 * everything after it, so a conflicting append needs no separate truncation record, and nothing
 * is ever rewritten in place.
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
/** @internal */
export const KIND_BATCH = 5

/** Flag of a BATCH record whose entries do not all have its `term`: their terms follow. @internal */
export const VARIED_TERMS = 1

/** Flag of the first ENTRY record of an append. @internal */
export const FIRST_OF_BATCH = 1

/** Bytes before an entry's data. @internal */
export const ENTRY_HEADER = 22

const TWO_32 = 2 ** 32

/** Write a safe integer as an unsigned 64-bit little-endian number. */
export function writeU64(buf: Buffer, at: number, n: number): void {
  // Byte stores: appends write two of these per entry.
  putU32(buf, at, n >>> 0)
  putU32(buf, at + 4, Math.floor(n / TWO_32))
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
 * The entries of one `append`, as values captured when it was checked (so what is written is
 * what was checked): entries `first`, `first + 1`, ... with `terms[k]`, `data[k]` and
 * `sizes[k]`, the byte length of that data.
 *
 * @internal
 */
export interface CheckedEntries {
  readonly first: number
  readonly terms: Float64Array
  readonly data: (Uint8Array | string)[]
  readonly sizes: Float64Array
}

/** Whether every entry has the first one's term (terms never decrease within an append). */
function oneTerm(terms: Float64Array): boolean {
  return terms[0] === terms[terms.length - 1]
}

/** Bytes of the BATCH record holding `entries`. @internal */
export function batchRecordLength(entries: CheckedEntries, dataBytes: number): number {
  const n = entries.terms.length
  return ENTRY_HEADER + (oneTerm(entries.terms) ? 0 : 8 * n) + 4 * n + dataBytes
}

/**
 * Entries laid out by the Wal straight into its staging buffer (`Wal.appendWritten`): each
 * entry's data is copied once, from the caller's memory to the log's.
 *
 * @internal
 */
export interface EntryRecords extends RecordWriter {
  readonly entries: CheckedEntries
}

/** An append as one BATCH record. @internal */
export class BatchRecord implements EntryRecords {
  readonly lengths: Float64Array

  constructor(
    readonly entries: CheckedEntries,
    length: number,
  ) {
    this.lengths = Float64Array.of(length)
  }

  write(_k: number, buf: Buffer, at: number): void {
    const { first, terms, data, sizes } = this.entries
    const n = terms.length
    const sameTerm = oneTerm(terms)
    buf[at] = KIND_BATCH
    buf[at + 1] = sameTerm ? 0 : VARIED_TERMS
    putU32(buf, at + 2, n)
    writeU64(buf, at + 6, first)
    writeU64(buf, at + 14, terms[0])
    let to = at + ENTRY_HEADER
    if (!sameTerm) {
      for (let k = 0; k < n; k++, to += 8) writeU64(buf, to, terms[k])
    }
    for (let k = 0; k < n; k++, to += 4) putU32(buf, to, sizes[k])
    for (let k = 0; k < n; k++) {
      const d = data[k]
      if (typeof d === 'string') buf.write(d, to, sizes[k], 'utf8')
      else buf.set(d, to)
      to += sizes[k]
    }
  }
}

/** An append as ENTRY records, one per entry. @internal */
export class EntryBatch implements EntryRecords {
  readonly lengths: Float64Array

  constructor(readonly entries: CheckedEntries) {
    this.lengths = entries.sizes.map((n) => ENTRY_HEADER + n)
  }

  write(k: number, buf: Buffer, at: number): void {
    const { first, terms, data, sizes } = this.entries
    buf[at] = KIND_ENTRY
    buf[at + 1] = k === 0 ? FIRST_OF_BATCH : 0
    putU32(buf, at + 2, k === 0 ? terms.length : 0)
    writeU64(buf, at + 6, first + k)
    writeU64(buf, at + 14, terms[k])
    const d = data[k]
    if (typeof d === 'string') buf.write(d, at + ENTRY_HEADER, sizes[k], 'utf8')
    else buf.set(d, at + ENTRY_HEADER)
  }
}

function putU32(buf: Buffer, at: number, n: number): void {
  buf[at] = n
  buf[at + 1] = n >>> 8
  buf[at + 2] = n >>> 16
  buf[at + 3] = n >>> 24
}

/**
 * A BATCH record, decoded: its entries are `first...first + count - 1`. Checked against its
 * length when made, so `term` and `data` only read within it.
 *
 * @internal
 */
export class BatchView {
  readonly first: number
  readonly count: number
  readonly #rec: Buffer
  readonly #lsn: number
  readonly #term: number
  readonly #varied: boolean
  /** Data offset of each entry, and the record's end. */
  readonly #starts: Float64Array

  constructor(rec: Buffer, lsn: number) {
    if (rec.length < ENTRY_HEADER || rec[0] !== KIND_BATCH) throw corruptRecord(lsn, 'not a batch record')
    this.count = rec.readUInt32LE(2)
    this.first = readU64(rec, 6, lsn)
    this.#term = readU64(rec, 14, lsn)
    this.#varied = (rec[1] & VARIED_TERMS) !== 0
    this.#rec = rec
    this.#lsn = lsn
    const lengthsAt = ENTRY_HEADER + (this.#varied ? 8 * this.count : 0)
    const dataAt = lengthsAt + 4 * this.count
    if (this.count === 0 || dataAt > rec.length) throw corruptRecord(lsn, `a batch of ${this.count} entries in ${rec.length} bytes`)
    this.#starts = new Float64Array(this.count + 1)
    let total = (this.#starts[0] = dataAt)
    for (let k = 0; k < this.count; k++) this.#starts[k + 1] = total += rec.readUInt32LE(lengthsAt + 4 * k)
    if (total !== rec.length) throw corruptRecord(lsn, `a batch whose entries take ${total} bytes, in a record of ${rec.length}`)
  }

  /** Term of entry `first + k`. */
  term(k: number): number {
    return this.#varied ? readU64(this.#rec, ENTRY_HEADER + 8 * k, this.#lsn) : this.#term
  }

  /** Every entry's term. */
  terms(): Float64Array {
    const out = new Float64Array(this.count)
    if (!this.#varied) return out.fill(this.#term)
    for (let k = 0; k < this.count; k++) out[k] = this.term(k)
    return out
  }

  /** Data of entry `first + k`, a view into the record. */
  data(k: number): Buffer {
    return this.#rec.subarray(this.#starts[k], this.#starts[k + 1])
  }

  /** Entry `index`, which this record must hold. */
  entry(index: number): RaftEntry {
    const k = index - this.first
    if (k < 0 || k >= this.count) {
      throw corruptRecord(this.#lsn, `holds entries ${this.first} to ${this.first + this.count - 1}, expected ${index}`)
    }
    return { index, term: this.term(k), data: this.data(k) }
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
