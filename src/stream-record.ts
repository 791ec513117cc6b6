// One WAL record per stream operation. Everything an operation changes — data, producer state,
// Stream-Seq, closure — is in its one record, so it is committed atomically with the data it
// guards and recovery rebuilds it by replaying records in order.

import { SturdyError } from './errors.js'

/** A stream came into being (possibly as a fork, possibly closed, possibly with initial data). */
export const CREATE = 1
/** Data appended (maybe empty), with the writer state it advances and maybe closing the stream. */
export const APPEND = 2
/** The stream was deleted (softly, if forks still read from it) or expired. */
export const DELETE = 3
/** Compaction: the whole state of a live stream, written before older records are dropped. */
export const SNAPSHOT = 4
/** Compaction: a live data chunk copied forward to its position. */
export const MOVE = 5
/** Retention: data below `start` is dropped. */
export const RETAIN = 6
/** Compaction: more producer states of the snapshot just before (a snapshot with many producers is split). */
export const PRODUCERS = 7
/** A stream with a TTL was read: when, so a restart neither restarts nor cuts short its TTL. */
export const TOUCH = 8

/** Kind (u8) and header length (u32 LE). */
const PREFIX = 5

/** Idempotent-producer state: epoch and last accepted sequence number. */
export type ProducerState = [epoch: number, seq: number]
/** The producer request that closed a stream: id, epoch, seq. */
export type ProducerTuple = [id: string, epoch: number, seq: number]

/** Configuration fixed at creation. */
export interface StreamConfig {
  /** Content type as given at creation. */
  type: string
  /** Sliding time-to-live in seconds. */
  ttl?: number
  /** Absolute expiry, as given (RFC 3339). */
  expiresAt?: string
  /** Fork source: its uid, and the position where the fork diverges. */
  fork?: { uid: string; at: number }
}

export interface CreateHeader extends StreamConfig {
  uid: string
  name: string
  time: number
  closed?: boolean
}

export interface AppendHeader {
  uid: string
  /** Position the data starts at (a check on replay). */
  at: number
  time: number
  seq?: string
  producer?: ProducerTuple
  close?: boolean
}

export interface DeleteHeader {
  uid: string
  time: number
}

export interface TouchHeader {
  uid: string
  time: number
}

export interface SnapshotHeader extends CreateHeader {
  /** The newest access the log recorded for the stream (`Stream.touched`; older snapshots lack it: `time`). */
  touched?: number
  start: number
  tail: number
  seq?: string
  producers: Record<string, ProducerState>
  closedBy?: ProducerTuple
  deleted?: boolean
}

export interface MoveHeader {
  uid: string
  at: number
  /** When the data was first written (for age-based retention). */
  time: number
}

export interface RetainHeader {
  uid: string
  start: number
}

export interface ProducersHeader {
  uid: string
  producers: Record<string, ProducerState>
}

export type StreamRecord =
  | { kind: typeof CREATE; header: CreateHeader; data: Buffer }
  | { kind: typeof APPEND; header: AppendHeader; data: Buffer }
  | { kind: typeof DELETE; header: DeleteHeader; data: Buffer }
  | { kind: typeof SNAPSHOT; header: SnapshotHeader; data: Buffer }
  | { kind: typeof MOVE; header: MoveHeader; data: Buffer }
  | { kind: typeof TOUCH; header: TouchHeader; data: Buffer }
  | { kind: typeof RETAIN; header: RetainHeader; data: Buffer }
  | { kind: typeof PRODUCERS; header: ProducersHeader; data: Buffer }

/** A record as its head (kind, header length, header) and its data. */
export type EncodedRecord = [head: Buffer, data: Buffer]

/**
 * `[kind u8][header length u32 LE][header as JSON][data]`, as two parts — the head and the data —
 * for `Wal.append` to lay end to end, so the data is not copied to be joined first.
 */
export function encodeStreamRecord(record: StreamRecord): EncodedRecord {
  const json = JSON.stringify(record.header)
  const head = Buffer.allocUnsafe(PREFIX + Buffer.byteLength(json))
  head[0] = record.kind
  head.writeUInt32LE(head.length - PREFIX, 1)
  head.write(json, PREFIX, 'utf8')
  return [head, record.data]
}

/** Offset of the data inside an encoded record. */
export function dataStart(record: Buffer): number {
  return PREFIX + record.readUInt32LE(1)
}

/** Parse a record; `ERR_CORRUPT` (naming the shard and LSN) if it is not one. */
export function decodeStreamRecord(record: Buffer, where: string): StreamRecord {
  const corrupt = (why: string) => new SturdyError('ERR_CORRUPT', `stream record ${where} ${why}`)
  if (record.length < PREFIX) throw corrupt('is too short')
  const kind = record[0]!
  if (kind < CREATE || kind > TOUCH) throw corrupt(`has unknown kind ${kind}`)
  const end = PREFIX + record.readUInt32LE(1)
  if (end > record.length) throw corrupt('has a header longer than the record')
  let header: unknown
  try {
    header = JSON.parse(record.toString('utf8', PREFIX, end))
  } catch {
    throw corrupt('has an unreadable header')
  }
  if (header === null || typeof header !== 'object' || typeof (header as { uid?: unknown }).uid !== 'string') {
    throw corrupt('has no stream uid')
  }
  return { kind, header, data: record.subarray(end) } as StreamRecord
}
