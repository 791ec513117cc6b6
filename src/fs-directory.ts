import { constants as bufferConstants } from 'node:buffer'
import { realpath as realpathInJs } from 'node:fs'
import { mkdir, open, readdir, realpath as realpathNative, rename, rm, lstat, stat, type FileHandle } from 'node:fs/promises'
import nodePath from 'node:path'
import { promisify } from 'node:util'

import { atomicWriteVia, tempNameFor } from './directory-atomic-write.js'
import { checkRange, type FileData } from './directory-data.js'
import { fromFs, ioError, readerClosed } from './directory-errors.js'
import { checkPath, invalidPath, type PathNames } from './directory-path.js'
import { PolicyWriter, type WriterSink } from './directory-writer.js'
import type { Directory, FileReader, FileWriter, WriterOptions } from './directory.js'
import { fromNative, invalidArg } from './errors.js'
import { barrier, noteFailedBarrier, refuseFailedBarrier } from './failed-barriers.js'
import { checkFlushPolicy } from './flush-policy.js'
import { renameDurable, syncDir, syncFile } from './native.js'

const { MAX_LENGTH } = bufferConstants

/** Run a native durability call, turning its JSON error into a `SturdyError`. */
async function native(call: Promise<void>): Promise<void> {
  try {
    await call
  } catch (e) {
    throw fromNative(e)
  }
}

/** Writes through a file handle; the barrier is the platform's, by path (see crate/fs_binding.rs). */
class FsWriterSink implements WriterSink {
  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly absolute: string,
  ) {}

  async write(bytes: Buffer): Promise<void> {
    try {
      // One write(2) may take less than asked for; go on until all of it is written.
      for (let done = 0; done < bytes.length; ) {
        const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, null)
        done += bytesWritten
      }
    } catch (e) {
      throw fromFs(e, this.path, 'writing')
    }
  }

  async sync(): Promise<void> {
    // The descriptor that did the writes: one opened later would not see a write-back error
    // that happened before it (Linux reports it once, to the descriptors open at the time).
    // libuv's fdatasync is the platform's true barrier: F_FULLFSYNC on macOS, FlushFileBuffers
    // on Windows.
    await barrier(this.absolute, this.path, async () => {
      try {
        await this.handle.datasync()
      } catch (e) {
        throw fromFs(e, this.path, 'syncing')
      }
    })
  }

  async close(): Promise<void> {
    try {
      await this.handle.close()
    } catch (e) {
      throw fromFs(e, this.path, 'closing')
    }
  }
}

/** Reads up to this size allocate what they ask for rather than first asking the file's size. */
const SMALL_READ = 64 * 1024

class FsFileReader implements FileReader {
  #closed = false

  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  async size(): Promise<number> {
    this.#checkOpen()
    try {
      return (await this.handle.stat()).size
    } catch (e) {
      throw fromFs(e, this.path, 'reading')
    }
  }

  async read(position: number, length: number): Promise<Buffer> {
    checkRange(position, length)
    // No more than the file holds: a huge `length` must not be allocated up front. A small one
    // is read as asked, without asking the file's size first.
    if (length <= SMALL_READ) return this.#readAt(position, length)
    return this.#readAt(position, Math.min(length, Math.max(0, (await this.size()) - position)))
  }

  async readAll(): Promise<Buffer> {
    const parts: Buffer[] = []
    let at = 0
    // Read to the end even if the file grows while we read.
    for (let want = Math.max(await this.size(), 1); ; want = 64 * 1024) {
      const part = await this.#readAt(at, want)
      if (part.length === 0) break
      parts.push(part)
      at += part.length
    }
    return Buffer.concat(parts, at)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      await this.handle.close()
    } catch (e) {
      throw fromFs(e, this.path, 'closing')
    }
  }

  /** Up to `length` bytes from `position`, into a buffer of `length`. */
  async #readAt(position: number, length: number): Promise<Buffer> {
    this.#checkOpen()
    if (length > MAX_LENGTH) throw invalidArg(`cannot read ${length} bytes of ${JSON.stringify(this.path)} into one Buffer (at most ${MAX_LENGTH})`)
    const out = Buffer.allocUnsafe(length)
    let got = 0
    try {
      while (got < length) {
        const { bytesRead } = await this.handle.read(out, got, length - got, position + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
    } catch (e) {
      throw fromFs(e, this.path, 'reading')
    }
    return out.subarray(0, got)
  }

  #checkOpen(): void {
    if (this.#closed) throw readerClosed(this.path)
  }
}

