import { invalidArg, SturdyError } from './errors.js'

/**
 * A checked path inside a {@link Directory}: its names from the root down. The root itself has
 * no names. Both backends key files by `names.join('/')`, so one path means the same file on
 * every platform.
 */
export type PathNames = readonly string[]

const DRIVE_PREFIX = /^[A-Za-z]:/
/** Names made only of dots and spaces (other than `.`): `..`, and what Windows trims to `..`. */
const DOTS_ONLY = /^[. ]+$/

/** An `ERR_INVALID_PATH` error for `path`, saying `why`. */
export function invalidPath(path: string, why: string): SturdyError {
  return new SturdyError('ERR_INVALID_PATH', `${JSON.stringify(path)} ${why}`)
}

/**
 * Check that `path` stays inside the root and split it into names. Both `/` and `\` separate
 * names on every platform (a backslash is a separator on Windows, so treating it as one
 * everywhere keeps a name from escaping there). Empty and `.` names are dropped.
 *
 * Rejected with `ERR_INVALID_PATH`: NUL bytes, absolute paths (`/x`, `\x`, `\\server\share`),
 * drive prefixes (`C:`, `C:x`), and `..` (or a name of dots and spaces that Windows would trim
 * to `..`). The root itself (an empty path) only where `allowRoot` is set.
 *
 * This check is about the text of the path. A backend on a real file system also checks where
 * symbolic links lead (see `FsDirectory`).
 *
 * @example
 * ```ts
 * checkPath('checkpoints/a.ckpt') // ['checkpoints', 'a.ckpt']
 * checkPath('../etc/passwd')      // throws SturdyError ERR_INVALID_PATH
 * ```
 */
export function checkPath(path: unknown, options: { allowRoot?: boolean } = {}): PathNames {
  if (typeof path !== 'string') throw invalidArg(`a path must be a string, got ${path === null ? 'null' : typeof path}`)
  if (path.includes('\0')) throw invalidPath(path, 'contains a NUL byte')
  if (path.startsWith('/') || path.startsWith('\\')) throw invalidPath(path, 'is absolute; paths are relative to the directory root')
  if (DRIVE_PREFIX.test(path)) throw invalidPath(path, 'starts with a drive prefix')
  const names = path.split(/[\\/]/).filter((n) => n !== '' && n !== '.')
  if (names.some((n) => DOTS_ONLY.test(n))) throw invalidPath(path, 'leads out of the directory root')
  if (names.length === 0 && !options.allowRoot) throw invalidPath(path, 'names the directory root, not a file')
  return names
}

/** The key both backends store a path under: its names joined by `/` (`''` for the root). */
export function pathKey(names: PathNames): string {
  return names.join('/')
}
