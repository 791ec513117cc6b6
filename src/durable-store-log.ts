import { DurableStoreBase } from './durable-store-base.js'
import type { DurableStoreOptions } from './durable-store.js'
import { decodeLogRecord, encodeLogRecord, PUT, TOMBSTONE } from './durable-store-log-record.js'
import { invalidArg, SturdyError } from './errors.js'
import { FRAME_HEADER } from './group.js'
import type { SimulatedDisk } from './simulated-disk.js'
import { Wal } from './wal.js'

/**
 * Options for {@link LogDurableStore.open}.
 *
 * @example
 * ```ts
 * const store = await LogDurableStore.open('./data/crdt-log', { segmentBytes: 8 << 20, durableKeys: ['doc:*'] })
 * ```
 */
export interface LogDurableStoreOptions extends DurableStoreOptions {
  /** Segment size of the log (default 16 MiB); whole segments are what compaction frees. */
  segmentBytes?: number
  /** Largest record (key and value) accepted, in bytes (see {@link WalOptions.maxRecordBytes}). */
  maxRecordBytes?: number
  /**
   * Compact once garbage (superseded values and tombstones) exceeds this many bytes and
   * {@link LogDurableStoreOptions.compactGarbageRatio} times the live data. Default: twice
   * `segmentBytes` (compaction frees whole segments, so less would free nothing).
   */
  compactMinGarbageBytes?: number
  /** Garbage must also exceed this multiple of the live bytes (default 1). */
  compactGarbageRatio?: number
  /** Open the log on a {@link SimulatedDisk} (from `sturdy/testing`); `path` is its name there. */
  disk?: SimulatedDisk
}

/** Where the latest value of a key is in the log. */
interface Slot {
  lsn: number
  /** Bytes the record takes in the log (frame header included). */
  bytes: number
}

function positive(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidArg(`${name} must be a non-negative number`)
  return v
}

/**
 * A log-structured {@link DurableStore} on the {@link Wal}: each `persist` appends a put record
 * and each `delete` a tombstone (`[kind][key length][key][value]`), durable when the promise
 * resolves, with concurrent writers sharing the log's group commit. Memory holds only the index
 * key → LSN of the latest record; values are read from the log on demand, so memory does not
 * grow with the size of CRDT snapshots, and `loadAll` is one sequential scan of the log.
 *
 * When garbage (superseded records and tombstones) passes the threshold, a background
 * compaction re-appends the live records that lie below the current end of the log and then
 * drops the old segments (`truncateBefore`). Writes go on meanwhile; each key's rewrite is
 * ordered with that key's writes, and what survives any crash is a suffix of the log in which
 * the last record of every key is its latest state. Compaction failures go to the `'error'`
 * event (or reject `close()`).
 *
 * @example
 * ```ts
 * import { LogDurableStore } from 'sturdy'
 * const store = await LogDurableStore.open('./data/ddata-log')
 * await store.persist('counter/a', new Uint8Array([1]))  // durable now
 * await store.delete('counter/a')                         // a durable tombstone
 * for await (const [key, blob] of store.loadAll()) console.log(key, blob)
 * await store.close()
 * ```
 */
export class LogDurableStore extends DurableStoreBase {
  readonly #wal: Wal
  readonly #index: Map<string, Slot>
  #liveBytes: number
  readonly #minGarbage: number
  readonly #ratio: number
  #compaction: Promise<void> | undefined
  #truncating: Promise<unknown> | undefined

  private constructor(wal: Wal, index: Map<string, Slot>, options: LogDurableStoreOptions, segmentBytes: number) {
    super(options)
    this.#wal = wal
    this.#index = index
    this.#liveBytes = 0
    for (const slot of index.values()) this.#liveBytes += slot.bytes
    this.#minGarbage = positive('compactMinGarbageBytes', options.compactMinGarbageBytes, 2 * segmentBytes)
    this.#ratio = positive('compactGarbageRatio', options.compactGarbageRatio, 1)
  }

  /** Open (creating if needed) the store in log directory `path`, rebuilding its index. */
  static async open(path: string, options: LogDurableStoreOptions = {}): Promise<LogDurableStore> {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
    const segmentBytes = options.segmentBytes ?? 16 << 20
    positive('compactMinGarbageBytes', options.compactMinGarbageBytes, 0)
    positive('compactGarbageRatio', options.compactGarbageRatio, 0)
    const wal = await Wal.open(path, {
      segmentBytes,
      ...(options.maxRecordBytes !== undefined ? { maxRecordBytes: options.maxRecordBytes } : {}),
      ...(options.disk !== undefined ? { disk: options.disk } : {}),
    })
    try {
      const index = new Map<string, Slot>()
      for await (const { lsn, data } of wal.entries({ from: wal.firstLsn })) {
        const { kind, key } = decodeLogRecord(data, lsn)
        if (kind === PUT) index.set(key, { lsn, bytes: FRAME_HEADER + data.length })
        else index.delete(key)
      }
      return new LogDurableStore(wal, index, options, segmentBytes)
    } catch (e) {
      await wal.close().catch(() => {})
      throw e
    }
  }