/**
 * A {@link Directory} on the local file system, rooted at one directory. Every durability step
 * goes through the native platform layer: `fdatasync` on Linux, `F_FULLFSYNC` on macOS (plain
 * `fsync` leaves data in the drive's cache), `FlushFileBuffers` and write-through renames on
 * Windows (where a directory is synced by flushing a handle to it; a file system that refuses
 * that leaves it to its own journal).
 *
 * A barrier that fails is not retried: every later one on that file or directory is refused
 * with `ERR_POISONED` for the rest of the process, since a retry can report success for what
 * the failed one lost.
 *
 * Symbolic links inside the root are followed only where they stay inside it: every operation
 * first resolves the links on its path, and a path that a link leads out of the root, or through
 * a link that leads nowhere (creating through it would create the file wherever it points), is
 * refused with `ERR_INVALID_PATH` before anything is touched. A link itself is renamed or deleted
 * like a file, wherever it points. The check guards against links already in the tree, not
 * against another process swapping one in while an operation runs; {@link FsDirectory.filePath}
 * does no I/O and does not resolve links.
 *
 * @example
 * ```ts
 * import { FsDirectory } from 'sturdy'
 * const dir = await FsDirectory.open('./data')          // created (durably) if missing
 * const log = await dir.appendFile('events.log')        // 'per-append': each append is durable
 * await log.append('started\n')
 * await log.close()
 * await dir.atomicWriteDurable('state.json', '{"ok":true}')
 * ```
 */
export class FsDirectory implements Directory {
  /** The absolute path of the root. */
  readonly root: string
  /** The root with its symbolic links resolved: where every path must stay. */
  #realRoot: string

  private constructor(root: string, realRoot: string) {
    this.root = root
    this.#realRoot = realRoot
  }

  /** Open the directory at `root`, creating it and any missing parents durably. */
  static async open(root: string): Promise<FsDirectory> {
    if (typeof root !== 'string' || root.length === 0 || root.includes('\0')) {
      throw invalidArg('root must be a non-empty path string without NUL bytes')
    }
    const absolute = nodePath.resolve(root)
    await makeDirsDurably(absolute, root)
    let realRoot: string
    try {
      realRoot = await realpath(absolute)
    } catch (e) {
      throw fromFs(e, root, 'opening')
    }
    return new FsDirectory(absolute, realRoot)
  }

  filePath(path: string): string {
    return this.#absolute(checkPath(path, { allowRoot: true }))
  }

  async createFile(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    return this.#openWriter(path, 'w', options)
  }

  async appendFile(path: string, options: WriterOptions = {}): Promise<FileWriter> {
    return this.#openWriter(path, 'a', options)
  }

  async openFile(path: string): Promise<FileReader> {
    const absolute = await this.#resolve(path, { followLast: true })
    let handle: FileHandle | undefined
    try {
      handle = await open(absolute, 'r')
      // Opening a directory for reading succeeds on some systems; reading it does not.
      if ((await handle.stat()).isDirectory()) throw ioError('EISDIR', path, 'opening')
      return new FsFileReader(path, handle)
    } catch (e) {
      await handle?.close().catch(() => {})
      throw fromFs(e, path, 'opening')
    }
  }

  async readFile(path: string): Promise<Buffer> {
    const reader = await this.openFile(path)
    try {
      return await reader.readAll()
    } finally {
      await reader.close()
    }
  }

  async exists(path: string): Promise<boolean> {
    const absolute = await this.#resolve(path, { allowRoot: true })
    try {
      await lstat(absolute)
      return true
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return false
      throw fromFs(e, path, 'checking')
    }
  }

  async delete(path: string): Promise<void> {
    const absolute = await this.#resolve(path)
    let doomed = absolute
    try {
      // A directory is renamed away first, so that its name goes in one step as a file's does:
      // a removal that fails or is cut short leaves its rest under a temporary name, not `path`.
      if ((await lstat(absolute)).isDirectory()) {
        doomed = nodePath.join(nodePath.dirname(absolute), tempNameFor(nodePath.basename(absolute)))
        await rename(absolute, doomed)
      }
    } catch (e) {
      // Missing, or a parent that is a file: there is nothing to delete, as on the memory backend.
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return
      throw fromFs(e, path, 'deleting')
    }
    try {
      await rm(doomed, { recursive: true, force: true })
    } catch (e) {
      throw fromFs(e, path, 'deleting')
    }
  }

