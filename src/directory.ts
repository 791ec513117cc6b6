import type { FileData } from './directory-data.js'
import type { FlushPolicy } from './flush-policy.js'

export type { FileData } from './directory-data.js'

/**
 * Options for the writers of {@link Directory.createFile} and {@link Directory.appendFile}.
 *
 * @example
 * ```ts
 * const log = await dir.appendFile('events.log', { flushPolicy: { everyN: 100 } })
 * ```
 */
export interface WriterOptions {
  /** When appends are made durable (default `'per-append'`). */
  flushPolicy?: FlushPolicy
}

/**
 * A file opened for writing. Appends are written in call order. A failed write or barrier
 * poisons the writer: later calls reject with `ERR_POISONED` (a failed barrier is never retried
 * and then reported as success).
 *
 * @example
 * ```ts
 * const w = await dir.createFile('report.txt', { flushPolicy: 'manual' })
 * await w.append('line 1\n')
 * await w.append('line 2\n')
 * await w.sync()   // both lines are durable
 * await w.close()
 * ```
 */
export interface FileWriter {
  /** The file's path inside its directory, as given. */
  readonly path: string
  /** Whether `close()` has been called. */
  readonly closed: boolean
  /**
   * Write `data` after everything appended before. Resolves once written, and once durable if
   * the {@link FlushPolicy} runs a barrier for this append. The bytes are copied first.
   */
  append(data: FileData): Promise<void>
  /** Make everything appended so far durable. */
  sync(): Promise<void>
  /**
   * Finish pending appends, make them durable (unless the policy is `'manual'`) and release the
   * file. Rejects, after releasing it, if that barrier fails or the writer is poisoned. Later
   * calls reject with `ERR_CLOSED`; closing again returns the same promise.
   */
  close(): Promise<void>
}

/**
 * A file opened for reading. Reads see the file's current bytes, including later writes to it.
 *
 * @example
 * ```ts
 * const r = await dir.openFile('data.bin')
 * const head = await r.read(0, 16)
 * const all = await r.readAll()
 * await r.close()
 * ```
 */
export interface FileReader {
  /** The file's path inside its directory, as given. */
  readonly path: string
  /** The file's current length in bytes. */
  size(): Promise<number>
  /**
   * Up to `length` bytes from `position` (fewer at the end of the file). `ERR_INVALID_ARG` if
   * more than the file holds from there would not fit in one Buffer.
   */
  read(position: number, length: number): Promise<Buffer>
  /** The whole file. It must fit in one Buffer (`buffer.constants.MAX_LENGTH`). */
  readAll(): Promise<Buffer>
  /** Release the file; closing twice is harmless. Then `size` and the reads fail with `ERR_CLOSED`. */
  close(): Promise<void>
}

/**
 * Files under one root, with crash-safe operations. Paths are relative to the root and use `/`
 * (or `\`); a path that would leave the root (`..`, absolute, a drive prefix, NUL, or on a file
 * system a symbolic link leading out) is rejected with `ERR_INVALID_PATH` before anything is
 * touched. A missing file gives `ERR_NOT_FOUND`;
 * other OS failures give `ERR_IO` with `errno`.
 *
 * Plain operations are atomic but not durable: after a power loss they may be undone. The
 * `…Durable` operations and `syncFile`/`syncParentDir` resolve only once the change is on
 * stable storage. Directories this layer creates (`createDirAll`, and parents created on
 * demand) are always made durable, so a durable file inside them is never orphaned.
 *
 * Implemented by {@link FsDirectory} (the file system, through the platform's durability calls)
 * and {@link MemoryDirectory} (memory, with simulated power loss for tests).
 *
 * @example
 * ```ts
 * import { FsDirectory } from 'sturdy'
 * const dir = await FsDirectory.open('./data')
 * await dir.atomicWriteDurable('config.json', JSON.stringify({ v: 2 }))  // old or new, never torn
 * console.log((await dir.readFile('config.json')).toString())
 * console.log(await dir.listDir(''))                                      // ['config.json']
 * ```
 */
