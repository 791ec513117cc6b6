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
 * Refused with `ERR_INVALID_ARG` before anything is touched: an `lsn` past the log's end, and
 * one below {@link Wal.droppedEnd}: records after it are gone, so the snapshot cannot stand for
 * them (a snapshot that finished after a newer one, say, once the log was trimmed for that one).
 * Otherwise newer checkpoints are deleted, as {@link Checkpoints.write} does: every record after
 * `lsn` is still in the log. Overlapping calls run one after another, each write and trim whole.
 * (With a `wal` that has no `droppedEnd`, a checkpoint older than one kept that the log still
 * holds is refused instead.)
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
  if (checkpoints === null || typeof checkpoints !== 'object' || typeof checkpoints.writeThen !== 'function') {
    throw invalidArg('checkpoints must be a Checkpoints')
  }
  if (typeof lsn === 'number' && lsn > wal.nextLsn) throw invalidArg(`lsn ${lsn} is past the log's end (${wal.nextLsn}): a snapshot covers records already written`)
  // Checked in the checkpoints' write order: an earlier call's trim may have dropped more.
  const before = async () => {
    const dropped = 'droppedEnd' in wal ? wal.droppedEnd : undefined
    if (dropped !== undefined) {
      if (lsn < dropped) throw invalidArg(`the log already dropped records up to LSN ${dropped}, past lsn ${lsn}: a snapshot there would miss them`)
      return
    }
    const held = (await checkpoints.list()).filter((l) => l > lsn && l <= wal.nextLsn)
    if (held.length > 0) throw invalidArg(`a newer checkpoint, at LSN ${held[held.length - 1]}, already covers the log past ${lsn}`)
  }
  const trim = async () => wal.truncateBefore(Math.min(lsn, ...(await checkpoints.list())))
  return checkpoints.writeThen(lsn, data, before, trim)
}
