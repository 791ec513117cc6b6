import { constants } from 'node:buffer'

import { byteLengthOf, isBytes } from './bytes.js'
import { fromNative, invalidArg, SturdyError } from './errors.js'
import { NativeWal } from './native.js'
import { nativeDiskOf, type SimulatedDisk } from './simulated-disk.js'
import { BufferPool, FRAME_HEADER, Group, lsnAt, lsnsAt, type Anchors, type RecordWriter } from './group.js'

/**
 * What `append` accepts: bytes, or a string stored as UTF-8.
 *
 * @example
 * ```ts
 * await wal.append(new Uint8Array([1, 2, 3]))
 * await wal.append('stored as UTF-8')
 * ```
 */
export type RecordData = Uint8Array | string

/**
 * Options for {@link Wal.open}.
 *
 * @example
 * ```ts
 * const wal = await Wal.open('./data/wal', { segmentBytes: 16 << 20, maxRecordBytes: 1 << 20, recovery: 'strict' })
 * ```
 */
export interface WalOptions {
  /**
   * Capacity of each segment file in bytes, header included (default 64 MiB). A log keeps the
   * capacity its segments were created with; this applies to new segments.
   */
  segmentBytes?: number
  /** Largest record accepted, in bytes (default: 16 MiB or `segmentBytes - 96`, whichever is smaller; at most `segmentBytes - 96`). */
  maxRecordBytes?: number
  /**
   * What to do with damage found on open. `'strict'` (default) cuts only the torn tail of the
   * last, unacknowledged write and fails with `ERR_CORRUPT` on anything else. `'truncate'` cuts
   * the log at the first damaged record anywhere and reports what it dropped in
   * {@link Wal.recovery}.
   */
  recovery?: 'strict' | 'truncate'
  /**
   * Keep zero-filled space ahead of the writer, filled on a background thread (default true).
   * Overwriting zero-filled space lets each durability barrier skip journaling a new file size:
   * on Linux/ext4 that halves the cost of a small durable append. While what the log writes per
   * barrier averages above 128 KiB, filling pauses: there the zeros would cost the disk more
   * bandwidth than the journaling they save.
   */
  preallocate?: boolean
  /**
   * Which writes go past the operating system's page cache. On Linux this opens segments with
   * `O_DIRECT`; elsewhere it changes nothing, as it does on a file system that refuses direct
   * I/O.
   *
   * - `'auto'` (default): writes under 1 MiB — what the appends of one group commit add up to,
   *   short of a bulk load. Those are the writes whose barrier waits on the copy into the page
   *   cache and its write-back; measured on Linux/ext4 (2 cores, virtio disk), 64 writers of
   *   1 KiB went from about 145-175k to 190-205k durable appends/s. Larger writes (a big
   *   `appendBatch`) still go through the page cache, so they read back from memory.
   * - `true`: every write (`RaftLog`'s default). Copying into the page cache was most of the CPU
   *   a large durable append cost: a Raft log with 128 batches of 64 × 256 B entries in flight
   *   went from about 1.9M to 2.9M entries/s.
   * - `false`: none.
   *
   * Direct writes are staged in an 8 MiB ring (allocated on the first one) that keeps what it
   * wrote, so reads of the newest 8 MiB come from memory. Reads of anything older that was
   * written directly (iteration, a reopen's recovery scan) come from the disk — about
   * 0.5-1 GB/s there, against 2-6 GB/s from the page cache. It needs `preallocate` (the
   * default): each direct write pads its last 4 KiB block with zeros, which only preallocated
   * space tells apart from a torn write; with `preallocate: false` writes go through the page
   * cache.
   */
  directWrites?: boolean | 'auto'
  /**
   * Cap on bytes handed to the disk and not yet durable (default 64 MiB). When producers outrun
   * the disk, their appends gather into groups of at most the cap, each handed over once the
   * bytes in flight leave room for it, so memory stays bounded for producers that await their
   * appends (appends you do not await still hold their copied bytes until they are written).
   * A single record larger than the cap goes alone. One `appendBatch` call may go past it: its
   * records are copied before it returns either way, so it hands them to the disk in slices of
   * 8 MiB as it stages them.
   */
  maxPendingBytes?: number
  /**
   * Open without writing anything (default false): a shared lock (other readers may open it, a
   * writer may not), no segment prepared, and damage — a torn tail included — reported in
   * {@link Wal.recovery} or as `ERR_CORRUPT` but left in place. Appends, syncs and truncations
   * reject with `ERR_INVALID_ARG`. For inspection tools and backups.
   */
  readOnly?: boolean
  /**
   * Open the log on a {@link SimulatedDisk} (from `sturdy/testing`) instead of the file system;
   * `dir` is then the log's name on that disk.
   */
  disk?: SimulatedDisk
}

