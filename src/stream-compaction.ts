// Reclaiming space in the stream store. A shard's WAL only frees whole segments from its front,
// and streams share segments, so compaction copies the live state forward — a snapshot of each
// stream's metadata and writer state, then its data chunks from below the cut — and then drops
// every segment below the cut. Retention trims old chunks off streams first, so less is live.

import type { Wal } from './wal.js'
import type { Stream } from './stream-state.js'
import { dropBelow } from './stream-replay.js'
import { dataStart, encodeStreamRecord, MOVE, PRODUCERS, RETAIN, SNAPSHOT, type ProducerState, type SnapshotHeader, type StreamRecord } from './stream-record.js'

/**
 * When compaction rewrites a shard.
 *
 * @example
 * ```ts
 * await StreamStore.open('./data', { compaction: { minLogBytes: 64 << 20, garbageRatio: 2 } })
 * ```
 */
export interface CompactionOptions {
  /** Only once the shard's log holds this many bytes. Default 256 MiB. */
  minLogBytes?: number
  /** …and its garbage is at least this multiple of its live data. Default 1. */
  garbageRatio?: number
}

type Write = (s: Stream, record: StreamRecord, apply: (lsn: number) => void) => Promise<void>

/** Moved bytes in flight before compaction waits for them (bounds its memory). */
const MOVE_WINDOW = 8 << 20

/** Compact one shard if it is worth it (or `force`). */
export async function compactShard(
  wal: Wal,
  shardStreams: () => readonly Stream[],
  options: CompactionOptions & { force: boolean; write: Write; maxRecordBytes: number },
): Promise<void> {
  const logBytes = wal.nextLsn - wal.firstLsn
  const minLogBytes = options.minLogBytes ?? 256 << 20
  if (!options.force && logBytes < minLogBytes) return // the cheap check first: this runs every sweep
  const streams = shardStreams()
  let live = 0
  for (const s of streams) if (s.deleted !== 'hard' && s.positions.length > 0) live += s.tail - s.positions[0]!
  const worth = logBytes >= minLogBytes && logBytes - live >= (options.garbageRatio ?? 1) * live
  if (!options.force && !worth) return
  // Every record below the cut is durable; each stream's is applied once its commit settles.
  const cut = wal.nextLsn
  let inFlight: Promise<void>[] = []
  let bytes = 0
  for (const s of streams) {
    await s.commit
    if (s.deleted === 'hard') continue
    // The snapshot and its producer records are written in one go, so no append falls between them.
    for (const record of snapshotRecords(s, options.maxRecordBytes)) inFlight.push(observed(options.write(s, record, () => {})))
    const moves = s.positions.map((at, i) => ({ at, lsn: s.lsns[i]!, time: s.times[i]! })).filter((c) => c.lsn < cut)
    for (const { at, lsn, time } of moves) {
      const record = wal.readSync(lsn)
      const data = record.subarray(dataStart(record))
      inFlight.push(
        observed(
          options.write(s, { kind: MOVE, header: { uid: s.uid, at, time }, data }, (moved) => {
            const i = s.chunkAt(at)
            if (i >= 0 && s.positions[i] === at) s.lsns[i] = moved
          }),
        ),
      )
      bytes += data.length
      if (bytes >= MOVE_WINDOW) {
        await Promise.all(inFlight)
        inFlight = []
        bytes = 0
      }
    }
  }
  await Promise.all(inFlight)
  await wal.truncateBefore(cut)
}

/** `p`, with a handler attached now: it is awaited only later, and a failure poisons the store anyway. */
function observed(p: Promise<void>): Promise<void> {
  p.catch(() => {})
  return p
}

/** A snapshot of `s` as accepted so far, with `seq` and `closedBy` as given. */
function snapshotHeader(s: Stream, { seq, closedBy }: Pick<SnapshotHeader, 'seq' | 'closedBy'>, numbers?: number): SnapshotHeader {
  return {
    uid: s.uid,
    name: s.name,
    time: numbers ?? Date.now(),
    touched: numbers ?? s.touched,
    ...s.config,
    closed: s.acceptedClosed,
    start: numbers ?? s.start,
    tail: numbers ?? s.acceptedTail,
    ...(seq !== undefined ? { seq } : {}),
    producers: {},
    ...(closedBy !== undefined ? { closedBy } : {}),
    // A deletion still on its way to disk precedes this snapshot in the log: it counts.
    ...(s.deleted === 'soft' || s.deleting ? { deleted: true } : {}),
  }
}

/**
 * The largest a snapshot of `s` can be once it holds `seq` and `closedBy` (its other fields do
 * not grow but for numbers, counted here at their widest). A write that would make it larger
 * than the log's record limit must be refused: compaction could never write it, and its
 * failure would poison the store.
 */
export function snapshotBytes(s: Stream, next: Pick<SnapshotHeader, 'seq' | 'closedBy'>): number {
  const [head, data] = encodeStreamRecord({ kind: SNAPSHOT, header: { ...snapshotHeader(s, next, -Number.MAX_SAFE_INTEGER), deleted: true }, data: Buffer.alloc(0) })
  return head.length + data.length
}

/**
 * The records that restore `s` (as accepted so far) once its creation is compacted away: a
 * snapshot, then as many producer records as its producer states need to stay under the WAL's
 * record limit.
 */
function snapshotRecords(s: Stream, maxRecordBytes: number): StreamRecord[] {
  const header = snapshotHeader(s, { seq: s.seq, closedBy: s.closedBy })
  const records: StreamRecord[] = [{ kind: SNAPSHOT, header, data: Buffer.alloc(0) }]
  const budget = Math.floor(maxRecordBytes / 2) // room for the record's own framing and header
  let batch: Record<string, ProducerState> = {}
  let size = 0
  for (const [id, state] of s.producers) {
    const entry = Buffer.byteLength(JSON.stringify(id)) + 48
    if (size + entry > budget && size > 0) {
      records.push({ kind: PRODUCERS, header: { uid: s.uid, producers: batch }, data: Buffer.alloc(0) })
      batch = {}
      size = 0
    }
    batch[id] = state
    size += entry
  }
  if (size > 0) records.push({ kind: PRODUCERS, header: { uid: s.uid, producers: batch }, data: Buffer.alloc(0) })
  return records
}

/**
 * Apply a retention policy to `s`: drop whole chunks older than `maxAgeMs` or outside the newest
 * `maxBytes`. Streams with forks keep everything (a fork may read any of it).
 */
export function retainStream(
  s: Stream,
  policy: { maxAgeMs?: number; maxBytes?: number },
  now: number,
  write: (r: StreamRecord, apply: () => void) => void,
): void {
  if (s.forks > 0 || s.positions.length === 0) return
  let first = 0
  const n = s.positions.length
  if (policy.maxBytes !== undefined) while (first < n && s.chunkEnd(first) <= s.tail - policy.maxBytes) first++
  if (policy.maxAgeMs !== undefined) while (first < n && s.times[first]! < now - policy.maxAgeMs) first++
  const start = first < n ? s.positions[first]! : s.tail
  if (start <= s.acceptedStart) return
  s.acceptedStart = start // forks created from now on must begin at or above it
  write({ kind: RETAIN, header: { uid: s.uid, start }, data: Buffer.alloc(0) }, () => dropBelow(s, start))
}