export interface Directory {
  /**
   * Create (or truncate) `path` and open it for writing; missing parent directories are created
   * (durably). A new file's name is not durable on its own, as with any file system: the writer's
   * barriers cover its data, {@link Directory.syncParentDir} its name.
   */
  createFile(path: string, options?: WriterOptions): Promise<FileWriter>
  /** Open an existing file for reading; `ERR_NOT_FOUND` if it is missing. */
  openFile(path: string): Promise<FileReader>
  /** Read a whole file; `ERR_NOT_FOUND` if it is missing. */
  readFile(path: string): Promise<Buffer>
  /** Whether a file or directory exists at `path`. */
  exists(path: string): Promise<boolean>
  /**
   * Delete a file, or a directory with everything in it, in one step: a directory is first
   * renamed to a temporary name beside it (`<name>.tmp-<16 hex digits>`, as an atomic write's
   * temporary file is named), then removed. If the removal fails (the call rejects) or is cut
   * short by a power loss, what is left of it is under that name, never under `path`. A missing
   * path is not an error. Not durable on its own: after a power loss `path` may be back, whole.
   */
  delete(path: string): Promise<void>
  /**
   * Rename `from` to `to` in one step, replacing a file at `to`; readers see the old or the
   * new file, never neither. `ERR_NOT_FOUND` if `from` is missing. Not durable on its own.
   */
  atomicRename(from: string, to: string): Promise<void>
  /** Create a directory and any missing parents, durably. The root is `''`. */
  createDirAll(path: string): Promise<void>
  /**
   * The names in a directory (the root is `''`), sorted by UTF-16 code unit. A missing
   * directory lists as empty.
   */
  listDir(path: string): Promise<string[]>
  /**
   * Open `path` for appending, creating it (and missing parents) if needed. If it was created,
   * its name is durable only once {@link Directory.syncParentDir} has run (see
   * {@link Directory.createFile}).
   */
  appendFile(path: string, options?: WriterOptions): Promise<FileWriter>
  /**
   * Replace the content of `path` with `data` through a temporary file that is made durable
   * before it is renamed into place: readers, and the file after a power loss, hold the old or
   * the new content, never a mix. The new name itself may be undone by a power loss; use
   * {@link Directory.atomicWriteDurable} when it must not.
   */
  atomicWrite(path: string, data: FileData): Promise<void>
  /** The file system path of `path`, or `undefined` where there is none (memory). No I/O. */
  filePath(path: string): string | undefined
  /**
   * Make a file's data durable with the platform's barrier. On a file system it opens the file
   * anew (read-only, except on Windows), so on Linux it cannot see a write-back error already
   * reported to another descriptor, such as a writer's: make a writer's data durable with
   * {@link FileWriter.sync}.
   */
  syncFile(path: string): Promise<void>
  /**
   * Make the directory entries of `path`'s parent durable: a create, rename or delete of
   * `path` survives a power loss only after this. `path` itself need not exist.
   */
  syncParentDir(path: string): Promise<void>
  /**
   * {@link Directory.atomicRename}, then make both parents' entries durable before resolving.
   * If syncing a directory fails, the call rejects with the rename done: readers see the new
   * names, but a power loss may still undo the rename.
   */
  atomicRenameDurable(from: string, to: string): Promise<void>
  /**
   * Replace the content of `path` with `data`, atomically and durably: write a uniquely named
   * temporary file beside it, make it durable, rename it over `path`, and make the directory
   * entry durable. Once this resolves the new content survives a power loss; if the power fails
   * before, the file holds the old or the new content, never neither and never a mix.
   *
   * On failure the temporary file is removed. A failure before the rename leaves `path` with
   * its old content. A failure after it (syncing the directory) leaves the new content in
   * `path`, not durable: a power loss may still bring the old content back.
   */
  atomicWriteDurable(path: string, data: FileData): Promise<void>
}
