/**
 * The stable error codes sturdy reports. Match on `code`, never on the message.
 *
 * - `ERR_LOCKED`: another process (or another open handle in this one) holds the log.
 * - `ERR_CORRUPT`: stored data is damaged; `segment` and `offset` say where.
 * - `ERR_CLOSED`: the handle was closed.
 * - `ERR_POISONED`: an earlier write or durability barrier failed; the log takes no more writes.
 * - `ERR_RECORD_TOO_LARGE`: a record exceeds `maxRecordBytes`.
 * - `ERR_INVALID_ARG`: an argument has the wrong type or value.
 * - `ERR_NOT_FOUND`: no record (or file) at the given position.
 * - `ERR_INVALID_PATH`: a path would leave its directory's root (`..`, absolute, a drive prefix, NUL, a
 *   symbolic link leading out of the root or nowhere).
 * - `ERR_IO`: the operating system reported an error; `errno` holds its number.
 * - `ERR_NO_MEMORY`: a write could not be staged in memory; nothing of it was written, and the
 *   log goes on (split the write).
 *
 * @example
 * ```ts
 * try {
 *   await wal.read(lsn)
 * } catch (e) {
 *   if (e instanceof SturdyError && e.code === 'ERR_NOT_FOUND') console.log('no record there')
 * }
 * ```
 */
export type ErrorCode =
  | 'ERR_LOCKED'
  | 'ERR_CORRUPT'
  | 'ERR_CLOSED'
  | 'ERR_POISONED'
  | 'ERR_RECORD_TOO_LARGE'
  | 'ERR_INVALID_ARG'
  | 'ERR_NOT_FOUND'
  | 'ERR_INVALID_PATH'
  | 'ERR_IO'
  | 'ERR_NO_MEMORY'

/**
 * Every error sturdy raises.
 *
 * @example
 * ```ts
 * try {
 *   await Wal.open('./data')
 * } catch (e) {
 *   if (e instanceof SturdyError && e.code === 'ERR_LOCKED') console.error('already running')
 * }
 * ```
 */
export class SturdyError extends Error {
  /** Stable, machine-readable code. */
  readonly code: ErrorCode
  /** For `ERR_CORRUPT`: the segment file where the damage is. */
  readonly segment?: string
  /** For `ERR_CORRUPT`: the byte offset inside `segment`. */
  readonly offset?: number
  /** For OS failures: the error number (e.g. 5 for EIO, 28 for ENOSPC). */
  readonly errno?: number

  constructor(code: ErrorCode, message: string, details: { segment?: string; offset?: number; errno?: number } = {}) {
    super(message)
    this.name = 'SturdyError'
    this.code = code
    if (details.segment !== undefined) this.segment = details.segment
    if (details.offset !== undefined) this.offset = details.offset
    if (details.errno !== undefined) this.errno = details.errno
  }
}

/** Turn an error thrown by the native addon (its message is JSON) into a `SturdyError`. */
export function fromNative(e: unknown): Error {
  if (e instanceof SturdyError) return e
  const message = e instanceof Error ? e.message : String(e)
  if (message.startsWith('{')) {
    try {
      const p = JSON.parse(message) as { code: ErrorCode; message: string; segment?: string; offset?: number; errno?: number }
      return new SturdyError(p.code, p.message, p)
    } catch {
      // not one of ours: fall through
    }
  }
  return e instanceof Error ? e : new Error(message)
}

export function invalidArg(message: string): SturdyError {
  return new SturdyError('ERR_INVALID_ARG', message)
}
