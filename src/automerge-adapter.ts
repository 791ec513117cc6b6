import { isBytes } from './bytes.js'
import type { DurableStore, DurableStoreOptions } from './durable-store.js'
import { FileDurableStore } from './durable-store-file.js'
import { LogDurableStore, type LogDurableStoreOptions } from './durable-store-log.js'
import { invalidArg } from './errors.js'
import { FsDirectory } from './fs-directory.js'

/**
 * An automerge-repo storage key: a path of string segments (`[documentId, 'snapshot', hash]`).
 * Declared here so that sturdy does not depend on automerge-repo (it is the same type as its
 * `StorageKey`).
 *
 * @example
 * ```ts
 * const key: StorageKey = ['doc-id', 'incremental', 'hash']
 * ```
 */
export type StorageKey = string[]

/**
 * A value loaded by {@link SturdyStorageAdapter.loadRange}: automerge-repo's `Chunk`.
 *
 * @example
 * ```ts
 * for (const { key, data } of await adapter.loadRange(['doc-id'])) console.log(key, data?.length)
 * ```
 */
export interface Chunk {
  key: StorageKey
  data: Uint8Array | undefined
}

/**
 * The store key of a storage key: each segment escaped, then terminated by `/`.
 *
 * @example
 * ```ts
 * encodeStorageKey(['a', 'b/c']) // 'a/b%2Fc/'
 * ```
 */
export function encodeStorageKey(key: StorageKey): string {
  if (!Array.isArray(key)) throw invalidArg(`a storage key must be an array of strings, got ${key === null ? 'null' : typeof key}`)
  let out = ''
  for (const segment of key) {
    if (typeof segment !== 'string') {
      throw invalidArg(`a storage key segment must be a string, got ${segment === null ? 'null' : typeof segment}`)
    }
    out += segment.replace(/[%/]/g, (ch) => (ch === '%' ? '%25' : '%2F')) + '/'
  }
  return out
}

/**
 * The storage key of a store key made by {@link encodeStorageKey}, or `undefined` if it is not one.
 *
 * @example
 * ```ts
 * decodeStorageKey('a/b%2Fc/') // ['a', 'b/c']
 * ```
 */
export function decodeStorageKey(encoded: string): StorageKey | undefined {
  if (encoded !== '' && !encoded.endsWith('/')) return undefined
  const segments = encoded.split('/')
  segments.pop()
  const key: StorageKey = []
  for (const segment of segments) {
    // Only `%25` and `%2F` are produced; anything else is not ours.
    if (/%(?!25|2F)/.test(segment)) return undefined
    key.push(segment.replace(/%2F|%25/g, (esc) => (esc === '%2F' ? '/' : '%')))
  }
  return key
}

