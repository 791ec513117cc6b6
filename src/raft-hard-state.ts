import { invalidArg } from './errors.js'
import { corruptRecord, readU64, writeU64 } from './raft-record.js'
import { Wal, type WalOptions } from './wal.js'

/**
 * A Raft node's hard state: what it must remember across restarts to never vote twice in a
 * term or forget what it knew to be committed.
 *
 * @example
 * ```ts
 * await log.saveHardState({ term: 3, vote: 2, commit: 41 })
 * const { term, vote, commit } = (await log.hardState())!
 * ```
 */
export interface HardState {
  /** The latest term this node has seen. */
  term: number
  /** Whom this node voted for in `term` (a numeric or string node id), or `null`. */
  vote: number | string | null
  /** The highest log index known to be committed. */
  commit: number
}

// Record: version u8 (1) | term u64 | commit u64 | vote kind u8 (0 none, 1 number, 2 string) | vote
const VERSION = 1
const FIXED = 18
const VOTE_NONE = 0
const VOTE_NUMBER = 1
const VOTE_STRING = 2
/** Small segments: the store only ever needs its newest record. */
const SEGMENT_BYTES = 64 * 1024
const MAX_VOTE_BYTES = 4096

function checkCount(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalidArg(`${name} must be a non-negative safe integer`)
  return v
}

/** Check a hard state and encode it as one record. */
function encode(state: HardState): Buffer {
  if (state === null || typeof state !== 'object') throw invalidArg('hard state must be an object { term, vote, commit }')
  const term = checkCount('term', state.term)
  const commit = checkCount('commit', state.commit)
  const vote = state.vote ?? null
  let voteBytes: Buffer | undefined
  if (typeof vote === 'string') {
    voteBytes = Buffer.from(vote, 'utf8')
    if (voteBytes.length > MAX_VOTE_BYTES) throw invalidArg(`vote must be at most ${MAX_VOTE_BYTES} bytes`)
  } else if (vote !== null) {
    checkCount('vote', vote)
  }
  const buf = Buffer.alloc(FIXED + (vote === null ? 0 : voteBytes ? voteBytes.length : 8))
  buf[0] = VERSION
  writeU64(buf, 1, term)
  writeU64(buf, 9, commit)
  if (vote === null) buf[17] = VOTE_NONE
  else if (voteBytes) {
    buf[17] = VOTE_STRING
    voteBytes.copy(buf, FIXED)
  } else {
    buf[17] = VOTE_NUMBER
    writeU64(buf, FIXED, vote as number)
  }
  return buf
}

function decode(rec: Buffer, lsn: number): HardState {
  if (rec.length < FIXED || rec[0] !== VERSION) throw corruptRecord(lsn, 'not a hard-state record')
  const state: HardState = { term: readU64(rec, 1, lsn), vote: null, commit: readU64(rec, 9, lsn) }
  if (rec[17] === VOTE_NUMBER && rec.length === FIXED + 8) state.vote = readU64(rec, FIXED, lsn)
  else if (rec[17] === VOTE_STRING) state.vote = rec.toString('utf8', FIXED)
  else if (rec[17] !== VOTE_NONE || rec.length !== FIXED) throw corruptRecord(lsn, 'a malformed vote')
  return state
}

/**
 * The hard state of a {@link RaftLog}, in a small write-ahead log of its own: each save appends
 * one record and resolves once it is durable; open reads the newest. Old segments are dropped
 * as new ones fill, so the store stays a few segments long.
 *
 * Why not the entries' log: Raft saves its vote on a different path from its appends, and here
 * a new term or vote does not wait behind a large append's write, and purging or resetting the
 * entries can never drop it. (A raised commit index does wait for the entries before it, and
 * saves after it wait their turn: see `RaftLog.saveHardState`.)
 *
 * @internal
 */
export class HardStateStore {
  readonly #wal: Wal
  #current: HardState | undefined
  /** Saves issued, and the newest of them known durable. */
  #issued = 0
  #durableSeq = 0

  private constructor(wal: Wal, current: HardState | undefined) {
    this.#wal = wal
    this.#current = current
  }

  static async open(name: string, options: Pick<WalOptions, 'disk'>): Promise<HardStateStore> {
    const wal = await Wal.open(name, { segmentBytes: SEGMENT_BYTES, maxRecordBytes: FIXED + MAX_VOTE_BYTES, disk: options.disk })
    try {
      let current: HardState | undefined
      for await (const { lsn, data } of wal.entries()) current = decode(data, lsn)
      return new HardStateStore(wal, current)
    } catch (e) {
      await wal.close().catch(() => {})
      throw e
    }
  }

  /** The newest saved hard state (as of the last `save` call), or `undefined` if none. */
  get current(): HardState | undefined {
    return this.#current === undefined ? undefined : { ...this.#current }
  }

  /**
   * Validate and encode `state` synchronously; `write` writes it, and its promise resolves once
   * it is durable. Writes land in the order `write` is called. `commit` is the commit index
   * encoded.
   */
  prepare(state: HardState): { commit: number; write: () => Promise<void> } {
    const rec = encode(state)
    // The commit index as encoded: a getter read again could answer otherwise.
    const commit = decode(rec, -1).commit
    const write = () => {
      const saved = this.#wal.append(rec)
      const seq = ++this.#issued
      return saved.then(async (lsn) => {
        // Only a durable state becomes current, and never an older one over a newer one.
        if (seq > this.#durableSeq) {
          this.#durableSeq = seq
          this.#current = decode(rec, -1)
        }
        if (lsn - this.#wal.firstLsn > 2 * SEGMENT_BYTES) await this.#wal.truncateBefore(lsn)
      })
    }
    return { commit, write }
  }

  close(): Promise<void> {
    return this.#wal.close()
  }
}
