import { randomBytes } from 'node:crypto'

import { ownBytes } from './directory-data.js'
import { checkPath, pathKey } from './directory-path.js'
import type { Directory, FileData } from './directory.js'

const TEMP_MARK = '.tmp-'
/**
 * The longest name file systems take: 255 bytes of UTF-8 on Linux and macOS, 255 UTF-16 units
 * on Windows (a name never has more of those than of UTF-8 bytes).
 */
const MAX_NAME_BYTES = 255
/** What the temporary mark and its 16 hex digits add to a name. */
const SUFFIX_BYTES = TEMP_MARK.length + 16

/**
 * A fresh temporary name beside `name`: the name, cut to fit if it is long, then the mark and
 * 16 random hex digits. The random digits make it unique; the start of `name` lets cleanup
 * tell whose temporary it is (see {@link isTempName}).
 */
export function tempNameFor(name: string): string {
  return `${startFitting(name, MAX_NAME_BYTES - SUFFIX_BYTES)}${TEMP_MARK}${randomBytes(8).toString('hex')}`
}

/** A fresh temporary path beside `path` (same directory, so the rename stays on one volume). */
export function tempPathFor(path: string): string {
  const at = path.lastIndexOf('/') + 1
  return path.slice(0, at) + tempNameFor(path.slice(at))
}

/** The longest start of `name`, in whole characters, that takes at most `max` bytes of UTF-8. */
function startFitting(name: string, max: number): string {
  let bytes = 0
  let end = 0
  for (const char of name) {
    bytes += Buffer.byteLength(char)
    if (bytes > max) break
    end += char.length
  }
  return name.slice(0, end)
}

/**
 * Whether a directory entry is a temporary left by an interrupted atomic write (or directory
 * delete, see {@link Directory.delete}) of a name that starts with `prefix`. A temporary keeps
 * the first 234 bytes of a longer name, so `prefix` must not be longer than that.
 *
 * @example
 * ```ts
 * isTempName('a.ckpt.tmp-0123456789abcdef', 'a.ckpt') // true
 * ```
 */
export function isTempName(name: string, prefix = ''): boolean {
  return name.startsWith(prefix) && /\.tmp-[0-9a-f]{16}$/.test(name)
}

/** The operations an atomic write is made of. */
export type AtomicWriteSteps = Pick<Directory, 'createFile' | 'atomicRename' | 'atomicRenameDurable' | 'delete'>

/**
 * The atomic write both backends run, written once against the {@link Directory} operations so
 * that the crash tests on `MemoryDirectory` exercise the very sequence `FsDirectory` runs:
 * write a temporary file, make its data durable, then rename it over `path` (durably if asked).
 * The data barrier comes before the rename, so a power loss can never leave the new name
 * pointing at data that did not reach the disk. On failure the temporary file is removed.
 *
 * @example
 * ```ts
 * await atomicWriteVia(dir, 'config.json', '{}', { durable: true })
 * ```
 */
export async function atomicWriteVia(dir: AtomicWriteSteps, path: string, data: FileData, options: { durable: boolean }): Promise<void> {
  // Bad input is refused before anything is touched.
  const key = pathKey(checkPath(path))
  const bytes = ownBytes(data)
  const temp = tempPathFor(key)
  let writer
  try {
    writer = await dir.createFile(temp, { flushPolicy: 'manual' })
    await writer.append(bytes)
    await writer.sync()
    await writer.close()
    if (options.durable) await dir.atomicRenameDurable(temp, key)
    else await dir.atomicRename(temp, key)
  } catch (e) {
    // Best effort: the original failure is what the caller needs to see.
    await writer?.close().catch(() => {})
    await dir.delete(temp).catch(() => {})
    throw e
  }
}
