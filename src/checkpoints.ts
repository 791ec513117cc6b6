import { isBytes } from './bytes.js'
import { decodeCheckpoint, encodeCheckpoint, MAX_SNAPSHOT_BYTES, type Checkpoint } from './checkpoint-format.js'
import { isTempName } from './directory-atomic-write.js'
import type { FileData } from './directory-data.js'
import { checkPath, pathKey } from './directory-path.js'
import type { Directory } from './directory.js'
import { invalidArg, SturdyError } from './errors.js'

export type { Checkpoint } from './checkpoint-format.js'

/**
 * Options for {@link Checkpoints}.
 *
 * @example
 * ```ts
 * const cps = new Checkpoints(dir, { keep: 3, path: 'checkpoints' })
 * ```
 */
export interface CheckpointsOptions {
  /**
   * How many checkpoints to keep, newest (highest LSN) first (default 2). Keeping more than one
   * lets {@link Checkpoints.latest} fall back when the newest is damaged.
   */
  keep?: number
  /** Sub-directory of the {@link Directory} to keep them in (default: its root). */
  path?: string
}

/**
 * A checkpoint that failed verification.
 *
 * @example
 * ```ts
 * const { damaged } = await findLatest(cps)
 * for (const d of damaged) console.warn(`checkpoint at ${d.lsn} skipped: ${d.damage}`)
 * ```
 */
export interface DamagedCheckpoint {
  lsn: number
  damage: string
}

const PREFIX = 'checkpoint-'
const NAME = /^checkpoint-(\d{20})\.ckpt$/

function fileName(lsn: number): string {
  return `${PREFIX}${String(lsn).padStart(20, '0')}.ckpt`
}

function checkLsn(lsn: unknown): number {
  if (typeof lsn !== 'number' || !Number.isSafeInteger(lsn) || lsn < 0) {
    throw invalidArg(`lsn must be a non-negative safe integer, got ${typeof lsn === 'number' ? lsn : typeof lsn}`)
  }
  return lsn
}

