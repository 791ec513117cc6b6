import { constants } from 'node:os'

import { SturdyError } from './errors.js'

/** The OS error names a Directory reports, the same on both backends. */
export type DirectoryErrno = 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EIO' | 'EEXIST'

/** `ERR_NOT_FOUND` for a path inside a directory. */
export function notFound(path: string, what = 'no such file or directory'): SturdyError {
  return new SturdyError('ERR_NOT_FOUND', `${what}: ${JSON.stringify(path)}`, { errno: constants.errno.ENOENT })
}

/** `ERR_IO` carrying the number of the OS error `name` (as the file system would report it). */
export function ioError(name: DirectoryErrno, path: string, doing: string): SturdyError {
  return new SturdyError('ERR_IO', `${doing} ${JSON.stringify(path)}: ${name}`, { errno: constants.errno[name] })
}

/** `ERR_CLOSED` for a reader used after `close()`. */
export function readerClosed(path: string): SturdyError {
  return new SturdyError('ERR_CLOSED', `the reader of ${JSON.stringify(path)} is closed`)
}

/**
 * Turn an error from `node:fs` into a `SturdyError`: a missing file is `ERR_NOT_FOUND`, any
 * other OS error `ERR_IO` with its (positive) errno.
 */
export function fromFs(e: unknown, path: string, doing: string): Error {
  if (e instanceof SturdyError) return e
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return notFound(path)
  if (typeof code === 'string' && code in constants.errno) {
    return new SturdyError('ERR_IO', `${doing} ${JSON.stringify(path)}: ${code}`, {
      errno: constants.errno[code as keyof typeof constants.errno],
    })
  }
  return e instanceof Error ? e : new Error(String(e))
}
