import { atomicWriteVia, tempPathFor, type AtomicWriteSteps } from './directory-atomic-write.js'
import { checkRange, type FileData } from './directory-data.js'
import { ioError, notFound, readerClosed, type DirectoryErrno } from './directory-errors.js'
import { checkPath, pathKey } from './directory-path.js'
import { PolicyWriter, type WriterSink } from './directory-writer.js'
import type { Directory, FileReader, FileWriter, WriterOptions } from './directory.js'
import { invalidArg } from './errors.js'
import { checkFlushPolicy } from './flush-policy.js'
import { Inode, MemoryStorage, parentKey, powerLost } from './memory-directory-storage.js'
import type { CrashPlan, CrashReport } from './simulated-disk.js'

/** Where looking a path up ended: its entry, or the error the file system would give. */
type Lookup = { entry: ReturnType<MemoryStorage['entry']>; error?: undefined } | { entry?: undefined; error: DirectoryErrno }

/**
 * A {@link Directory} in memory that can lose power. It keeps apart what was only written and
 * what was made durable, with the rules of the simulated disk in `sturdy/testing`: after
 * {@link MemoryDirectory.crash}, unsynced file data may be lost, kept in part or torn (a torn
 * write keeps or loses each of its 512-byte sectors, partial ones included, in any pattern), and
 * a create, rename or delete survives only if its parent directory was synced. Every choice derives from `seed`, so a failing schedule replays.
 *
 * After a crash the directory goes on with what survived, like the machine after a reboot;
 * writers, readers and operations begun before it fail with `ERR_IO`.
 *
 * @example
 * ```ts
 * import { MemoryDirectory } from 'sturdy'
 * const dir = new MemoryDirectory({ seed: 7 })
 * await dir.atomicWriteDurable('state', 'v1')
 * const w = await dir.createFile('scratch', { flushPolicy: 'manual' })
 * await w.append('not synced')
 * dir.crash()
 * await dir.readFile('state')   // 'v1': it was made durable
 * await dir.exists('scratch')   // maybe not: its directory entry was never synced
 * ```
 */
export class MemoryDirectory implements Directory {
  readonly #storage: MemoryStorage

