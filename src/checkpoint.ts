import type { Checkpoints } from './checkpoints.js'
import type { FileData } from './directory-data.js'
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
  /** The log the snapshot was built from (any object with `truncateBefore`). */
  wal: Pick<Wal, 'truncateBefore'>
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
 * @example
 * ```ts
 * import { checkpoint } from 'sturdy'
 * const firstLsn = await checkpoint({ wal, checkpoints: cps, lsn: wal.nextLsn, data: JSON.stringify(state) })
 * ```
 */
export async function checkpoint(options: CheckpointOptions): Promise<number> {
  const { wal, checkpoints, lsn, data } = options
  await checkpoints.write(lsn, data)
  const kept = await checkpoints.list()
  return wal.truncateBefore(Math.min(lsn, ...kept))
}