  /** Bytes in the log that no longer hold a key's latest value. */
  get garbageBytes(): number {
    return Math.max(0, this.#wal.nextLsn - this.#wal.firstLsn - this.#liveBytes)
  }

  /** Compact now (or wait for the compaction running) — normally it runs on its own. */
  compact(): Promise<void> {
    this.#compaction ??= this.#compact().finally(() => (this.#compaction = undefined))
    return this.#compaction
  }

  protected async writeValue(key: string, blob: Buffer): Promise<void> {
    const record = encodeLogRecord(PUT, key, blob)
    const lsn = await this.#wal.append(record)
    this.#set(key, { lsn, bytes: FRAME_HEADER + record.length })
    this.#maybeCompact()
  }

  protected async removeValue(key: string): Promise<void> {
    // Absent from the index means its last record is a tombstone already (or there is none).
    if (!this.#index.has(key)) return
    await this.#wal.append(encodeLogRecord(TOMBSTONE, key))
    this.#set(key, undefined)
    this.#maybeCompact()
  }

  protected async readValue(key: string): Promise<Buffer | undefined> {
    const slot = this.#index.get(key)
    if (slot === undefined) return undefined
    return Buffer.from(decodeLogRecord(await this.#wal.read(slot.lsn), slot.lsn).value)
  }

  protected storedKeys(): Iterable<string> {
    return this.#index.keys()
  }

  protected isStored(key: string): boolean {
    return this.#index.has(key)
  }

  /**
   * One pass over the log. Compaction may run meanwhile: it re-appends live records above the
   * scan and drops the segments below (the log's iterator then continues at the oldest record
   * left), so a key may be met again at its new place — each is yielded once.
   */
  protected async *storedEntries(): AsyncIterable<[string, Buffer]> {
    while (this.#truncating !== undefined) await this.#truncating.catch(() => {})
    const yielded = new Set<string>()
    for await (const { lsn, data } of this.#wal.entries({ from: this.#wal.firstLsn })) {
      const { kind, key, value } = decodeLogRecord(data, lsn)
      // Only the latest record of a key counts (the index says which one that is).
      if (kind === PUT && this.#index.get(key)?.lsn === lsn && !yielded.has(key)) {
        yielded.add(key)
        yield [key, Buffer.from(value)]
      }
    }
  }

  protected async release(): Promise<void> {
    await this.#compaction?.catch(() => {})
    await this.#wal.close()
  }

  #set(key: string, slot: Slot | undefined): void {
    const old = this.#index.get(key)
    if (old !== undefined) this.#liveBytes -= old.bytes
    if (slot === undefined) {
      this.#index.delete(key)
    } else {
      this.#index.set(key, slot)
      this.#liveBytes += slot.bytes
    }
  }

  #maybeCompact(): void {
    if (this.#compaction !== undefined || this.closed) return
    const garbage = this.garbageBytes
    if (garbage <= this.#minGarbage || garbage <= this.#ratio * this.#liveBytes) return
    this.compact().catch((e: unknown) => this.reportError(e))
  }

  async #compact(): Promise<void> {
    const boundary = this.#wal.nextLsn
    // Keys with a write in flight too: such a write may land below the boundary.
    const keys = new Set([...this.#index.keys(), ...this.busyKeys()])
    const batch: Promise<void>[] = []
    for (const key of keys) {
      batch.push(this.serial(key, () => this.#rewrite(key, boundary)))
      if (batch.length >= 256) await Promise.all(batch.splice(0))
    }
    await Promise.all(batch)
    // Every live record is at or above the boundary now; drop the segments below it. Scans under
    // way are not waited for (an abandoned one would block compaction and close for ever).
    this.#truncating = this.#wal.truncateBefore(boundary)
    try {
      await this.#truncating
    } finally {
      this.#truncating = undefined
    }
  }

  /** Re-append `key`'s latest record if it lies below `boundary` (runs in the key's queue). */
  async #rewrite(key: string, boundary: number): Promise<void> {
    const slot = this.#index.get(key)
    if (slot === undefined || slot.lsn >= boundary) return
    const record = await this.#wal.read(slot.lsn)
    if (record[0] !== PUT) throw new SturdyError('ERR_CORRUPT', `store index points at a non-put record at LSN ${slot.lsn}`)
    const lsn = await this.#wal.append(record)
    this.#set(key, { lsn, bytes: slot.bytes })
  }
}