/**
 * One record read back from the log.
 *
 * @example
 * ```ts
 * for await (const { lsn, data } of wal.entries()) console.log(lsn, data.toString())
 * ```
 */
export interface WalEntry {
  lsn: number
  data: Buffer
}

/**
 * What recovery did when the log was opened.
 *
 * @example
 * ```ts
 * const wal = await Wal.open('./data/wal', { recovery: 'truncate' })
 * if (wal.recovery.cutAt !== undefined) console.warn(`dropped ${wal.recovery.droppedBytes} bytes: ${wal.recovery.cutReason}`)
 * ```
 */
export interface RecoveryReport {
  /** Bytes of an interrupted (never acknowledged) write cut from the end. */
  tornBytes: number
  /** With `recovery: 'truncate'`: the LSN where damage made recovery cut the log. */
  cutAt?: number
  /** With `recovery: 'truncate'`: what the damage was. */
  cutReason?: string
  /** With `recovery: 'truncate'`: bytes dropped after the cut, valid records included. */
  droppedBytes: number
  segments: number
  records: number
}

function checkLsn(name: string, lsn: unknown): number {
  if (typeof lsn !== 'number' || !Number.isSafeInteger(lsn) || lsn < 0) {
    throw invalidArg(`${name} must be a non-negative safe integer, got ${typeof lsn === 'number' ? lsn : typeof lsn}`)
  }
  return lsn
}

function nativeOptions(options: WalOptions): Record<string, unknown> {
  if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
  const { segmentBytes, maxRecordBytes, recovery, preallocate, directWrites, maxPendingBytes, readOnly } = options
  for (const [k, v] of Object.entries({ segmentBytes, maxRecordBytes, maxPendingBytes })) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)) {
      throw invalidArg(`${k} must be a positive integer`)
    }
  }
  if (recovery !== undefined && recovery !== 'strict' && recovery !== 'truncate') {
    throw invalidArg(`recovery must be 'strict' or 'truncate'`)
  }
  for (const [k, v] of Object.entries({ preallocate, readOnly })) {
    if (v !== undefined && typeof v !== 'boolean') throw invalidArg(`${k} must be a boolean`)
  }
  if (directWrites !== undefined && typeof directWrites !== 'boolean' && directWrites !== 'auto') {
    throw invalidArg(`directWrites must be a boolean or 'auto'`)
  }
  const direct = directWrites === undefined ? undefined : directWrites === 'auto' ? 'auto' : directWrites ? 'always' : 'off'
  return { segmentBytes, maxRecordBytes, recovery, preallocate, directWrites: direct, readOnly }
}

function checkDir(dir: unknown): string {
  if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0')) {
    throw invalidArg('dir must be a non-empty path string')
  }
  return dir
}

/**
 * A record as it will be staged: a record given as parts is read once, into an array of our
 * own, so that what is measured is what is copied (a getter on the caller's array could answer
 * differently each time).
 */
function ownRecord<T>(data: T): T {
  return Array.isArray(data) ? (ownCopy(data) as T) : data
}

/**
 * The elements of `array`, each read once, in an array of our own. Without a prototype, an
 * accessor on Array.prototype cannot run on it either.
 */
function ownCopy<T>(array: readonly T[]): T[] {
  const copy = new Array<T>(array.length)
  Object.setPrototypeOf(copy, null)
  for (let i = 0; i < copy.length; i++) copy[i] = array[i]!
  return copy
}

/** Total length of a record given as parts (read by `ownRecord`); -1 if a part is not a Uint8Array. */
function partsLength(parts: readonly unknown[]): number {
  let len = 0
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]
    if (!isBytes(part)) return -1
    len += byteLengthOf(part)
  }
  return len
}

/**
 * A group this large is handed to the committer at once, without waiting for the turn to end: an
 * idle disk starts on it while the rest of the turn is staged, and groups handed over while the
 * disk is busy are merged by the committer into its next write anyway (one barrier for all).
 */