/** `data` as bytes without copying (the encoder copies them once, synchronously). */
function viewOf(data: unknown): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8')
  if (isBytes(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  throw invalidArg(`a snapshot must be a Uint8Array or a string, got ${data === null ? 'null' : typeof data}`)
}

/**
 * Snapshots of your state, each stored with the log position it covers, written atomically and
 * durably, verified on read, and pruned to the newest `keep`.
 *
 * Each checkpoint is one file, `checkpoint-<LSN, 20 digits>.ckpt`: a 40-byte header (magic,
 * format version, LSN, length, CRC32C of the snapshot and of the header), then the snapshot.
 * Snapshots are read and written whole, so one must fit in memory: at most
 * `buffer.constants.MAX_LENGTH - 40` bytes (4 GiB less 40 on 64-bit Node 20; far more from Node 22,
 * where memory is the limit).
 *
 * One `Checkpoints` should write a given directory at a time; its own writes run in order.
 *
 * @example
 * ```ts
 * import { Checkpoints, FsDirectory } from 'sturdy'
 * const cps = new Checkpoints(await FsDirectory.open('./data/checkpoints'), { keep: 3 })
 * await cps.write(wal.nextLsn, JSON.stringify(state))
 * const latest = await cps.latest()   // { lsn, data } of the newest valid one, or undefined
 * ```
 */
export class Checkpoints {
  /** Where the checkpoints live. */
  readonly directory: Directory
  /** How many are kept. */
  readonly keep: number
  /** Their sub-directory (`''` for the root). */
  readonly #dir: string
  #queue: Promise<void> = Promise.resolve()

  constructor(directory: Directory, options: CheckpointsOptions = {}) {
    if (directory === null || typeof directory !== 'object' || typeof directory.atomicWriteDurable !== 'function') {
      throw invalidArg('directory must be a Directory (FsDirectory or MemoryDirectory)')
    }
    if (options === null || typeof options !== 'object') throw invalidArg('options must be an object')
    const { keep = 2, path = '' } = options
    if (typeof keep !== 'number' || !Number.isSafeInteger(keep) || keep < 1) throw invalidArg('keep must be a positive integer')
    this.directory = directory
    this.keep = keep
    this.#dir = pathKey(checkPath(path, { allowRoot: true }))
  }

  /**
   * Store `data` as the snapshot covering the log up to `lsn`, atomically and durably, then
   * delete (durably) all but the newest `keep` that verify. Resolves once the checkpoint survives a power
   * loss; if the power fails before, the previous checkpoints are intact.
   *
   * `lsn` is the log position the snapshot covers: the LSN of the newest record it includes,
   * or `wal.nextLsn` once every record it includes is acknowledged. Recovery replays the
   * records after it. `data` is copied before this returns. Writing an LSN that already has a
   * checkpoint replaces it; writing one below existing checkpoints means the log was cut back
   * (`truncateFrom`), so those newer ones describe discarded history and are deleted first.
   */
  write(lsn: number, data: FileData): Promise<void> {
    return this.writeThen(lsn, data, async () => {}, async () => {})
  }

  /**
   * {@link Checkpoints.write} with a check before it and a step after it, all in this object's
   * write order, so overlapping calls run one whole sequence after another ({@link checkpoint}
   * checks the snapshot against what the log dropped, then trims the log). A `before` that
   * throws leaves everything untouched.
   *
   * @internal
   */
  writeThen<T>(lsn: number, data: FileData, before: () => Promise<void>, after: () => Promise<T>): Promise<T> {
    let file: Buffer
    try {
      checkLsn(lsn)
      const bytes = viewOf(data)
      if (bytes.length > MAX_SNAPSHOT_BYTES) throw invalidArg(`a snapshot may hold at most ${MAX_SNAPSHOT_BYTES} bytes`)
      file = encodeCheckpoint(lsn, bytes)
    } catch (e) {
      return Promise.reject(e)
    }
    const run = this.#queue.then(async () => {
      await before()
      if (this.#dir !== '') await this.directory.createDirAll(this.#dir)
      // Durably gone before the new one exists: a crash in between must not leave a stale
      // newer checkpoint for recovery to pick.
      await this.#deleteDurably((await this.list()).filter((l) => l > lsn).map(fileName))
      await this.directory.atomicWriteDurable(this.#pathOf(fileName(lsn)), file)
      await this.#prune()
      return after()
    })
    this.#queue = run.then(
      () => {},
      () => {},
    )
    return run
  }

  /** The newest checkpoint that verifies, or `undefined` if there is none. Damaged ones are skipped. */
  async latest(): Promise<Checkpoint | undefined> {
    return (await findLatest(this)).latest
  }

  /** The LSNs of the checkpoint files present, ascending (not verified). */
  async list(): Promise<number[]> {
    const out: number[] = []
    for (const name of await this.directory.listDir(this.#dir)) {
      const m = NAME.exec(name)
      if (m === null) continue
      const lsn = Number(m[1])
      if (Number.isSafeInteger(lsn)) out.push(lsn)
    }
    return out.sort((a, b) => a - b)
  }

  /** Read and verify the checkpoint at `lsn`; `undefined` if its file is gone. */
  async read(lsn: number): Promise<Checkpoint | DamagedCheckpoint | undefined> {
    checkLsn(lsn)
    let file: Buffer
    try {
      file = await this.directory.readFile(this.#pathOf(fileName(lsn)))
    } catch (e) {
      // Pruned since it was listed.
      if (e instanceof SturdyError && e.code === 'ERR_NOT_FOUND') return undefined
      throw e
    }
    const decoded = decodeCheckpoint(file)
    if ('damage' in decoded) return { lsn, damage: decoded.damage }
    if (decoded.lsn !== lsn) return { lsn, damage: `header names LSN ${decoded.lsn}` }
    return decoded
  }

  #pathOf(name: string): string {
    return this.#dir === '' ? name : `${this.#dir}/${name}`
  }

  /**
   * Keep the newest `keep` checkpoints that verify; delete the rest — older ones, and damaged
   * ones, which could never serve as a fallback — and temporary files of interrupted writes. The
   * deletions are made durable: `checkpoint()` then lets the log drop what the oldest kept one
   * covers, and a deleted older checkpoint must not come back after a power loss needing records
   * that are gone.
   */
  async #prune(): Promise<void> {
    const names = await this.directory.listDir(this.#dir)
    const doomed: string[] = []
    let valid = 0
    for (const lsn of (await this.list()).reverse()) {
      if (valid < this.keep) {
        const found = await this.read(lsn)
        if (found !== undefined && !('damage' in found)) {
          valid++
          continue
        }
      }
      doomed.push(fileName(lsn))
    }
    await this.#deleteDurably([...doomed, ...names.filter((n) => isTempName(n, PREFIX))])
  }

  async #deleteDurably(names: string[]): Promise<void> {
    for (const name of names) await this.directory.delete(this.#pathOf(name))
    if (names.length > 0) await this.directory.syncParentDir(this.#pathOf(names[0]))
  }
}

/**
 * The newest valid checkpoint of `checkpoints`, and the newer ones that failed verification.
 *
 * @example
 * ```ts
 * const { latest, damaged } = await findLatest(cps)
 * ```
 */
export async function findLatest(checkpoints: Checkpoints): Promise<{ latest?: Checkpoint; damaged: DamagedCheckpoint[] }> {
  const damaged: DamagedCheckpoint[] = []
  for (const lsn of (await checkpoints.list()).reverse()) {
    const found = await checkpoints.read(lsn)
    if (found === undefined) continue
    if ('damage' in found) damaged.push(found)
    else return { latest: found, damaged }
  }
  return { damaged }
}
