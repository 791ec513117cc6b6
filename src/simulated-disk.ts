import { constants } from 'node:os'

import { fromNative, invalidArg } from './errors.js'
import { NativeSimDisk } from './native.js'

/**
 * How a simulated power loss treats writes that were not yet durable.
 *
 * @example
 * ```ts
 * disk.crash({ keep: 'prefix', tear: 1, fill: 'garbage' })
 * ```
 */
export interface CrashPlan {
  /**
   * Which unsynced writes survive, per file: `'none'`, a `'prefix'` of them in order, an
   * arbitrary `'subset'`, or `'any'` of these chosen at random (default).
   */
  keep?: 'none' | 'prefix' | 'subset' | 'any'
  /** Probability that one surviving write is torn at a 512-byte sector boundary (default 0.5). */
  tear?: number
  /** What the torn part of a write holds: `'zeros'`, `'garbage'`, the `'old'` bytes, or `'any'`. */
  fill?: 'zeros' | 'garbage' | 'old' | 'any'
}

/**
 * What the last simulated crash did.
 *
 * @example
 * ```ts
 * const { pendingOps, keptOps, torn } = disk.crash()
 * ```
 */
export interface CrashReport {
  /** Writes and truncations that were not durable when the power went. */
  pendingOps: number
  /** How many of those survived. */
  keptOps: number
  /** Whether a surviving write was torn. */
  torn: boolean
}

/**
 * An OS error to inject: a name such as `'EIO'` or `'ENOSPC'`, or an errno number.
 *
 * @example
 * ```ts
 * disk.failSync(1, 'EIO')
 * disk.failWrite(3, 'ENOSPC')
 * ```
 */
export type InjectedError = keyof typeof constants.errno | number

function errnoOf(code: InjectedError): number {
  const n = typeof code === 'number' ? code : constants.errno[code]
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw invalidArg(`unknown error code ${String(code)}`)
  return n
}

const natives = new WeakMap<SimulatedDisk, NativeSimDisk>()

/** The native disk behind a `SimulatedDisk` (for the layers that open stores on it). */
export function nativeDiskOf(disk: SimulatedDisk): NativeSimDisk {
  const n = natives.get(disk)
  if (n === undefined) throw invalidArg('disk must be a SimulatedDisk')
  return n
}

/**
 * A simulated disk for testing durability: it keeps what was made durable apart from what was
 * only written, and can lose power at any moment or fail chosen writes and barriers. Open a
 * `Wal` on it with `Wal.open(name, { disk })`; several logs can share one disk under different
 * names. Everything it decides comes from its `seed`, so a failing schedule replays exactly when
 * the same seed and the same operations are used again.
 *
 * With `concurrent: true` logs run on it as on a real disk: the committer's two workers overlap
 * one group's barrier with the next group's write, and segments are prepared in the background.
 * That is the code path real logs take, but thread timing then varies from run to run, so a
 * failing seed may need a few runs to replay.
 *
 * @example
 * ```ts
 * import { Wal } from 'sturdy'
 * import { SimulatedDisk } from 'sturdy/testing'
 *
 * const disk = new SimulatedDisk({ seed: 42 })
 * const wal = await Wal.open('log', { disk })
 * const lsn = await wal.append('acknowledged')
 * disk.crash()                                  // power loss: unsynced writes may be lost or torn
 * const after = await Wal.open('log', { disk })  // recovery runs as it would on a real disk
 * console.log((await after.read(lsn)).toString()) // 'acknowledged'
 * ```
 */
export class SimulatedDisk {
  /** The seed every decision of this disk derives from. */
  readonly seed: number

  constructor(options: { seed?: number; concurrent?: boolean } = {}) {
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32)
    if (!Number.isSafeInteger(seed) || seed < 0) throw invalidArg('seed must be a non-negative safe integer')
    if (options.concurrent !== undefined && typeof options.concurrent !== 'boolean') throw invalidArg('concurrent must be a boolean')
    this.seed = seed
    const native = new NativeSimDisk(seed)
    native.setConcurrent(options.concurrent === true)
    natives.set(this, native)
  }

  /**
   * Lose power now. Logs open on this disk become unusable (their operations fail with
   * `ERR_IO`); reopen them to run recovery.
   */
  crash(plan: CrashPlan = {}): CrashReport {
    return this.#call((n) => n.crash(plan))
  }

  /** Lose power in the middle of the `ops`-th storage operation from now (1 = the next one). */
  crashAfter(ops: number, plan: CrashPlan = {}): void {
    this.#call((n) => n.crashAfter(ops, plan))
  }

  /** What the most recent crash did. */
  get lastCrash(): CrashReport {
    return this.#call((n) => n.lastCrash())
  }

  /** Make the `nth` write from now (1 = the next one) fail with `error` (e.g. `'ENOSPC'`). */
  failWrite(nth: number, error: InjectedError = 'EIO'): void {
    this.#call((n) => n.failWrite(nth, errnoOf(error)))
  }

  /** Make the `nth` durability barrier from now fail with `error` (e.g. `'EIO'`). */
  failSync(nth: number, error: InjectedError = 'EIO'): void {
    this.#call((n) => n.failSync(nth, errnoOf(error)))
  }

  /** Counts of writes, barriers, storage operations and crashes so far. */
  get stats(): { writes: number; syncs: number; ops: number; crashes: number } {
    return this.#call((n) => n.stats())
  }

  /** The segment files of log `name`: their size on stable storage and as last written. */
  files(name: string): { name: string; durableBytes: number; bytes: number }[] {
    return this.#call((n) => n.files(name))
  }

  /** The current bytes of one segment file of log `name`. */
  readFile(name: string, file: string): Buffer | undefined {
    return this.#call((n) => n.readFile(name, file) ?? undefined)
  }

  /** Replace one segment file of log `name`, durably (for corruption tests). */
  writeFile(name: string, file: string, bytes: Uint8Array): void {
    this.#call((n) => n.writeFile(name, file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)))
  }

  #call<T>(f: (n: NativeSimDisk) => T): T {
    try {
      return f(nativeDiskOf(this))
    } catch (e) {
      throw fromNative(e)
    }
  }
}
