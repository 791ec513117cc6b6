import { isTempName } from './directory-atomic-write.js'
import type { Directory } from './directory.js'
import { DurableStoreBase } from './durable-store-base.js'
import type { DurableStoreOptions } from './durable-store.js'
import { decodeKeyFile, encodeKeyFile } from './durable-store-file-format.js'
import { invalidArg, SturdyError } from './errors.js'
import { decodeKey, encodeKey, isHashedName, isKeyFileName } from './key-encoding.js'

/**
 * A {@link DurableStore} with one file per key in the root of a {@link Directory} (an
 * {@link FsDirectory}, or a {@link MemoryDirectory} in tests). The file name comes from
 * {@link encodeKey}: reversible and collision-free for any key (`''`, `'..'`, `'a/b'`, case-only
 * differences, lone surrogates, keys longer than a file name). Each write is the Directory's
 * `atomicWriteDurable`, so after a power loss every key holds its old or its new value, never an
 * empty or torn file; a delete removes the file and makes the directory entry durable. Files
 * carry the full key and a checksum. Temporary files left by an interrupted write are removed
 * on open. Values are read on demand; only the key → file-name index is kept in memory.
 *
 * The store should own its directory; files whose names it never produces are ignored.
 *
 * @example
 * ```ts
 * import { FileDurableStore, FsDirectory } from 'sturdy'
 * const store = await FileDurableStore.open(await FsDirectory.open('./data/ddata'), {
 *   durableKeys: ['counter/*'],
 * })
 * await store.persist('counter/a', new Uint8Array([1]))  // durable now
 * for await (const [key, blob] of store.loadAll()) console.log(key, blob)
 * await store.close()
 * ```
 */
export class FileDurableStore extends DurableStoreBase {
  readonly #dir: Directory
  /** Stored key → its file name. */
  readonly #names: Map<string, string>

  private constructor(dir: Directory, names: Map<string, string>, options: DurableStoreOptions) {
    super(options)
    this.#dir = dir
    this.#names = names
  }

  /**
   * Open the store kept in `dir`, reading the key of every file (hashed names are read from
   * the file) and removing temporary files of interrupted writes.
   */
  static async open(dir: Directory, options: DurableStoreOptions = {}): Promise<FileDurableStore> {
    if (dir === null || typeof dir !== 'object' || typeof (dir as Directory).atomicWriteDurable !== 'function') {
      throw invalidArg('dir must be a Directory (FsDirectory or MemoryDirectory)')
    }
    // Check the options before touching anything.
    const probe = new FileDurableStore(dir, new Map(), options)
    void probe
    const names = new Map<string, string>()
    for (const name of await dir.listDir('')) {
      if (isTempName(name)) {
        await dir.delete(name)
        continue
      }
      if (!isKeyFileName(name)) continue
      const key = isHashedName(name) ? decodeKeyFile(await dir.readFile(name), name).key : decodeKey(name)!
      names.set(key, name)
    }
    return new FileDurableStore(dir, names, options)
  }

  protected async writeValue(key: string, blob: Buffer): Promise<void> {
    const name = encodeKey(key)
    try {
      await this.#dir.atomicWriteDurable(name, encodeKeyFile(key, blob))
    } catch (e) {
      await this.#recheck(key, name)
      throw e
    }
    this.#names.set(key, name)
  }

  protected async removeValue(key: string): Promise<void> {
    const name = this.#names.get(key)
    if (name === undefined) return
    try {
      await this.#dir.delete(name)
      await this.#dir.syncParentDir(name)
    } catch (e) {
      await this.#recheck(key, name)
      throw e
    }
    this.#names.delete(key)
  }

  /**
   * After a failed write or delete, index `key` as the disk has it now: a failure after the
   * rename or the unlink (syncing the directory, say) has already changed the name. Were the
   * index left as it was, a new key's file would stay behind a later delete (and come back on
   * the next open), and a deleted one would be read. If even that look fails, the key stays
   * indexed: a later delete still removes its file, a read reports the error.
   */
  async #recheck(key: string, name: string): Promise<void> {
    if (await this.#dir.exists(name).catch(() => true)) this.#names.set(key, name)
    else this.#names.delete(key)
  }

  protected async readValue(key: string): Promise<Buffer | undefined> {
    const name = this.#names.get(key)
    if (name === undefined) return undefined
    const file = decodeKeyFile(await this.#dir.readFile(name), name)
    if (file.key !== key) {
      throw new SturdyError('ERR_CORRUPT', `key file ${JSON.stringify(name)} holds another key`, { segment: name, offset: 0 })
    }
    return file.value
  }

  protected storedKeys(): Iterable<string> {
    return this.#names.keys()
  }

  protected isStored(key: string): boolean {
    return this.#names.has(key)
  }

  protected async *storedEntries(): AsyncIterable<[string, Buffer]> {
    for (const key of [...this.#names.keys()].sort()) {
      // In this key's queue, so a concurrent write or delete is not read half-way.
      const value = await this.serial(key, () => this.readValue(key))
      if (value !== undefined) yield [key, value]
    }
  }

  protected async release(): Promise<void> {}
}