const LARGE_GROUP = 128 << 10
/**
 * A group of at least twice this many records makes the next one that gathers while the disk is
 * idle go in two halves: the first half is written while JavaScript settles and stages the
 * second, at the price of one more barrier. Settling and staging take about 0.5 µs a record, so
 * below this the overlap saves less than a barrier costs (measured: 64 writers of 1 KiB lost 8%
 * split in two, 256 writers of 100 B gained 20%, 1,024 gained 27%).
 */
const SPLIT_MIN = 128
/**
 * A large `appendBatch` goes to the committer in slices of this size as it is staged, so the disk
 * writes one slice while the next is copied. Staging buffers up to this size are pooled, so
 * slices reuse memory instead of faulting in fresh pages.
 */
const BATCH_SLICE = 8 << 20
/**
 * The most one `appendWritten` may stage: its records go into one buffer. A fixed size, not the
 * largest buffer Node allows (2^53 - 1 bytes from Node 22 on): no single write needs more.
 */
export const MAX_WRITTEN = Math.min(constants.MAX_LENGTH, 1 << 30)

/**
 * The framed bytes of each slice `appendBatch` stages records of lengths `lens` in, the first
 * slice joining a group already `start` bytes long: a slice is closed once it holds
 * `BATCH_SLICE` bytes.
 */
function sliceSizes(start: number, lens: Float64Array): number[] {
  const sizes = [0]
  let size = start
  for (const len of lens) {
    if (size >= BATCH_SLICE) {
      sizes.push(0)
      size = 0
    }
    sizes[sizes.length - 1]! += FRAME_HEADER + len
    size += FRAME_HEADER + len
  }
  return sizes
}

/**
 * A durable, append-only write-ahead log.
 *
 * Every promise from `append`/`appendBatch` resolves only once the record is on stable storage
 * (fdatasync on Linux, F_FULLFSYNC on macOS, FlushFileBuffers on Windows). Appends made in the
 * same event-loop turn share one write and one durability barrier, so many concurrent writers
 * cost little more than one (a turn of hundreds of appends to an idle disk goes in two halves, so
 * the disk writes the first while the second is staged). A record's LSN is its byte position in
 * the log and never changes.
 *
 * @example
 * ```ts
 * import { Wal } from 'sturdy'
 * const wal = await Wal.open('./data/wal')
 * const lsn = await wal.append('hello')          // durable now
 * for await (const { lsn, data } of wal.entries()) console.log(lsn, data.toString())
 * await wal.close()
 * ```
 */
export class Wal {
  readonly #native: NativeWal
  readonly #maxRecordBytes: number
  #group: Group | undefined
  /**
   * Groups that reached the cap on bytes in flight while earlier ones were being written: each
   * goes to the committer whole, in order, once the bytes in flight leave room for it.
   */
  readonly #held: Group[] = []
  readonly #pool = new BufferPool()
  #lastGroupSize = 0
  /** A group gathering while the disk is idle goes at this many records (see `SPLIT_MIN`). */
  #splitAt = Infinity
  #closed = false
  /** The close in progress or done (`closeSync` leaves it unset: it is over when it returns). */
  #closing: Promise<void> | undefined

  readonly #maxPendingBytes: number
  /** Bytes of groups handed to the committer and not yet settled. */
  #pendingBytes = 0

  private constructor(native: NativeWal, maxPendingBytes = 64 << 20) {
    this.#native = native
    this.#maxRecordBytes = native.maxRecordBytes()
    this.#maxPendingBytes = maxPendingBytes
  }

