import type { Checkpoints } from './checkpoints.js'
import type { FileData } from './directory-data.js'
import { invalidArg } from './errors.js'
import type { Wal } from './wal.js'

/**
 * Options for {@link checkpoint}.
 *
 * @example
 * ```ts
 * await checkpoint({ wal, checkpoints: cps, lsn: wal.nextLsn, data: snapshot })
 * ```
 */
export interface CheckpointOptions {
  /**
   * The log the snapshot was built from (any object with `truncateBefore` and `nextLsn`; with
   * `droppedEnd` too, a snapshot that misses records the log already dropped is refused).
   */
  wal: Pick<Wal, 'truncateBefore' | 'nextLsn'> & Partial<Pick<Wal, 'droppedEnd'>>
  /** Where to store the snapshot. */
  checkpoints: Checkpoints
  /** The log position the snapshot covers (see {@link Checkpoints.write}). */
  lsn: number
  /** The snapshot. */
  data: FileData
}

/**
 * Write a checkpoint, then let the log drop the segments no kept checkpoint needs.
 *
 * The log is cut below the *oldest* checkpoint still kept, not the new one: if the newest
 * checkpoint is later found damaged, recovery falls back to an older one and still finds every
 * record after it. The checkpoint is durable before anything is dropped, so a power loss at any
 * point leaves a snapshot plus the records after it. Resolves with the log's new `firstLsn`.
 *
 * Truncate the log yourself only below the oldest kept checkpoint, for the same reason.
 *
 * Refused with `ERR_INVALID_ARG` before anything is touched: an `lsn` past the log's end, one
 * below {@link Wal.droppedEnd} (records after it are gone, so the snapshot cannot be complete),
 * and one older than a checkpoint already kept that the log still holds (a snapshot that
 * finished after a newer one; writing it would delete the newer one). A checkpoint newer than
 * the log's end describes history that `truncateFrom` discarded, and is deleted.
 *
 * @example
 * ```ts
 * import { checkpoint } from 'sturdy'
 * const firstLsn = await checkpoint({ wal, checkpoints: cps, lsn: wal.nextLsn, data: JSON.stringify(state) })
 * ```
 */
export async function checkpoint(options: CheckpointOptions): Promise<number> {
  if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
  const { wal, checkpoints, lsn, data } = options
  if (wal === null || typeof wal !== 'object' || typeof wal.truncateBefore !== 'function' || typeof wal.nextLsn !== 'number') {
    throw invalidArg('wal must be a Wal (an object with truncateBefore and nextLsn)')
  }
  if (checkpoints === null || typeof checkpoints !== 'object' || typeof checkpoints.writeInOrder !== 'function') {
    throw invalidArg('checkpoints must be a Checkpoints')
  }
  const end = wal.nextLsn
  if (typeof lsn === 'number' && lsn > end) throw invalidArg(`lsn ${lsn} is past the log's end (${end}): a snapshot covers records already written`)
  const dropped = wal.droppedEnd
  if (typeof lsn === 'number' && dropped !== undefined && lsn < dropped) {
    throw invalidArg(`the log already dropped records up to LSN ${dropped}, past lsn ${lsn}: a snapshot there would miss them`)
  }
  await checkpoints.writeInOrder(lsn, data, end)
  const kept = await checkpoints.list()
  return wal.truncateBefore(Math.min(lsn, ...kept))
}
