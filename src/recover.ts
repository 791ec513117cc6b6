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
   * The log to replay (any object with `entries` and `nextLsn`; with `firstLsn` too, recovery
   * also notices records dropped for a checkpoint that is now damaged).
   */
  wal: Pick<Wal, 'entries' | 'nextLsn'> & Partial<Pick<Wal, 'firstLsn'>>
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
 * later records LSNs the snapshot already claims. Also when newer checkpoints are damaged and the
 * log was already trimmed past the snapshot it falls back to: records would be missing.
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

  const { latest, damaged } = checkpoints ? await findLatest(checkpoints) : { latest: undefined, damaged: [] }
  if (latest !== undefined && latest.lsn > wal.nextLsn) {
    throw new SturdyError(
      'ERR_CORRUPT',
      `the checkpoint at LSN ${latest.lsn} covers more than the log holds (it ends at ${wal.nextLsn}): is this the log it was taken from?`,
    )
  }

  // A newer checkpoint failed verification, and the log no longer reaches back to the snapshot
  // we fall back to (or to its own start): the records in between were dropped for the damaged
  // one. Replaying would silently miss them.
  const from = latest?.lsn ?? FIRST_RECORD_LSN
  const newerDamaged = damaged.filter((d) => d.lsn > (latest?.lsn ?? -1))
  if (newerDamaged.length > 0 && wal.firstLsn !== undefined && wal.firstLsn > from) {
    const names = newerDamaged.map((d) => `LSN ${d.lsn} (${d.damage})`).join(', ')
    throw new SturdyError(
      'ERR_CORRUPT',
      `checkpoint ${names} is damaged, and the log now starts at LSN ${wal.firstLsn}, after ${latest ? `the older checkpoint at LSN ${latest.lsn}` : 'its beginning'}: the records in between are gone`,
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
