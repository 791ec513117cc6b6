// Start-up recovery of the stream store: replay every shard's records in LSN order, then link
// forks to their sources and settle deletions (a deleted stream with live forks stays, soft).

import { SturdyError } from './errors.js'
import type { Wal } from './wal.js'
import { Stream } from './stream-state.js'
import { APPEND, CREATE, DELETE, MOVE, PRODUCERS, RETAIN, SNAPSHOT, TOUCH, decodeStreamRecord, type SnapshotHeader } from './stream-record.js'

/** Chunks seen for a stream before its snapshot (its creation was compacted away). */
interface Orphans {
  positions: number[]
  lsns: number[]
  times: number[]
}

/** Rebuild every stream that is not gone for good from the shards' records. */
export async function replayShards(wals: readonly Wal[], now: number): Promise<Stream[]> {
  const byUid = new Map<string, Stream>()
  const deleted = new Set<Stream>()
  const unsorted = new Set<Stream>()
  for (let shard = 0; shard < wals.length; shard++) {
    const wal = wals[shard]!
    const orphans = new Map<string, Orphans>()
    const deletedOrphans = new Set<string>()
    for await (const { lsn, data } of wal.entries({ from: wal.firstLsn })) {
      const where = `in shard ${shard} at LSN ${lsn}`
      const r = decodeStreamRecord(data, where)
      const s = byUid.get(r.header.uid)
      switch (r.kind) {
        case CREATE: {
          const h = r.header
          const { type, ttl, expiresAt, fork } = h
          const created = new Stream(h.uid, h.name, shard, { type, ttl, expiresAt, fork }, h.time)
          created.durable = true
          if (r.data.length > 0) addChunk(created, created.base, lsn, h.time)
          created.tail = created.acceptedTail = created.base + r.data.length
          created.closed = created.acceptedClosed = h.closed === true
          byUid.set(h.uid, created)
          break
        }
        case APPEND: {
          const h = r.header
          if (s === undefined) {
            // Its creation was compacted away; the snapshot that follows adopts this chunk.
            if (r.data.length > 0) pushOrphan(orphans, h.uid, h.at, lsn, h.time)
            break
          }
          if (h.at !== s.tail) throw new SturdyError('ERR_CORRUPT', `stream record ${where} appends at ${h.at}, but the stream ends at ${s.tail}`)
          s.touched = Math.max(s.touched, h.time)
          if (r.data.length > 0) addChunk(s, h.at, lsn, h.time)
          s.tail = s.acceptedTail = h.at + r.data.length
          if (h.seq !== undefined) s.seq = h.seq
          if (h.producer !== undefined) s.producers.set(h.producer[0], [h.producer[1], h.producer[2]])
          if (h.close === true) {
            s.closed = s.acceptedClosed = true
            s.closedBy = h.producer
          }
          break
        }
        case DELETE:
          if (s !== undefined) deleted.add(s)
          else deletedOrphans.add(r.header.uid) // its creation was compacted away; a snapshot may follow
          break
        case SNAPSHOT: {
          const restored = s ?? fromSnapshot(r.header, shard)
          applySnapshot(restored, r.header)
          restored.touched = Math.max(s?.touched ?? 0, r.header.touched ?? r.header.time)
          if (r.header.deleted === true || deletedOrphans.has(restored.uid)) deleted.add(restored)
          const adopted = orphans.get(r.header.uid)
          if (adopted !== undefined) {
            orphans.delete(r.header.uid)
            restored.positions.push(...adopted.positions)
            restored.lsns.push(...adopted.lsns)
            restored.times.push(...adopted.times)
          }
          byUid.set(restored.uid, restored)
          unsorted.add(restored)
          break
        }
        case MOVE:
          // An earlier compaction's snapshot may be gone while its moves remain: the next
          // snapshot of the stream adopts them, like appends.
          if (s === undefined) pushOrphan(orphans, r.header.uid, r.header.at, lsn, r.header.time)
          else {
            addChunk(s, r.header.at, lsn, r.header.time)
            unsorted.add(s)
          }
          break
        case PRODUCERS:
          // Follows its snapshot; without it (dropped by a later compaction) a newer snapshot follows.
          if (s !== undefined) for (const [id, state] of Object.entries(r.header.producers)) s.producers.set(id, state)
          break
        case TOUCH:
          if (s !== undefined) s.touched = Math.max(s.touched, r.header.time)
          break
        case RETAIN:
          if (s === undefined) break
          if (unsorted.delete(s)) sortChunks(s) // dropBelow needs chunks in position order
          dropBelow(s, r.header.start)
          break
      }
    }
  }
  for (const s of unsorted) {
    sortChunks(s)
    // A snapshot adopts the appends before it whose creation was compacted away, including
    // those retention had dropped (their RETAIN found no stream): left, each compaction would
    // copy them forward again.
    dropBelow(s, s.start)
  }
  for (const s of byUid.values()) s.lastAccess = lastAccessAfterRestart(s, now)
  return settle(byUid, deleted)
}

