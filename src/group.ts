import { byteLengthOf } from './bytes.js'
import { SturdyError } from './errors.js'
import type { RecordData } from './wal.js'

/**
 * What the committer answers for a group: `[groupOffset, lsn]` pairs, one where the group
 * starts and one where it continues in a new segment.
 */
export type Anchors = readonly number[]

/** Frame header: CRC32C placeholder (the committer fills it in) and the payload length. */
export const FRAME_HEADER = 8
const MIN_CHUNK = 64 * 1024
/** Buffers up to this size are kept for reuse once their group is durable. */
const POOLED_MAX = 8 << 20
const POOL_SLOTS = 4

/** Write a frame's payload length (little-endian) after its CRC placeholder. */
function putLength(buf: Buffer, at: number, len: number): void {
  buf[at + 4] = len
  buf[at + 5] = len >>> 8
  buf[at + 6] = len >>> 16
  buf[at + 7] = len >>> 24
}

/**
 * Records that lay out their own bytes in the log's staging buffer, for callers that would
 * otherwise encode each one into a buffer of their own first (see `Wal.appendWritten`).
 *
 * @internal
 */
export interface RecordWriter {
  /** Each record's byte length. */
  readonly lengths: ArrayLike<number>
  /** Write record `k`, exactly `lengths[k]` bytes, at `buf[at]` onwards. */
  write(k: number, buf: Buffer, at: number): void
}

/**
 * Staging buffers reused across groups, so a steady stream of appends neither allocates nor
 * page-faults fresh memory for every group.
 */
export class BufferPool {
  readonly #free: Buffer[] = []

  take(min: number): Buffer {
    const i = this.#free.findIndex((b) => b.length >= min)
    if (i >= 0) return this.#free.splice(i, 1)[0]
    const size = Math.max(MIN_CHUNK, min)
    try {
      return Buffer.allocUnsafe(size)
    } catch (e) {
      // Taken before anything is staged (see `Group.#room`): the write fails alone, typed.
      throw new SturdyError('ERR_NO_MEMORY', `could not allocate ${size} bytes to stage a write: ${e instanceof Error ? e.message : String(e)}`)
    }
  }

  /** One buffer of each size, or none: if one cannot be had, those taken go back. */
  takeAll(sizes: readonly number[]): Buffer[] {
    const taken: Buffer[] = []
    try {
      for (const size of sizes) taken.push(this.take(size))
    } catch (e) {
      for (const b of taken) this.give(b)
      throw e
    }
    return taken
  }

  give(buf: Buffer): void {
    if (buf.length > POOLED_MAX) return
    if (this.#free.length >= POOL_SLOTS) {
      // Keep the larger buffers: they serve every request the smaller ones could.
      const smallest = this.#free.reduce((m, b, i, a) => (b.length < a[m].length ? i : m), 0)
      if (this.#free[smallest].length >= buf.length) return
      this.#free.splice(smallest, 1)
    }
    this.#free.push(buf)
  }
}

/**
 * Records gathered in one event-loop turn, committed with one native call, one write and one
 * durability barrier. Frames are laid out here, once: `[crc placeholder][len LE][payload]`.
 */
export class Group {
  /** The used part of each filled buffer, in order: what the committer writes. */
  readonly chunks: Buffer[] = []
  readonly #backing: Buffer[] = []
  readonly #pool: BufferPool
  #cur: Buffer
  #used = 0
  #count = 0
  /** Group offset at which `#cur` starts. */
  #base = 0
  readonly done: Promise<Anchors>
  #resolve!: (anchors: Anchors) => void
  #reject!: (err: unknown) => void

  /** `first`: the size of the first staging buffer to take, or the buffer itself. */
  constructor(pool: BufferPool, first: number | Buffer) {
    this.#pool = pool
    this.#cur = typeof first === 'number' ? pool.take(first) : first
    this.#backing.push(this.#cur)
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    // Callers attach their own handlers; this one only stops an unobserved-rejection warning.
    this.done.catch(() => {})
  }