  constructor(options: { seed?: number } = {}) {
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32)
    if (!Number.isSafeInteger(seed) || seed < 0) throw invalidArg('seed must be a non-negative safe integer')
    this.#storage = new MemoryStorage(seed)
  }

  /** The seed every crash decision derives from. */
  get seed(): number {
    return this.#storage.seed
  }

  /** Storage operations (writes, truncations, name changes, barriers), barriers, and crashes so far. */
  get stats(): { ops: number; syncs: number; crashes: number } {
    return this.#storage.stats
  }

  /** What the most recent crash did. */
  get lastCrash(): CrashReport {
    return { ...this.#storage.lastCrash }
  }

  /**
   * Lose power now: only what was made durable is sure to survive (see the class notes and
   * {@link CrashPlan} for how unsynced changes are treated).
   */
  crash(plan: CrashPlan = {}): CrashReport {
    return this.#storage.crash(plan)
  }

  /**
   * Lose power in the middle of the `ops`-th storage operation from now (1 = the next one); that
   * operation fails with `ERR_IO`. {@link MemoryDirectory.stats} counts the operations.
   */
  crashAfter(ops: number, plan: CrashPlan = {}): void {
    this.#storage.crashAfter(ops, plan)
  }

  /** Call off a power loss scheduled by {@link MemoryDirectory.crashAfter}. */
  cancelCrash(): void {
    this.#storage.cancelCrash()
  }

  filePath(path: string): undefined {
    checkPath(path, { allowRoot: true })
    return undefined
  }

  async createFile(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    return this.#openWriter(path, 'w', options)
  }

  async appendFile(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    return this.#openWriter(path, 'a', options)
  }

  async openFile(path: string): Promise<FileReader> {
    const inode = this.#file(pathKey(checkPath(path)), path, 'opening')
    return new MemoryFileReader(path, inode, this.#storage)
  }

  async readFile(path: string): Promise<Buffer> {
    return Buffer.from(this.#file(pathKey(checkPath(path)), path, 'opening').view())
  }

  async exists(path: string): Promise<boolean> {
    return this.#lookup(pathKey(checkPath(path, { allowRoot: true }))).entry !== undefined
  }

  async delete(path: string): Promise<void> {
    const key = pathKey(checkPath(path))
    const { entry } = this.#lookup(key)
    if (entry?.kind === 'file') this.#storage.change({ kind: 'remove', key })
    if (entry?.kind !== 'dir') return
    // As FsDirectory does: rename the directory away, then remove it, so that a power loss
    // between the two leaves it under a temporary name.
    const doomed = tempPathFor(key)
    this.#storage.change({ kind: 'rename', from: key, to: doomed })
    this.#storage.change({ kind: 'remove', key: doomed })
  }

  async atomicRename(from: string, to: string): Promise<void> {
    this.#rename(from, to)
  }

  async atomicRenameDurable(from: string, to: string): Promise<void> {
    const [fromKey, toKey] = this.#rename(from, to)
    // As the native call does: the destination's directory first, then the source's.
    this.#storage.syncDir(parentKey(toKey))
    if (parentKey(fromKey) !== parentKey(toKey)) this.#storage.syncDir(parentKey(fromKey))
  }

  async createDirAll(path: string): Promise<void> {
    this.#makeDirs(pathKey(checkPath(path, { allowRoot: true })), path)
  }

  async listDir(path: string): Promise<string[]> {
    const key = pathKey(checkPath(path, { allowRoot: true }))
    const { entry, error } = this.#lookup(key)
    if (error === 'ENOENT') return []
    if (error) throw ioError(error, path, 'listing')
    if (entry?.kind !== 'dir') throw ioError('ENOTDIR', path, 'listing')
    return this.#storage.children(key).sort()
  }

  atomicWrite(path: string, data: FileData): Promise<void> {
    return atomicWriteVia(this.#untilPowerLoss(), path, data, { durable: false })
  }

  atomicWriteDurable(path: string, data: FileData): Promise<void> {
    return atomicWriteVia(this.#untilPowerLoss(), path, data, { durable: true })
  }

  async syncFile(path: string): Promise<void> {
    const key = pathKey(checkPath(path))
    const { entry, error } = this.#lookup(key)
    if (error === 'ENOENT') throw notFound(path)
    if (error) throw ioError(error, path, 'syncing')
    // As the native call: a file sync of a directory is refused.
    if (entry?.kind !== 'file') throw ioError('EISDIR', path, 'syncing')
    this.#storage.syncFile(entry.inode)
  }

  async syncParentDir(path: string): Promise<void> {
    const parent = parentKey(pathKey(checkPath(path)))
    const { entry, error } = this.#lookup(parent)
    if (error === 'ENOENT') throw notFound(parent)
    if (error) throw ioError(error, path, 'syncing the directory of')
    if (entry?.kind !== 'dir') throw ioError('ENOTDIR', path, 'syncing the directory of')
    this.#storage.syncDir(parent)
  }

  /** Look `key` up as the file system would: a file on the way is ENOTDIR, a gap ENOENT. */
  #lookup(key: string): Lookup {
    if (key === '') return { entry: this.#storage.entry('') }
    const names = key.split('/')
    for (let i = 1; i < names.length; i++) {
      const dir = this.#storage.entry(names.slice(0, i).join('/'))
      if (dir === undefined) return { error: 'ENOENT' }
      if (dir.kind !== 'dir') return { error: 'ENOTDIR' }
    }
    const entry = this.#storage.entry(key)
    return entry === undefined ? { error: 'ENOENT' } : { entry }
  }

  #file(key: string, path: string, doing: string): Inode {
    const { entry, error } = this.#lookup(key)
    if (error === 'ENOENT') throw notFound(path)
    if (error) throw ioError(error, path, doing)
    if (entry?.kind !== 'file') throw ioError('EISDIR', path, doing)
    return entry.inode
  }

  /** Create `key` and missing parents, each made durable in its parent (as FsDirectory does). */
  #makeDirs(key: string, path: string): void {
    if (key === '') return
    const names = key.split('/')
    for (let i = 1; i <= names.length; i++) {
      const dir = names.slice(0, i).join('/')
      const entry = this.#storage.entry(dir)
      if (entry?.kind === 'dir') continue
      if (entry?.kind === 'file') throw ioError('ENOTDIR', path, 'creating a directory at')
      this.#storage.change({ kind: 'mkdir', key: dir })
      this.#storage.syncDir(parentKey(dir))
    }
  }

  #openWriter(path: string, mode: 'w' | 'a', options: WriterOptions): FileWriter {
    const key = pathKey(checkPath(path))
    const policy = checkFlushPolicy(options?.flushPolicy)
    this.#makeDirs(parentKey(key), path)
    const existing = this.#storage.entry(key)
    if (existing?.kind === 'dir') throw ioError('EISDIR', path, 'opening')
    let inode: Inode
    if (existing === undefined) {
      inode = new Inode()
      this.#storage.change({ kind: 'link', key, inode })
    } else {
      inode = existing.inode
      if (mode === 'w' && inode.length > 0) this.#storage.truncate(inode, 0)
    }
    const sink = new MemoryWriterSink(inode, mode, this.#storage)
    return new PolicyWriter(path, sink, policy, { dirty: mode === 'w' })
  }

  /** Check a rename as rename(2) would and apply it; returns both keys. */
  #rename(from: string, to: string): [string, string] {
    const fromKey = pathKey(checkPath(from))
    const toKey = pathKey(checkPath(to))
    const { entry, error } = this.#lookup(fromKey)
    if (error === 'ENOENT') throw notFound(from)
    if (error) throw ioError(error, from, 'renaming')
    this.#makeDirs(parentKey(toKey), to)
    if (fromKey === toKey) return [fromKey, toKey]
    const target = this.#storage.entry(toKey)
    const fail = (why: DirectoryErrno) => ioError(why, from, 'renaming')
    if (toKey.startsWith(fromKey + '/')) throw fail('EINVAL')
    if (entry!.kind === 'file' && target?.kind === 'dir') throw fail('EISDIR')
    if (entry!.kind === 'dir' && target?.kind === 'file') throw fail('ENOTDIR')
    if (entry!.kind === 'dir' && target?.kind === 'dir' && this.#storage.children(toKey).length > 0) throw fail('ENOTEMPTY')
    this.#storage.change({ kind: 'rename', from: fromKey, to: toKey })
    return [fromKey, toKey]
  }

  /**
   * The steps of a multi-step operation, each refused once the power has failed since it began:
   * a program does not go on after a power loss (not even to clean up).
   */
  #untilPowerLoss(): AtomicWriteSteps {
    const generation = this.#storage.generation
    const alive = () => {
      if (this.#storage.generation !== generation) throw powerLost()
    }
    return {
      createFile: async (path, options) => (alive(), this.createFile(path, options)),
      atomicRename: async (from, to) => (alive(), this.atomicRename(from, to)),
      atomicRenameDurable: async (from, to) => (alive(), this.atomicRenameDurable(from, to)),
      delete: async (path) => (alive(), this.delete(path)),
    }
  }
}

/** Writes into an inode; stops working once the power is lost. */
class MemoryWriterSink implements WriterSink {
  readonly #generation: number
  #pos = 0

  constructor(
    private readonly inode: Inode,
    private readonly mode: 'w' | 'a',
    private readonly storage: MemoryStorage,
  ) {
    this.#generation = storage.generation
  }

  async write(bytes: Buffer): Promise<void> {
    this.#alive()
    // Like O_APPEND: appends land at the end of the file as it is now.
    const pos = this.mode === 'a' ? this.inode.length : this.#pos
    this.storage.write(this.inode, pos, bytes)
    this.#pos = pos + bytes.length
  }

  async sync(): Promise<void> {
    this.#alive()
    this.storage.syncFile(this.inode)
  }

  async close(): Promise<void> {}

  #alive(): void {
    if (this.storage.generation !== this.#generation) throw powerLost()
  }
}

class MemoryFileReader implements FileReader {
  readonly #generation: number
  #closed = false

  constructor(
    readonly path: string,
    private readonly inode: Inode,
    private readonly storage: MemoryStorage,
  ) {
    this.#generation = storage.generation
  }

  async size(): Promise<number> {
    this.#alive()
    return this.inode.length
  }

  async read(position: number, length: number): Promise<Buffer> {
    checkRange(position, length)
    this.#alive()
    return Buffer.from(this.inode.view().subarray(position, position + length))
  }

  async readAll(): Promise<Buffer> {
    this.#alive()
    return Buffer.from(this.inode.view())
  }

  async close(): Promise<void> {
    this.#closed = true
  }

  #alive(): void {
    if (this.#closed) throw readerClosed(this.path)
    if (this.storage.generation !== this.#generation) throw powerLost()
  }
}