  /**
   * Open (creating if needed) the log in directory `dir`, recovering it from any crash.
   * Fails with `ERR_LOCKED` if another process has it open and `ERR_CORRUPT` on damage that
   * is not a torn tail (unless `recovery: 'truncate'`).
   */
  static async open(dir: string, options: WalOptions = {}): Promise<Wal> {
    const opts = nativeOptions(options)
    try {
      const native = options.disk
        ? NativeWal.openSimulated(nativeDiskOf(options.disk), checkDir(dir), opts)
        : NativeWal.open(checkDir(dir), opts)
      return new Wal(await native, options.maxPendingBytes)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Synchronous {@link Wal.open}, for scripts and CLIs. */
  static openSync(dir: string, options: WalOptions = {}): Wal {
    const opts = nativeOptions(options)
    try {
      return new Wal(
        options.disk
          ? NativeWal.openSimulatedSync(nativeDiskOf(options.disk), checkDir(dir), opts)
          : NativeWal.openSync(checkDir(dir), opts),
        options.maxPendingBytes,
      )
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** LSN of the oldest record, or {@link Wal.nextLsn} when the log is empty. */
  get firstLsn(): number {
    return this.#native.firstLsn()
  }

  /**
   * Where the records dropped from the front of the log ended: every record that
   * {@link Wal.truncateBefore} removed (or a `'truncate'` recovery that had to start the log
   * afresh) ends at or before this LSN. A log never trimmed answers its very beginning. A
   * snapshot covering the log up to an LSN at or past it misses none of the dropped records;
   * {@link recover} refuses one that does not.
   */
  get droppedEnd(): number {
    try {
      return this.#native.droppedEnd()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** LSN just past the newest durable record: every later append gets a larger LSN. */
  get nextLsn(): number {
    return this.#native.nextLsn()
  }

  /** What recovery found and did when this log was opened. */
  get recovery(): RecoveryReport {
    const r = this.#native.recovery()
    const report: RecoveryReport = { tornBytes: r.tornBytes, droppedBytes: r.droppedBytes, segments: r.segments, records: r.records }
    if (r.cutAt != null) report.cutAt = r.cutAt
    if (r.cutReason != null) report.cutReason = r.cutReason
    return report
  }

  /** The largest record this log accepts, in bytes. */
  get maxRecordBytes(): number {
    return this.#maxRecordBytes
  }

  /** Whether {@link Wal.close} has been called. */
  get closed(): boolean {
    return this.#closed
  }

  /**
   * Append one record. Resolves with its LSN once it is durable. The bytes are copied before
   * this returns, so the caller may reuse its buffer at once. `data` may also be an array of
   * parts laid end to end as one record (a header and a payload, say): they are copied once,
   * straight into the log's staging buffer, with no joining copy first.
   */
  append(data: RecordData | readonly Uint8Array[]): Promise<number> {
    let offset: number
    let group: Group
    try {
      const record = ownRecord(data)
      const len = this.#measure(record)
      group = this.#gather(FRAME_HEADER + len)
      offset = group.add(record, len)
    } catch (e) {
      return Promise.reject(e)
    }
    const done = group.done.then((anchors) => lsnAt(anchors, offset))
    this.#flushIfLarge(group)
    return done
  }

  /**
   * Append several records; resolves with their LSNs once all are durable. A small batch is one
   * group (one write, one barrier); a large one is handed to the disk in slices of a few MiB as
   * it is staged, so copying the next slice overlaps writing the last (one all of byte records
   * or all of strings is staged by the native side, outside the JavaScript heap). Either way a
   * crash keeps a prefix of the batch, in order. Every record is checked before any is written,
   * and each is read from `records` once.
   */
  appendBatch(records: readonly RecordData[]): Promise<number[]> {
    const offsets = new Float64Array(Array.isArray(records) ? records.length : 0)
    /** Each slice: its group and the index of its first record. */
    const slices: { group: Group; first: number }[] = []
    try {
      if (!Array.isArray(records)) throw invalidArg('appendBatch takes an array of records')
      // Each record is read once, into an array of our own, before any is measured: a getter
      // on `records` could answer differently each time, or change a record already read.
      const items = ownCopy(records)
      for (let i = 0; i < items.length; i++) items[i] = ownRecord(items[i]!)
      const lens = new Float64Array(items.length)
      let total = 0
      let strings = 0
      let parts = 0
      for (let i = 0; i < items.length; i++) {
        const data = items[i]!
        total += (lens[i] = this.#measure(data)) + FRAME_HEADER
        if (typeof data === 'string') strings++
        else if (Array.isArray(data)) parts++
      }
      // All bytes or all strings (every record measured, so each is one or the other): staged
      // by the native side.
      const allStrings = strings === items.length
      if ((allStrings || strings + parts === 0) && total > BATCH_SLICE) return this.#appendLarge(items, lens, offsets, total, allStrings)
      let group = this.#gather(Math.min(total, BATCH_SLICE), Math.min(total, BATCH_SLICE))
      // Memory for the whole batch is taken before any of it is staged: running out part-way
      // would leave slices already handed to the disk that the caller never learns of.
      const sizes = sliceSizes(group.size, lens)
      group.reserve(sizes[0]!)
      const buffers = this.#pool.takeAll(sizes.slice(1))
      slices.push({ group, first: 0 })
      for (let i = 0; i < items.length; i++) {
        if (group.size >= BATCH_SLICE) {
          // Past the cap on bytes in flight too: this call holds its copies either way, and a
          // slice the committer has is one it can write while the rest is staged.
          this.#flush(true)
          group = this.#gather(0, buffers[slices.length - 1])
          slices.push({ group, first: i })
        }
        offsets[i] = group.add(items[i]!, lens[i]!)
      }
    } catch (e) {
      return Promise.reject(e)
    }
    const last = slices[slices.length - 1]!.group
    const done = Promise.all(slices.map((s) => s.group.done)).then((anchors) => {
      const lsns = new Array<number>(offsets.length)
      for (let k = 0; k < slices.length; k++) {
        const end = k + 1 < slices.length ? slices[k + 1]!.first : offsets.length
        lsnsAt(anchors[k]!, offsets, lsns, slices[k]!.first, end)
      }
      return lsns
    })
    this.#flushIfLarge(last)
    return done
  }

  /**
   * A batch larger than one slice, all of byte records or all of strings: the native side
   * frames it, into memory outside the JavaScript heap, and hands it to the disk slice by slice
   * as it goes (one call, one promise). Staged here instead, 100 MiB of fresh buffers would
   * make V8 collect a heap that holds every one of the caller's records.
   */
  #appendLarge(items: RecordData[], lens: Float64Array, offsets: Float64Array, total: number, strings: boolean): Promise<number[]> {
    this.#checkOpen()
    this.#flush(true) // every earlier append goes first
    for (let i = 1; i < lens.length; i++) offsets[i] = offsets[i - 1]! + FRAME_HEADER + lens[i - 1]!
    return new Promise((resolve, reject) => {
      const commit = () => this.#native.commitBatch(items, lens, strings)
      this.#send(total, commit, (anchors, err) => (anchors ? resolve(lsnsAt(anchors, offsets)) : reject(err)))
    })
  }

  /**
   * Append the records `writer` lays out straight into the log's staging buffer, saving the
   * copy into a buffer of the caller's own; resolves with their LSNs once all are durable. One
   * group, whatever its size (no slicing as in `appendBatch`). A record longer than
   * `maxRecordBytes` rejects before anything is written, as does a `writer` that throws.
   *
   * @internal
   */
  appendWritten(writer: RecordWriter): Promise<number[]> {
    try {
      return this.stageWritten(writer)
    } catch (e) {
      return Promise.reject(e)
    }
  }

  /**
   * {@link Wal.appendWritten}, but what fails before anything is staged (bad lengths, a closed
   * log, no memory for the staging buffer, a throwing `writer`) throws here, synchronously: the
   * caller then knows nothing was written, and keeps its own state as it was.
   *
   * @internal
   */
  stageWritten(writer: RecordWriter): Promise<number[]> {
    // A copy: the frames are laid out by these lengths whatever `writer` does meanwhile.
    const lengths = Float64Array.from(writer.lengths)
    const offsets = new Float64Array(lengths.length)
    let total = 0
    for (let k = 0; k < lengths.length; k++) total += this.#checkLength(lengths[k]) + FRAME_HEADER
    if (total > MAX_WRITTEN) throw invalidArg(`records written in one call may take at most ${MAX_WRITTEN} bytes, framed; got ${total}`)
    const group = this.#gather(total, total)
    group.addWritten(writer, lengths, total, offsets)
    const done = group.done.then((anchors) => lsnsAt(anchors, offsets))
    this.#flushIfLarge(group)
    return done
  }

  /** Synchronous {@link Wal.append}: blocks until the record is durable. */
  appendSync(data: RecordData): number {
    this.#checkOpen()
    const group = new Group(this.#pool, 0)
    const record = ownRecord(data)
    const offset = group.add(record, this.#measure(record))
    group.seal()
    this.#flush(true)
    try {
      const anchors = this.#native.commitSync(group.chunks)
      group.settle(anchors)
      return lsnAt(anchors, offset)
    } catch (e) {
      group.settle(undefined, e)
      throw fromNative(e)
    }
  }

  /** Resolves once everything appended before this call is durable. */
  async sync(): Promise<void> {
    this.#checkOpen()
    this.#flush(true)
    try {
      await this.#native.sync()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Synchronous {@link Wal.sync}. */
  syncSync(): void {
    this.#checkOpen()
    this.#flush(true)
    try {
      this.#native.syncSync()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** The payload of the record at `lsn`; `ERR_NOT_FOUND` if no record starts there. */
  async read(lsn: number): Promise<Buffer> {
    this.#checkOpen()
    checkLsn('lsn', lsn)
    try {
      return await this.#native.read(lsn)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * The payloads of the records at `lsns`, in order: one trip off the event loop for all of them
   * (rather than one per record). `ERR_NOT_FOUND` if no record starts at one of them.
   */
  async readMany(lsns: readonly number[]): Promise<Buffer[]> {
    this.#checkOpen()
    if (!Array.isArray(lsns)) throw invalidArg('readMany takes an array of LSNs')
    for (const lsn of lsns) checkLsn('lsn', lsn)
    try {
      return await this.#native.readMany(lsns as number[])
    } catch (e) {
      throw fromNative(e)
    }
  }

  /** Synchronous {@link Wal.read}. */
  readSync(lsn: number): Buffer {
    this.#checkOpen()
    checkLsn('lsn', lsn)
    try {
      return this.#native.readSync(lsn)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Iterate over durable records in LSN order, starting with the first record at or after
   * `from` (default: the oldest). Records are read in chunks of about `chunkBytes`; each
   * entry's `data` is a view into its chunk.
   */
  async *entries(options: { from?: number; chunkBytes?: number } = {}): AsyncIterableIterator<WalEntry> {
    if (options === null || typeof options !== 'object') throw invalidArg('entries takes an options object')
    let next = options.from === undefined ? 0 : checkLsn('from', options.from)
    const chunkBytes = options.chunkBytes ?? 1 << 20
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes > 0xffffffff) {
      throw invalidArg('chunkBytes must be a positive integer below 4 GiB')
    }
    for (;;) {
      this.#checkOpen()
      let chunk
      try {
        chunk = await this.#native.readChunk(next, chunkBytes)
      } catch (e) {
        throw fromNative(e)
      }
      const { data, lsns, bounds } = chunk
      for (let i = 0; i < lsns.length; i++) {
        yield { lsn: lsns[i], data: data.subarray(bounds[2 * i], bounds[2 * i + 1]) }
      }
      if (chunk.done) return
      next = chunk.next
    }
  }

  /**
   * Drop the record at `lsn` and every record after it, durably (for example a conflicting
   * suffix). `lsn` must be a record's LSN or {@link Wal.nextLsn}. Later appends get LSNs past
   * `lsn` (the log's next commit marker comes first).
   */
  async truncateFrom(lsn: number): Promise<void> {
    this.#checkOpen()
    checkLsn('lsn', lsn)
    this.#flush(true)
    try {
      await this.#native.truncateFrom(lsn)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Drop whole segments whose records all lie below `lsn` (for example once a checkpoint covers
   * them). LSNs are never renumbered; records below `lsn` that share a segment with newer ones
   * stay readable. Resolves with the new {@link Wal.firstLsn}.
   */
  async truncateBefore(lsn: number): Promise<number> {
    this.#checkOpen()
    checkLsn('lsn', lsn)
    this.#flush(true)
    try {
      return await this.#native.truncateBefore(lsn)
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Wait for pending appends, make everything durable, and release the log. Later calls fail
   * with `ERR_CLOSED`. Closing twice is harmless: every call settles as the first does, once
   * the log is released.
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      if (this.#closed) return Promise.resolve() // by closeSync
      this.#flush(true)
      this.#closed = true
      this.#closing = this.#closeNative()
    }
    return this.#closing
  }

  async #closeNative(): Promise<void> {
    try {
      await this.#native.close()
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * Synchronous {@link Wal.close}. After a `close()` still in progress it blocks until that
   * close has released the log.
   */
  closeSync(): void {
    if (!this.#closed) {
      this.#flush(true)
      this.#closed = true
    }
    try {
      this.#native.closeSync()
    } catch (e) {
      throw fromNative(e)
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new SturdyError('ERR_CLOSED', 'the log is closed')
  }

  /** Byte length of a record, after checking its type and size. */
  #measure(data: RecordData | readonly Uint8Array[]): number {
    const len =
      typeof data === 'string' ? Buffer.byteLength(data, 'utf8')
      : isBytes(data) ? byteLengthOf(data)
      : Array.isArray(data) ? partsLength(data)
      : -1
    if (len < 0) throw invalidArg(`a record must be a Uint8Array, a string or an array of Uint8Arrays, got ${data === null ? 'null' : typeof data}`)
    return this.#checkLength(len)
  }

  #checkLength(len: number): number {
    if (len > this.#maxRecordBytes) {
      throw new SturdyError('ERR_RECORD_TOO_LARGE', `record of ${len} bytes exceeds maxRecordBytes (${this.#maxRecordBytes})`)
    }
    if (!(len >= 0 && Number.isInteger(len))) throw invalidArg(`a record length must be a non-negative integer, got ${len}`)
    return len
  }

  /**
   * The group to stage `need` more bytes in: the one gathering this turn's appends, unless it
   * has not gone to the committer and those bytes would take it past the cap on bytes in
   * flight; then it is held, whole, and a new one starts. `expected` sizes a new group's first
   * buffer. The first append of a group schedules its flush.
   */
  #gather(need: number, expected: number | Buffer = 0): Group {
    this.#checkOpen()
    const current = this.#group
    if (current !== undefined && current.size > 0 && current.size + need > this.#maxPendingBytes) {
      this.#group = undefined
      current.seal()
      this.#held.push(current)
      this.#flush()
    }
    if (this.#group === undefined) {
      this.#group = new Group(this.#pool, typeof expected === 'number' ? Math.max(expected, this.#lastGroupSize) : expected)
      queueMicrotask(() => this.#flush())
    }
    return this.#group
  }

  /**
   * Hand `group` over before the turn ends when it is large, or when it holds half the records of
   * the last group (if that one was large enough to split) and the disk is idle.
   */
  #flushIfLarge(group: Group): void {
    if (group.size >= LARGE_GROUP || (group.count >= this.#splitAt && this.#pendingBytes === 0)) this.#flush()
  }

  /**
   * Hand the held groups, then the gathering one, to the committer, in order: one native call
   * and one promise each. Unless `force`d (an operation that must follow every earlier append),
   * a group that would push the bytes in flight past the cap waits until earlier groups are
   * durable (one alone may pass it: a record or batch slice larger than the cap).
   */
  #flush(force = false): void {
    while (this.#held.length > 0) {
      if (!force && !this.#hasRoomFor(this.#held[0]!)) return
      this.#commit(this.#held.shift()!)
    }
    const group = this.#group
    if (group === undefined || (!force && !this.#hasRoomFor(group))) return
    this.#group = undefined
    group.seal()
    this.#lastGroupSize = Math.min(group.size, 4 << 20)
    this.#splitAt = group.count >= 2 * SPLIT_MIN ? group.count >>> 1 : Infinity
    this.#commit(group)
  }

  /** Whether `group` may go to the committer without passing the cap on bytes in flight. */
  #hasRoomFor(group: Group): boolean {
    return this.#pendingBytes === 0 || this.#pendingBytes + group.size <= this.#maxPendingBytes
  }

  #commit(group: Group): void {
    this.#send(group.size, () => this.#native.commit(group.chunks), (anchors, err) => group.settle(anchors, err))
  }

  /**
   * Hand `size` bytes to the committer by `commit`, counted in flight until they are durable
   * (or failed); then `settle` gets the anchors or the typed error, and what waited for room
   * follows.
   */
  #send(size: number, commit: () => Promise<Anchors>, settle: (anchors: Anchors | undefined, err?: unknown) => void): void {
    this.#pendingBytes += size
    const settled = (anchors: Anchors | undefined, err?: unknown) => {
      this.#pendingBytes -= size
      settle(anchors, err)
      if (!this.#closed) this.#flush()
    }
    try {
      commit().then(
        (anchors) => settled(anchors),
        (e: unknown) => settled(undefined, fromNative(e)),
      )
    } catch (e) {
      settled(undefined, fromNative(e))
    }
  }
}