  async atomicRename(from: string, to: string): Promise<void> {
    const [fromAbs, toAbs] = await this.#renamePaths(from, to)
    try {
      await rename(fromAbs, toAbs)
    } catch (e) {
      throw fromFs(e, from, 'renaming')
    }
  }

  async atomicRenameDurable(from: string, to: string): Promise<void> {
    const [fromAbs, toAbs] = await this.#renamePaths(from, to)
    const parents = [...new Set([nodePath.dirname(toAbs), nodePath.dirname(fromAbs)])]
    refuseFailedBarrier(parents, to)
    try {
      await native(renameDurable(fromAbs, toAbs))
    } catch (e) {
      // The rename took effect, so it was a barrier on the directories that failed.
      if (!(await lstat(fromAbs).then(() => true, () => false))) noteFailedBarrier(parents, e)
      throw e
    }
  }

  async createDirAll(path: string): Promise<void> {
    await makeDirsDurably(await this.#resolve(path, { allowRoot: true, followLast: true }), path)
  }

  async listDir(path: string): Promise<string[]> {
    const absolute = await this.#resolve(path, { allowRoot: true, followLast: true })
    try {
      return (await readdir(absolute)).sort()
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw fromFs(e, path, 'listing')
    }
  }

  atomicWrite(path: string, data: FileData): Promise<void> {
    return atomicWriteVia(this, path, data, { durable: false })
  }

  atomicWriteDurable(path: string, data: FileData): Promise<void> {
    return atomicWriteVia(this, path, data, { durable: true })
  }

  async syncFile(path: string): Promise<void> {
    const absolute = await this.#resolve(path, { followLast: true })
    await barrier(absolute, path, () => native(syncFile(absolute)))
  }

  async syncParentDir(path: string): Promise<void> {
    const parent = nodePath.dirname(await this.#resolve(path))
    await barrier(parent, path, () => native(syncDir(parent)))
  }

  #absolute(names: PathNames): string {
    return nodePath.join(this.root, ...names)
  }

  /**
   * Check `path`, then check where symbolic links take it: its parent always, the path itself
   * too if the operation follows a link there (`followLast`). Names that do not exist yet are
   * fine: the operation creates them inside their nearest existing parent. Returns the path's
   * absolute form.
   */
  async #resolve(path: string, options: { allowRoot?: boolean; followLast?: boolean } = {}): Promise<string> {
    const absolute = this.#absolute(checkPath(path, options))
    if (absolute === this.root) return absolute
    // A root reached through a link may have been pointed elsewhere since (a release switched):
    // check against where it leads now, not where it led.
    if (this.#realRoot !== this.root) this.#realRoot = await realpath(this.root).catch(() => this.#realRoot)
    for (let probe = options.followLast ? absolute : nodePath.dirname(absolute); ; probe = nodePath.dirname(probe)) {
      let real: string
      try {
        real = await realpath(probe)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fromFs(e, path, 'resolving')
        // The root itself is gone (or is a link to nothing): the operation reports that in its
        // own words, as for a deleted root.
        if (probe === this.root) return absolute
        if (await isLink(probe)) throw invalidPath(path, 'goes through a symbolic link that leads nowhere')
        continue
      }
      if (isWithin(this.#realRoot, real)) return absolute
      // The root may itself be a link, pointed elsewhere since (a release switched): follow it.
      const root = await realpath(this.root).catch(() => this.#realRoot)
      if (root === this.#realRoot || !isWithin(root, real)) throw invalidPath(path, 'leads out of the directory root through a symbolic link')
      this.#realRoot = root
      return absolute
    }
  }

  async #openWriter(path: string, flags: 'w' | 'a', options: WriterOptions): Promise<FileWriter> {
    const policy = checkFlushPolicy(options?.flushPolicy)
    const absolute = await this.#resolve(path, { followLast: true })
    await makeDirsDurably(nodePath.dirname(absolute), path)
    let handle: FileHandle
    try {
      handle = await open(absolute, flags)
    } catch (e) {
      throw fromFs(e, path, 'opening')
    }
    // A truncating create changed the file already: closing makes that durable too.
    return new PolicyWriter(path, new FsWriterSink(handle, path, absolute), policy, { dirty: flags === 'w' })
  }

  /** Check both paths and create `to`'s parent; a missing `from` is reported before that. */
  async #renamePaths(from: string, to: string): Promise<[string, string]> {
    const fromAbs = await this.#resolve(from)
    const toAbs = await this.#resolve(to)
    try {
      await lstat(fromAbs)
    } catch (e) {
      throw fromFs(e, from, 'renaming')
    }
    await makeDirsDurably(nodePath.dirname(toAbs), to)
    return [fromAbs, toAbs]
  }
}

const realpathJs = promisify(realpathInJs)

/**
 * `path` with its links resolved. Node's native resolution fails with EISDIR on some Windows
 * volumes (RAM disks, volumes outside the Mount Manager); its JavaScript one works there.
 */
async function realpath(path: string): Promise<string> {
  try {
    return await realpathNative(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EISDIR') throw e
    return realpathJs(path)
  }
}

/** Whether `path` is a symbolic link (false if it cannot be looked at). */
async function isLink(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSymbolicLink()
  } catch {
    return false
  }
}

/** Whether the resolved path `real` is `root` or inside it. */
function isWithin(root: string, real: string): boolean {
  const rel = nodePath.relative(root, real)
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${nodePath.sep}`) && !nodePath.isAbsolute(rel))
}

/**
 * Directories being made here, by absolute path for the whole process, whose entry in their
 * parent is not known to be durable yet: made or being made, with the parent's sync still to
 * come or running, or failed. A directory that exists is not durable for that alone; whoever
 * needs one of these waits for its attempt, or makes a new one if it failed (which a failed sync
 * refuses: see failed-barriers.ts). An entry is added
 * before the directory's `mkdir` is issued, so no caller can see the directory without it, and
 * goes once the sync succeeds.
 */
const unsyncedDirs = new Map<string, Promise<void>>()

/**
 * Create `absolute` and its missing parents, syncing each new directory's parent so the new
 * entries survive a power loss (a durable file in a directory whose own entry was lost would be
 * lost with it). Directories that already exist cost one `stat`, unless they are still being
 * made durable or that failed (see `unsyncedDirs`).
 */
export async function makeDirsDurably(absolute: string, shown: string): Promise<void> {
  const todo: string[] = []
  for (let dir = absolute; ; ) {
    let exists = false
    try {
      if (!(await stat(dir)).isDirectory()) throw ioError('ENOTDIR', shown, 'creating a directory at')
      exists = true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFs(e, shown, 'creating a directory at')
    }
    if (exists && !unsyncedDirs.has(dir)) break
    todo.push(dir)
    const parent = nodePath.dirname(dir)
    if (parent === dir) break
    dir = parent
  }
  for (const dir of todo.reverse()) await madeDurably(dir, shown)
}

/**
 * Make `dir` exist with its entry durable: join the attempt running for it, or make one (again,
 * if the last failed; once, if another caller already is).
 */
async function madeDurably(dir: string, shown: string): Promise<void> {
  for (let running = unsyncedDirs.get(dir); running !== undefined; ) {
    try {
      await running
      return
    } catch {
      // Failed: make a new attempt below, unless another caller already has.
    }
    const now = unsyncedDirs.get(dir)
    if (now === undefined) return
    if (now === running) break
    running = now
  }
  let made = false
  const attempt = (async () => {
    try {
      await mkdir(dir)
    } catch (e) {
      // Made meanwhile, by another caller or process: its entry is synced below all the same.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFs(e, shown, 'creating a directory at')
    }
    made = true
    const parent = nodePath.dirname(dir)
    await barrier(parent, shown, () => native(syncDir(parent)))
  })()
  unsyncedDirs.set(dir, attempt)
  try {
    await attempt
  } catch (e) {
    // A failed sync keeps its entry, so the next caller is refused too (see failed-barriers.ts);
    // a failed mkdir made nothing.
    if (!made && unsyncedDirs.get(dir) === attempt) unsyncedDirs.delete(dir)
    throw e
  }
  if (unsyncedDirs.get(dir) === attempt) unsyncedDirs.delete(dir)
}
