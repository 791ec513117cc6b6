import { EventEmitter } from 'node:events'

import { checkBlob, checkKey, type DurableStore, type DurableStoreOptions } from './durable-store.js'
import { durableKeyMatcher } from './durable-store-keys.js'
import { invalidArg, SturdyError } from './errors.js'
import { KeyedQueue } from './keyed-queue.js'

/** A pending write-behind change: the new value, or `null` for a delete. */
type Change = Buffer | null

/**
 * What {@link FileDurableStore} and {@link LogDurableStore} share: argument checks, the
 * `durableKeys` split (other keys live in memory only), write-behind batching with its `'error'`
 * event, one-at-a-time ordering of the operations on each key, and `close()`. A subclass only
 * stores and reads durable keys.
 *
 * Events: `'error'` (write-behind and background failures, with the error).
 *
 * @example
 * ```ts
 * store.on('error', (e) => log.warn('a write-behind batch failed', e))
 * await store.persist('k', bytes) // with writeBehindMs: resolves at once
 * await store.flush()             // everything pending is durable now
 * ```
 */
export abstract class DurableStoreBase extends EventEmitter implements DurableStore {
  readonly #durable: (key: string) => boolean
  readonly #writeBehindMs: number | undefined
  /** Values of keys that are not durable. */
  readonly #memory = new Map<string, Buffer>()
  /** Write-behind changes not yet handed to the backend. */
  #pending = new Map<string, Change>()
  /** Write-behind changes being written now (shadow the backend until written). */
  readonly #writing = new Map<string, Change>()
  #timer: NodeJS.Timeout | undefined
  /** Write-behind batches being written. */
  readonly #batches = new Set<Promise<void>>()
  /** Per key: the last operation queued on it. */
  readonly #queues = new KeyedQueue()
  #closing: Promise<void> | undefined
  /** A background error nobody listened for: `flush()`/`close()` reject with it. */
  #kept: unknown

  protected constructor(options: DurableStoreOptions) {
    super()
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
    this.#durable = durableKeyMatcher(options.durableKeys)
    const ms = options.writeBehindMs
    if (ms !== undefined && (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0)) {
      throw invalidArg('writeBehindMs must be a positive number of milliseconds')
    }
    this.#writeBehindMs = ms
  }

  /** Store `blob` under `key` durably; called one at a time per key. */
  protected abstract writeValue(key: string, blob: Buffer): Promise<void>
  /** Remove `key` durably (nothing to do if it is absent); called one at a time per key. */
  protected abstract removeValue(key: string): Promise<void>
  /** The stored value of `key`. */
  protected abstract readValue(key: string): Promise<Buffer | undefined>
  /** The keys stored now. */
  protected abstract storedKeys(): Iterable<string>
  /** Whether `key` is stored now. */
  protected abstract isStored(key: string): boolean
  /** Every stored key and value. */
  protected abstract storedEntries(): AsyncIterable<[string, Buffer]>
  /** Release the backend (after every queued operation has finished). */
  protected abstract release(): Promise<void>

  /** Whether `key` is stored durably (matches `durableKeys`). */
  isDurableKey(key: string): boolean {
    return this.#durable(checkKey(key))
  }

