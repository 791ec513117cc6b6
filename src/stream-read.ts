// Reading a stream's stored bytes by position: its own chunks, and below its fork point the
// source's, recursively — a fork shares its source's data instead of copying it.

import { StreamError } from './stream-error.js'
import { isMessageBoundary } from './stream-json.js'
import { dataStart } from './stream-record.js'
import type { Stream } from './stream-state.js'

/** The stored data of chunk `i` of a stream. */
export type ChunkData = (s: Stream, i: number) => Buffer

/** The first position of `s` still readable: its retention start, or its source's below a fork point. */
export function retainedStart(s: Stream): number {
  return s.source !== undefined && s.start === s.base ? retainedStart(s.source) : s.start
}

/** Part of a read: bytes `[from, to)` of the data of the record at `lsn` in `shard`. */
export interface Piece {
  shard: number
  lsn: number
  from: number
  to: number
}

/**
 * Plan a read of the stored bytes of `s` from `from` (below `limit`): the pieces to read, in
 * order, through fork sources for inherited ranges; stops after `maxBytes` (whole chunks).
 * Returns the end position. `GONE` below the retained data, `INVALID_OFFSET` between the bytes of
 * one JSON message (checking that reads the chunk it falls in).
 */
export function planRange(s: Stream, from: number, limit: number, maxBytes: number, out: Piece[], chunkData: ChunkData): number {
  let pos = from
  let budget = maxBytes
  // Retention dropped everything below `start` (for a fork, its inherited range too).
  if (s.start > s.base && pos < s.start) throw new StreamError('GONE', 'offset is below the retained data of the stream')
  if (pos < s.base) {
    pos = planRange(s.source!, pos, Math.min(s.base, limit), maxBytes, out, chunkData)
    budget -= pos - from
    if (pos < s.base || budget <= 0) return pos
  }
  let i = s.chunkAt(pos)
  if (i < 0) return pos
  if (s.json && pos !== s.positions[i] && !isMessageBoundary(chunkData(s, i), pos - s.positions[i]!)) {
    throw new StreamError('INVALID_OFFSET', 'offset is not at a message boundary')
  }
  for (; i < s.positions.length && pos < limit && budget > 0; i++) {
    const start = s.positions[i]!
    const stop = Math.min(s.chunkEnd(i), limit)
    if (stop <= pos) continue
    out.push({ shard: s.shard, lsn: s.lsns[i]!, from: pos - start, to: stop - start })
    budget -= stop - pos
    pos = stop
  }
  return pos
}

/** The bytes of piece `p` in `record`, the WAL record it points into. */
export function pieceOf(record: Buffer, p: Piece): Buffer {
  const at = dataStart(record)
  return record.subarray(at + p.from, at + p.to)
}

/** {@link planRange}, then the pieces read at once (small, synchronous reads: fork points, checks). */
export function collectRange(
  s: Stream,
  from: number,
  limit: number,
  maxBytes: number,
  out: Buffer[],
  chunkData: ChunkData,
  read: (p: Piece) => Buffer,
): number {
  const pieces: Piece[] = []
  const end = planRange(s, from, limit, maxBytes, pieces, chunkData)
  for (const p of pieces) out.push(read(p))
  return end
}
