import { findLatest, type Checkpoints, type DamagedCheckpoint } from './checkpoints.js'
import { invalidArg, SturdyError } from './errors.js'
import { FIRST_RECORD_LSN } from './native.js'
import type { Wal, WalEntry } from './wal.js'

/**
 * Options for {@link recover}.
 *
 * @example
 * ```ts
 * const { state, lsn } = await recover({ wal, checkpoints: cps, init: (snapshot) => (snapshot ? decode(snapshot) : new Map()), apply: (state, { data }) => applyRecord(state, data) })
 * ```
 */
export interface RecoverOptions<S> {
  /**
   * The log to replay (any object with `entries` and `nextLsn`; with `droppedEnd` too, recovery
   * refuses to miss records the log has dropped).
   */
  wal: Pick<Wal, 'entries' | 'nextLsn'> & Partial<Pick<Wal, 'droppedEnd'>>
  /** Where the snapshots are; without it the whole log is replayed onto `init(undefined)`. */
  checkpoints?: Checkpoints
  /** The starting state: from the newest valid snapshot's bytes, or from scratch (`undefined`). */
  init: (snapshot: Buffer | undefined) => S | Promise<S>
  /**
   * Apply one record. Return the new state, or nothing to keep `state` (if you changed it in
   * place). `entry.data` is a view into a read buffer: copy it to keep it.
   */
  apply: (state: S, entry: WalEntry) => S | void | Promise<S | void>
}

/**
 * What {@link recover} rebuilt.
 *
 * @example
 * ```ts
 * const { state, lsn } = await recover({ wal, checkpoints: cps, init, apply })
 * console.log(`recovered up to LSN ${lsn}`)
 * ```
 */
export interface Recovered<S> {
  state: S
  /**
   * The log position `state` covers: the newest record applied (or the snapshot's LSN, or the
   * log's `nextLsn` when there was nothing). Pass it to `checkpoint()`.
   */
  lsn: number
  /** The LSN of the snapshot used, if one was. */
  snapshotLsn?: number
  /** How many records were applied. */
  replayed: number
  /** Newer checkpoints that failed verification and were passed over. */
  damagedCheckpoints: DamagedCheckpoint[]
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof (x as PromiseLike<unknown>).then === 'function'
}

/**
 * Rebuild state after a start or a crash: load the newest valid snapshot (falling back past
 * damaged ones) or `init(undefined)`, then replay through `apply` every log record after the
 * snapshot's LSN, in order. Each acknowledged record ends up in the state exactly once. Call it
 * before appending.
 *
 * Fails with `ERR_CORRUPT` if the snapshot claims to cover more of the log than the log holds
 * (a different log, or one cut back after the snapshot was taken): replaying would then give
 * later records LSNs the snapshot already claims. Also when the log has dropped records after
 * the snapshot, or any records with no snapshot to stand for them ({@link Wal.droppedEnd} past
 * its LSN): the newer checkpoint they were dropped for is damaged or gone, or the log was
 * trimmed by hand past its checkpoints, or a `'truncate'` recovery had to start the log afresh.
 * The state would silently miss them. To go on from such a loss knowingly, store the state you
 * accept as a checkpoint at `wal.droppedEnd` with {@link Checkpoints.write} (which does not check
 * the log), then recover again.
 *
 * @example
 * ```ts
 * import { Wal, FsDirectory, Checkpoints, recover } from 'sturdy'
 * const wal = await Wal.open('./data/wal')
 * const cps = new Checkpoints(await FsDirectory.open('./data/checkpoints'))
 * const { state, lsn } = await recover({
 *   wal, checkpoints: cps,
 *   init: (snap) => (snap ? JSON.parse(snap.toString()) : { total: 0 }),
 *   apply: (s, { data }) => ({ total: s.total + Number(data.toString()) }),
 * })
 * ```
 */
export async function recover<S>(options: RecoverOptions<S>): Promise<Recovered<S>> {
  if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
  const { wal, checkpoints, init, apply } = options
  if (typeof init !== 'function' || typeof apply !== 'function') throw invalidArg('init and apply must be functions')
  if (wal === null || typeof wal !== 'object' || typeof wal.entries !== 'function' || typeof wal.nextLsn !== 'number') {
    throw invalidArg('wal must be a Wal (an object with entries and nextLsn)')
  }

  const { latest, damaged } = checkpoints ? await findLatest(checkpoints) : { latest: undefined, damaged: [] }
  if (latest !== undefined && latest.lsn > wal.nextLsn) {
    throw new SturdyError(
      'ERR_CORRUPT',
      `the checkpoint at LSN ${latest.lsn} covers more than the log holds (it ends at ${wal.nextLsn}): is this the log it was taken from?`,
    )
  }

  // Records dropped from the front of the log end at or before `droppedEnd`; past what the
  // snapshot covers (or the log's first record, with none), some of them are missing from both.
  const from = latest?.lsn ?? FIRST_RECORD_LSN
  const dropped = wal.droppedEnd
  if (dropped !== undefined && dropped > from) {
    const newerDamaged = damaged.filter((d) => d.lsn > (latest?.lsn ?? -1))
    const why =
      newerDamaged.length > 0
        ? `checkpoint ${newerDamaged.map((d) => `LSN ${d.lsn} (${d.damage})`).join(', ')} is damaged, and `
        : ''
    throw new SturdyError(
      'ERR_CORRUPT',
      `${why}the log has dropped records up to LSN ${dropped}, past ${latest ? `the checkpoint at LSN ${latest.lsn}` : 'its beginning, with no checkpoint standing for them'}: the records in between are gone`,
    )
  }

  let state = (await init(latest?.data)) as S
  let last: number | undefined
  let replayed = 0
  for await (const entry of wal.entries({ from: latest?.lsn ?? 0 })) {
    // The snapshot includes the record at its own LSN, if one starts there.
    if (latest !== undefined && entry.lsn <= latest.lsn) continue
    const next = apply(state, entry)
    const value = isThenable(next) ? await next : next
    if (value !== undefined) state = value as S
    last = entry.lsn
    replayed++
  }

  const recovered: Recovered<S> = { state, lsn: last ?? latest?.lsn ?? wal.nextLsn, replayed, damagedCheckpoints: damaged }
  if (latest !== undefined) recovered.snapshotLsn = latest.lsn
  return recovered
}