  async persist(key: string, blob: Uint8Array): Promise<void> {
    checkKey(key)
    const bytes = checkBlob(blob)
    this.#checkOpen()
    if (!this.#durable(key)) {
      this.#memory.set(key, bytes)
      await this.#forgetStored(key)
    } else if (this.#writeBehindMs !== undefined) {
      this.#defer(key, bytes)
    } else {
      await this.serial(key, () => this.writeValue(key, bytes))
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    this.#checkOpen()
    if (!this.#durable(key)) {
      this.#memory.delete(key)
      await this.#forgetStored(key)
    } else if (this.#writeBehindMs !== undefined) {
      this.#defer(key, null)
    } else {
      await this.serial(key, () => this.removeValue(key))
    }
  }

  async load(key: string): Promise<Buffer | undefined> {
    checkKey(key)
    this.#checkOpen()
    if (!this.#durable(key)) {
      if (this.#memory.has(key) || !this.isStored(key)) return copy(this.#memory.get(key))
      // Stored by an earlier open whose durableKeys matched it, and not changed since.
      return this.serial(key, () => this.readValue(key))
    }
    const shadow = this.#shadow(key)
    if (shadow !== undefined) return shadow === null ? undefined : Buffer.from(shadow)
    // Queued behind this key's writes: a load sees every write that resolved before it.
    return this.serial(key, () => this.readValue(key))
  }

  async keys(): Promise<string[]> {
    this.#checkOpen()
    const keys = new Set(this.storedKeys())
    for (const changes of [this.#writing, this.#pending]) {
      for (const [key, change] of changes) {
        if (change === null) keys.delete(key)
        else keys.add(key)
      }
    }
    for (const key of this.#memory.keys()) keys.add(key)
    return [...keys].sort()
  }

  async *loadAll(): AsyncIterable<[string, Buffer]> {
    this.#checkOpen()
    const seen = new Set<string>()
    for (const key of [...this.#memory.keys()]) {
      const v = this.#memory.get(key)
      seen.add(key)
      if (v !== undefined) yield [key, Buffer.from(v)]
    }
    for (const changes of [new Map(this.#pending), new Map(this.#writing)]) {
      for (const [key, change] of changes) {
        if (seen.has(key)) continue
        seen.add(key)
        if (change !== null) yield [key, Buffer.from(change)]
      }
    }
    for await (const [key, value] of this.storedEntries()) {
      if (seen.has(key)) continue
      seen.add(key)
      yield [key, value]
    }
  }

  /**
   * Write every pending write-behind change now and wait until they are durable. Rejects with
   * a background error that no `'error'` listener received. Without write-behind, a no-op.
   */
  async flush(): Promise<void> {
    await Promise.all([this.#writeBatch(), ...this.#batches])
    if (this.#kept !== undefined) {
      const e = this.#kept
      this.#kept = undefined
      throw e
    }
  }

  /** Hand the pending changes to the backend; failures go to {@link DurableStoreBase.reportError}. */
  #writeBatch(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const batch = this.#pending
    this.#pending = new Map()
    const writes: Promise<void>[] = []
    for (const [key, change] of batch) {
      this.#writing.set(key, change)
      const write = this.serial(key, () => (change === null ? this.removeValue(key) : this.writeValue(key, change)))
      writes.push(
        write.then(
          () => this.#written(key, change),
          (e: unknown) => {
            this.#written(key, change)
            this.reportError(e)
          },
        ),
      )
    }
    const done = Promise.all(writes).then(() => {})
    this.#batches.add(done)
    void done.then(() => this.#batches.delete(done))
    return done
  }

  /**
   * Write what is pending, wait for every operation and background task, and release the
   * store. Later calls reject with `ERR_CLOSED`; closing again returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      let failure: unknown
      await this.flush().catch((e: unknown) => (failure = e))
      await this.#queues.drain()
      await this.release()
      if (failure !== undefined) throw failure
    })()
    return this.#closing
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined
  }

  /** Run `op` after every operation queued on `key` before it. */
  protected serial<T>(key: string, op: () => Promise<T>): Promise<T> {
    return this.#queues.run(key, op)
  }

  /** Keys with an operation queued or running. */
  protected busyKeys(): string[] {
    return this.#queues.keys()
  }

  /** Report a background failure: the `'error'` event, or kept for `flush()`/`close()`. */
  protected reportError(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e)
    else this.#kept ??= e
  }

  /**
   * A key that `durableKeys` no longer matches may still be stored from an earlier open; it is
   * loaded as it was until it changes. Once it changes its state lives in memory only, so the
   * stored copy goes: left, it would come back in place of the newer value after a restart, or
   * right away under a delete.
   */
  async #forgetStored(key: string): Promise<void> {
    if (this.isStored(key)) await this.serial(key, () => this.removeValue(key))
  }

  #defer(key: string, change: Change): void {
    this.#pending.set(key, change)
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined
      void this.#writeBatch()
    }, this.#writeBehindMs)
  }

  #written(key: string, change: Change): void {
    if (this.#writing.get(key) === change) this.#writing.delete(key)
  }

  #shadow(key: string): Change | undefined {
    if (this.#pending.has(key)) return this.#pending.get(key)
    if (this.#writing.has(key)) return this.#writing.get(key)
    return undefined
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new SturdyError('ERR_CLOSED', 'the store is closed')
  }
}

function copy(b: Buffer | undefined): Buffer | undefined {
  return b === undefined ? undefined : Buffer.from(b)
}
