import { randomBytes } from 'node:crypto'

import { ownBytes } from './directory-data.js'
import { checkPath, pathKey } from './directory-path.js'
import type { Directory, FileData } from './directory.js'

const TEMP_MARK = '.tmp-'

/** A fresh temporary name beside `path` (same directory, so the rename stays on one volume). */
export function tempPathFor(path: string): string {
  return `${path}${TEMP_MARK}${randomBytes(8).toString('hex')}`
}

/**
 * Whether a directory entry is a temporary file left by an interrupted atomic write of a file
 * whose name starts with `prefix`.
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