/** The first index in sorted `keys` whose key is not below `target`. */
function lowerBound(keys: readonly string[], target: string): number {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (keys[mid]! < target) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** A plain `Uint8Array` over the bytes of `buf` (a view when it owns its whole buffer, else a copy). */
function plain(buf: Uint8Array): Uint8Array {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return new Uint8Array(buf.buffer, 0, buf.byteLength)
  return new Uint8Array(buf)
}

/**
 * The in-memory key index: store keys sorted (for prefix ranges, which are contiguous because
 * every segment ends with `/`) and in insertion order (what `loadRange` returns).
 */
class KeyIndex {
  /** Store key → insertion sequence number. */
  readonly #order = new Map<string, number>()
  readonly #sorted: string[]
  #next = 0

  constructor(sortedKeys: readonly string[]) {
    this.#sorted = [...sortedKeys]
    for (const key of sortedKeys) this.#order.set(key, this.#next++)
  }

  add(key: string): void {
    if (this.#order.has(key)) return
    this.#order.set(key, this.#next++)
    this.#sorted.splice(lowerBound(this.#sorted, key), 0, key)
  }

  remove(key: string): void {
    if (!this.#order.delete(key)) return
    const at = lowerBound(this.#sorted, key)
    if (this.#sorted[at] === key) this.#sorted.splice(at, 1)
  }

  /** The keys starting with `prefix`, in insertion order. */
  range(prefix: string): string[] {
    const out: string[] = []
    for (let i = lowerBound(this.#sorted, prefix); i < this.#sorted.length && this.#sorted[i]!.startsWith(prefix); i++) {
      out.push(this.#sorted[i]!)
    }
    return out.sort((a, b) => this.#order.get(a)! - this.#order.get(b)!)
  }
}

/**
 * Options for {@link SturdyStorageAdapter.open} and {@link SturdyStorageAdapter.openLog}.
 *
 * @example
 * ```ts
 * const adapter = await SturdyStorageAdapter.open('./data/automerge', { store: { writeBehindMs: 100 } })
 * ```
 */
export interface SturdyStorageAdapterOptions {
  /** Passed to the store (`durableKeys`, `writeBehindMs`, and the log store's options). */
  store?: LogDurableStoreOptions
}

/**
 * An automerge-repo storage adapter (its `StorageAdapterInterface`) on a sturdy
 * {@link DurableStore}: each `save` is durable when it resolves (a {@link FileDurableStore}
 * writes each chunk with the Directory's atomic durable write; a {@link LogDurableStore}
 * appends it to the WAL with group commit), so after a crash every chunk holds its old or its
 * new bytes, never a torn file.
 *
 * Keys: a storage key `['a', 'b']` is stored under the string key `a/b/` (each segment with `%`
 * and `/` escaped as `%25` and `%2F`, then ended by `/`). The mapping is reversible, and
 * `loadRange(['a', 'b'])` matches `['a', 'b']` and `['a', 'b', 'c']` but not `['a', 'bc']`.
 * Prefix ranges come from a sorted in-memory index of the keys (built from `store.keys()` on
 * first use), so they cost a binary search plus the matches.
 *
 * `loadRange` returns chunks in the order their keys were first saved through this adapter;
 * keys found in the store at start-up come first, in sorted order. (automerge-repo does not
 * depend on the order; its acceptance suite checks it within one session.)
 *
 * The adapter should own its store: keys written to the store by others are not seen by its
 * index. Values are plain `Uint8Array`s (not Buffers).
 *
 * @example
 * ```ts
 * import { Repo } from '@automerge/automerge-repo'
 * import { SturdyStorageAdapter } from 'sturdy/automerge'
 *
 * const storage = await SturdyStorageAdapter.open('./data/automerge')
 * const repo = new Repo({ storage, network: [] })
 * const handle = repo.create({ todos: [] })
 * handle.change((d) => d.todos.push('write the report'))
 * await repo.shutdown()   // flushes to the adapter
 * await storage.close()   // closes the store it opened
 * ```
 */
export class SturdyStorageAdapter {
  readonly #store: DurableStore
  readonly #ownsStore: boolean
  #index: Promise<KeyIndex> | undefined
  /** Saves and removals under way: `close` waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>()

  /**
   * An adapter on `store`. {@link SturdyStorageAdapter.close} closes the store only if
   * `ownsStore` is true (as for the adapters {@link SturdyStorageAdapter.open} makes).
   */
  constructor(store: DurableStore, options: { ownsStore?: boolean } = {}) {
    if (store === null || typeof store !== 'object' || typeof (store as DurableStore).persist !== 'function') {
      throw invalidArg('store must be a DurableStore (FileDurableStore, LogDurableStore or NoopDurableStore)')
    }
    this.#store = store
    this.#ownsStore = options.ownsStore === true
  }

  /** An adapter on a {@link FileDurableStore} (one file per chunk) in directory `path`. */
  static async open(path: string, options: SturdyStorageAdapterOptions = {}): Promise<SturdyStorageAdapter> {
    const storeOptions: DurableStoreOptions = options.store ?? {}
    const store = await FileDurableStore.open(await FsDirectory.open(path), storeOptions)
    return new SturdyStorageAdapter(store, { ownsStore: true })
  }

  /** An adapter on a {@link LogDurableStore} (chunks appended to a WAL) in log directory `path`. */
  static async openLog(path: string, options: SturdyStorageAdapterOptions = {}): Promise<SturdyStorageAdapter> {
    const store = await LogDurableStore.open(path, options.store ?? {})
    return new SturdyStorageAdapter(store, { ownsStore: true })
  }

  /** The store the adapter writes to. */
  get store(): DurableStore {
    return this.#store
  }

  async load(key: StorageKey): Promise<Uint8Array | undefined> {
    const encoded = encodeStorageKey(key)
    // Reaches the store in call order, as saves and removals do (each waits for the index first).
    await this.#keys()
    const value = await this.#store.load(encoded)
    return value === undefined ? undefined : plain(value)
  }

  async save(key: StorageKey, data: Uint8Array): Promise<void> {
    const encoded = encodeStorageKey(key)
    if (!isBytes(data)) throw invalidArg(`data must be a Uint8Array, got ${data === null ? 'null' : typeof data}`)
    const index = await this.#keys()
    // The index follows the operations in the order they are issued, not as they complete: a
    // removeRange issued meanwhile must see this key (the store applies both in call order), and
    // a loadRange must too. A key whose value is not there (yet, or any more) is skipped there.
    index.add(encoded)
    await this.#track(this.#store.persist(encoded, data))
  }

  async remove(key: StorageKey): Promise<void> {
    const encoded = encodeStorageKey(key)
    const index = await this.#keys()
    index.remove(encoded)
    await this.#track(this.#deleting(index, encoded))
  }

  async loadRange(keyPrefix: StorageKey): Promise<Chunk[]> {
    const prefix = encodeStorageKey(keyPrefix)
    const keys = (await this.#keys()).range(prefix)
    const values = await Promise.all(keys.map((key) => this.#store.load(key)))
    const chunks: Chunk[] = []
    keys.forEach((key, i) => {
      const value = values[i]
      // Removed while we were reading: skip it.
      if (value !== undefined) chunks.push({ key: decodeStorageKey(key)!, data: plain(value) })
    })
    return chunks
  }

  async removeRange(keyPrefix: StorageKey): Promise<void> {
    const prefix = encodeStorageKey(keyPrefix)
    const index = await this.#keys()
    // Every delete settles before this does (close waits for it), even when one fails.
    const results = await this.#track(
      Promise.allSettled(
        index.range(prefix).map((key) => {
          index.remove(key)
          return this.#deleting(index, key)
        }),
      ),
    )
    const failed = results.find((r) => r.status === 'rejected')
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
  }

  /**
   * Close the store if this adapter opened it (see the constructor's `ownsStore`), once the
   * saves and removals issued before are done: they reach the store a turn after their call.
   */
  async close(): Promise<void> {
    await this.#keys().catch(() => {})
    await Promise.allSettled([...this.#inFlight])
    if (this.#ownsStore) await this.#store.close()
  }

  /** Delete `key`; if that fails the key may still be stored, so the index keeps it. */
  async #deleting(index: KeyIndex, key: string): Promise<void> {
    try {
      await this.#store.delete(key)
    } catch (e) {
      index.add(key)
      throw e
    }
  }

  /** Run `op` as an operation `close` waits for. */
  async #track<T>(op: Promise<T>): Promise<T> {
    this.#inFlight.add(op)
    try {
      return await op
    } finally {
      this.#inFlight.delete(op)
    }
  }

  #keys(): Promise<KeyIndex> {
    this.#index ??= this.#store.keys().then(
      (keys) => new KeyIndex(keys.filter((key) => decodeStorageKey(key) !== undefined)),
      (e: unknown) => {
        this.#index = undefined // try again next time
        throw e
      },
    )
    return this.#index
  }
}
