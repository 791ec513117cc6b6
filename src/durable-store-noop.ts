import { checkBlob, checkKey, type DurableStore } from './durable-store.js'
import { SturdyError } from './errors.js'

/**
 * The {@link DurableStore} of the default in-memory mode: it keeps nothing, so `load` finds
 * nothing and `loadAll` yields nothing. Arguments are still checked (`ERR_INVALID_ARG`).
 *
 * @example
 * ```ts
 * import { NoopDurableStore } from 'sturdy'
 * const store = new NoopDurableStore()
 * await store.persist('k', new Uint8Array([1]))
 * await store.load('k') // undefined
 * ```
 */
export class NoopDurableStore implements DurableStore {
  #closed = false

  async persist(key: string, blob: Uint8Array): Promise<void> {
    checkKey(key)
    checkBlob(blob)
    this.#open()
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    this.#open()
  }

  async load(key: string): Promise<Buffer | undefined> {
    checkKey(key)
    this.#open()
    return undefined
  }

  async keys(): Promise<string[]> {
    this.#open()
    return []
  }

  async *loadAll(): AsyncIterable<[string, Buffer]> {
    this.#open()
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  #open(): void {
    if (this.#closed) throw new SturdyError('ERR_CLOSED', 'the store is closed')
  }
}
