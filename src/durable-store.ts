import { isBytes } from './bytes.js'
import { invalidArg } from './errors.js'

/**
 * Where a replicator keeps the state of its keys (CRDT snapshots, opaque to the store) across
 * restarts. Keys are any JavaScript strings; values are bytes.
 *
 * Implemented by {@link NoopDurableStore} (nothing is kept), {@link FileDurableStore} (one file
 * per key on a {@link Directory}) and {@link LogDurableStore} (log-structured on the {@link Wal}).
 * Every method rejects a non-string key or non-bytes blob with `ERR_INVALID_ARG`, leaving
 * stored data untouched, and rejects with `ERR_CLOSED` after {@link DurableStore.close}.
 *
 * @example
 * ```ts
 * async function restore(store: DurableStore, replicator: Map<string, Buffer>) {
 *   for await (const [key, blob] of store.loadAll()) replicator.set(key, blob)
 * }
 * await store.persist('counter/a', new Uint8Array([1, 2, 3])) // durable once it resolves
 * ```
 */
export interface DurableStore {
  /**
   * Store `blob` as the value of `key`. Durable when it resolves, unless `key` is not a durable
   * key (then it is kept in memory only) or the store runs in write-behind mode.
   */
  persist(key: string, blob: Uint8Array): Promise<void>
  /** Forget `key`, durably (same exceptions as {@link DurableStore.persist}). */
  delete(key: string): Promise<void>
  /** The value of `key`, or `undefined`. */
  load(key: string): Promise<Buffer | undefined>
  /** Every key held, sorted by UTF-16 code unit (`Array.prototype.sort`). */
  keys(): Promise<string[]>
  /** Every key and its value: what a replicator reads at start-up. */
  loadAll(): AsyncIterable<[string, Buffer]>
  /** Write what is pending, wait for background work and release the store. */
  close(): Promise<void>
}

/**
 * Options both durable stores take (from Akka's durable store settings).
 *
 * @example
 * ```ts
 * const options: DurableStoreOptions = { durableKeys: ['config', 'counter/*'], writeBehindMs: 200 }
 * ```
 */
export interface DurableStoreOptions {
  /**
   * Which keys are stored durably: exact keys, and `prefix*` wildcards (`'*'` for all). Other
   * keys are kept in memory only and are gone after a restart. Default: every key.
   *
   * Narrowing it between opens: a key stored before that no longer matches is loaded as stored
   * until it changes; its first `persist` or `delete` removes the stored copy (the new value
   * lives in memory only), so the old value never comes back.
   */
  durableKeys?: readonly string[]
  /**
   * Write-behind: when set (milliseconds, > 0), `persist` and `delete` resolve at once and
   * writes are batched and made durable at most this long after. **Weaker guarantee:** the
   * writes of the last interval may be lost in a crash, and write failures are reported through
   * the store's `'error'` event (not the promise). Without a listener the error is kept and
   * `close()`/`flush()` rejects with it. Default: off (every write durable when it resolves).
   */
  writeBehindMs?: number
}

/** `ERR_INVALID_ARG` unless `key` is a string. */
export function checkKey(key: unknown): string {
  if (typeof key !== 'string') throw invalidArg(`a key must be a string, got ${key === null ? 'null' : typeof key}`)
  return key
}

/** A private copy of `blob`; `ERR_INVALID_ARG` unless it is a Uint8Array. */
export function checkBlob(blob: unknown): Buffer {
  if (!isBytes(blob)) throw invalidArg(`a blob must be a Uint8Array, got ${blob === null ? 'null' : typeof blob}`)
  return Buffer.from(blob)
}