function addChunk(s: Stream, position: number, lsn: number, time: number): void {
  s.positions.push(position)
  s.lsns.push(lsn)
  s.times.push(time)
}

function pushOrphan(orphans: Map<string, Orphans>, uid: string, position: number, lsn: number, time: number): void {
  let o = orphans.get(uid)
  if (o === undefined) orphans.set(uid, (o = { positions: [], lsns: [], times: [] }))
  o.positions.push(position)
  o.lsns.push(lsn)
  o.times.push(time)
}

/**
 * The latest a stream can have been accessed before the restart: reads between two recorded
 * ones go unrecorded for up to `touchEveryMs`, so the TTL counts from that much after the newest
 * recorded access (never from the future). It neither restarts at every restart nor ends early.
 */
function lastAccessAfterRestart(s: Stream, now: number): number {
  return Math.min(now, s.touched + (s.touchEveryMs() ?? 0))
}

function fromSnapshot(h: SnapshotHeader, shard: number): Stream {
  const s = new Stream(h.uid, h.name, shard, { type: h.type, ttl: h.ttl, expiresAt: h.expiresAt, fork: h.fork }, h.touched ?? h.time)
  s.durable = true
  return s
}

function applySnapshot(s: Stream, h: SnapshotHeader): void {
  s.tail = s.acceptedTail = h.tail
  s.start = s.acceptedStart = h.start
  s.closed = s.acceptedClosed = h.closed === true
  s.seq = h.seq
  s.closedBy = h.closedBy
  // Merged, not replaced: the producer records that follow a snapshot may have been lost with a
  // crash mid-compaction — then the older records they summarize are still in the log.
  for (const [id, state] of Object.entries(h.producers)) s.producers.set(id, state)
}

/** Drop whole chunks that end at or below `start`. */
export function dropBelow(s: Stream, start: number): void {
  s.start = Math.max(s.start, start)
  s.acceptedStart = Math.max(s.acceptedStart, s.start)
  let n = 0
  while (n < s.positions.length && s.chunkEnd(n) <= s.start) n++
  if (n > 0) {
    s.positions.splice(0, n)
    s.lsns.splice(0, n)
    s.times.splice(0, n)
  }
}

/** Order chunks by position; where compaction left two copies of one chunk, keep the newer. */
function sortChunks(s: Stream): void {
  const order = s.positions.map((_, i) => i).sort((a, b) => s.positions[a]! - s.positions[b]! || s.lsns[a]! - s.lsns[b]!)
  const positions: number[] = []
  const lsns: number[] = []
  const times: number[] = []
  for (const i of order) {
    if (positions.length > 0 && positions[positions.length - 1] === s.positions[i]) lsns[lsns.length - 1] = s.lsns[i]!
    else {
      positions.push(s.positions[i]!)
      lsns.push(s.lsns[i]!)
      times.push(s.times[i]!)
    }
  }
  s.positions = positions
  s.lsns = lsns
  s.times = times
}

/**
 * Link forks to their sources, count them, and decide deletions: a deleted stream whose forks
 * are all gone is gone for good (which may free its own source, and so on up the chain).
 */
function settle(byUid: Map<string, Stream>, deleted: Set<Stream>): Stream[] {
  for (const s of byUid.values()) {
    if (s.config.fork === undefined) continue
    const source = byUid.get(s.config.fork.uid)
    if (source === undefined && deleted.has(s)) {
      // A deleted fork whose source compaction already dropped: gone too.
      s.deleted = 'hard'
      byUid.delete(s.uid)
      deleted.delete(s)
      continue
    }
    if (source === undefined) throw new SturdyError('ERR_CORRUPT', `stream ${JSON.stringify(s.name)} is a fork of a stream that is missing`)
    s.source = source
    source.forks++
  }
  const gone = [...deleted].filter((s) => s.forks === 0)
  while (gone.length > 0) {
    const s = gone.pop()!
    s.deleted = 'hard'
    byUid.delete(s.uid)
    const src = s.source
    if (src !== undefined && --src.forks === 0 && deleted.has(src)) gone.push(src)
  }
  for (const s of deleted) if (s.deleted !== 'hard') s.deleted = 'soft'
  // Names map to their newest live stream; an older soft-deleted one stays reachable by its forks.
  return [...byUid.values()]
}