  get size(): number {
    return this.#base + this.#used
  }

  /** Records added so far. */
  get count(): number {
    return this.#count
  }

  /**
   * Frame one record (the only copy of its bytes): `data`, or several parts laid end to end.
   * `len` is its byte length. Returns its offset in the group.
   */
  add(data: RecordData | readonly Uint8Array[], len: number): number {
    const buf = this.#room(FRAME_HEADER + len)
    const at = this.#used
    putLength(buf, at, len)
    if (typeof data === 'string') buf.write(data, at + FRAME_HEADER, len, 'utf8')
    else if (data instanceof Uint8Array) {
      // A record of no bytes may be detached, and set() would throw on it: nothing to copy.
      if (len > 0) buf.set(data, at + FRAME_HEADER)
    }
    else {
      // Parts as `ownRecord` read them: our own array of checked Uint8Arrays.
      let to = at + FRAME_HEADER
      for (let i = 0; i < data.length; i++) {
        const part = data[i]!
        buf.set(part, to)
        to += byteLengthOf(part)
      }
    }
    this.#used += FRAME_HEADER + len
    this.#count++
    return this.#base + at
  }

  /**
   * Frame the records `writer` lays out itself, straight into the staging buffer: record k has
   * `lengths[k]` bytes, `total` is their framed size, and their group offsets go to `offsets`.
   * If `writer` throws, nothing is added.
   */
  addWritten(writer: RecordWriter, lengths: Float64Array, total: number, offsets: Float64Array): void {
    const buf = this.#room(total)
    let at = this.#used
    for (let k = 0; k < offsets.length; k++) {
      const len = lengths[k]
      putLength(buf, at, len)
      writer.write(k, buf, at + FRAME_HEADER)
      offsets[k] = this.#base + at
      at += FRAME_HEADER + len
    }
    this.#used = at
    this.#count += offsets.length
  }

  /** Make room for `bytes` more, so that adding that much takes no further allocation. */
  reserve(bytes: number): void {
    this.#room(bytes)
  }

  /** The current buffer, with room for `need` more bytes (a fresh one if it has not). */
  #room(need: number): Buffer {
    if (this.#used + need > this.#cur.length) {
      // Taken before sealing: if the allocation throws, the current buffer stays as it was
      // (sealing first would leave staged records under the next ones written).
      const next = this.#pool.take(Math.max(need, this.size))
      this.seal()
      this.#cur = next
      this.#backing.push(next)
    }
    return this.#cur
  }

  /** Close the current buffer: its used part joins `chunks`. */
  seal(): void {
    if (this.#used > 0) this.chunks.push(this.#cur.subarray(0, this.#used))
    this.#base += this.#used
    this.#used = 0
  }

  /** Settle every record of the group; the buffers go back to the pool. */
  settle(anchors: Anchors | undefined, err?: unknown): void {
    for (const b of this.#backing) this.#pool.give(b)
    if (anchors) this.#resolve(anchors)
    else this.#reject(err)
  }
}

/**
 * LSNs of records at increasing group offsets, in one pass over the anchors: `offsets[from..to)`
 * into the same places of `out`.
 */
export function lsnsAt(
  anchors: Anchors,
  offsets: Float64Array,
  out: number[] = new Array<number>(offsets.length),
  from = 0,
  to = offsets.length,
): number[] {
  let i = 0
  for (let k = from; k < to; k++) {
    const o = offsets[k]
    while (i + 2 < anchors.length && anchors[i + 2] <= o) i += 2
    out[k] = anchors[i + 1] + (o - anchors[i])
  }
  return out
}

/** The LSN of the record at group offset `offset`, from the committer's `[offset, lsn]` anchors. */
export function lsnAt(anchors: Anchors, offset: number): number {
  let i = 0
  while (i + 2 < anchors.length && anchors[i + 2] <= offset) i += 2
  return anchors[i + 1] + (offset - anchors[i])
}
