// One stream in memory: its configuration, the writer state appends are checked against, the
// durable state readers see, and an index from positions to the WAL records holding its data.

import type { ProducerState, ProducerTuple, StreamConfig } from './stream-record.js'
import { isJsonType } from './stream-json.js'

/** `text/plain; charset=utf-8` → `text/plain`: what content types are compared by. */
export function mediaTypeOf(contentType: string): string {
  return contentType.split(';', 1)[0]!.trim().toLowerCase()
}

/** `type/subtype`, each an RFC 9110 token, then any parameters. */
const MEDIA_TYPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*(;.*)?$/

/** Whether a `Content-Type` value is a media type (`text/plain; charset=utf-8`, not `garbage`). */
export function isMediaType(contentType: string): boolean {
  return MEDIA_TYPE.test(contentType.trim())
}

/** A stream's state. Fields named `accepted…` include writes not yet durable. */
export class Stream {
  readonly uid: string
  readonly name: string
  readonly shard: number
  readonly config: StreamConfig
  readonly mediaType: string
  readonly json: boolean
  /** Absolute expiry in ms since the epoch, if the stream has one. */
  readonly expiresAtMs: number | undefined
  /** The fork source (resolved after recovery), and where this stream's own data begins. */
  source: Stream | undefined
  readonly base: number

  /** Durable state, what readers see. */
  tail: number
  closed = false
  /** False until the record creating the stream is durable. */
  durable = false
  /** Positions below this were dropped by retention. */
  start: number
  /** `start`, including a retention cut not yet durable: forks may not begin below it. */
  acceptedStart: number

  /** Writer state, including accepted writes that are not durable yet. */
  acceptedTail: number
  acceptedClosed = false
  seq: string | undefined
  readonly producers = new Map<string, ProducerState>()
  closedBy: ProducerTuple | undefined

  /** Writes handed to the WAL and not yet applied. */
  pending = 0
  /** A DELETE is on its way to disk: the stream stays visible, but every operation waits for it. */
  deleting = false

  /** Live forks reading from this stream; it is only soft-deleted while there are any. */
  forks = 0
  /** `soft`: deleted but kept for its forks (410 Gone); `hard`: gone. */
  deleted: 'no' | 'soft' | 'hard' = 'no'
  /** When a client last read or wrote it: a TTL counts from here. */
  lastAccess: number
  /**
   * The newest access the log records (a create, an append, a touch, a snapshot's). Reads are
   * recorded only every {@link Stream.touchEveryMs}, so after a restart the last access lies
   * within that much after this.
   */
  touched: number

  /** Own data: chunk i starts at `positions[i]`, is the data of the record at `lsns[i]`, written at `times[i]`. */
  positions: number[] = []
  lsns: number[] = []
  times: number[] = []

  /** Settles after the last accepted write is durable (and applied). */
  commit: Promise<unknown> = Promise.resolve()
  /** Called when the durable tail moves, the stream closes or it is deleted. */
  readonly waiters = new Set<() => void>()

  constructor(uid: string, name: string, shard: number, config: StreamConfig, time: number) {
    this.uid = uid
    this.name = name
    this.shard = shard
    this.config = config
    this.mediaType = mediaTypeOf(config.type)
    this.json = isJsonType(this.mediaType)
    this.expiresAtMs = config.expiresAt === undefined ? undefined : Date.parse(config.expiresAt)
    this.base = config.fork?.at ?? 0
    this.tail = this.acceptedTail = this.start = this.acceptedStart = this.base
    this.lastAccess = this.touched = time
  }

  /** How often a read of a stream with a TTL is recorded in the log: a quarter of the TTL. */
  touchEveryMs(): number | undefined {
    return this.config.ttl === undefined ? undefined : (this.config.ttl * 1000) / 4
  }

  /** True once the stream's TTL or absolute expiry has passed. */
  expired(now: number): boolean {
    if (this.expiresAtMs !== undefined && now >= this.expiresAtMs) return true
    return this.config.ttl !== undefined && now >= this.lastAccess + this.config.ttl * 1000
  }

  /** Index of the chunk holding `position` (the last chunk starting at or before it), or -1. */
  chunkAt(position: number): number {
    let lo = 0
    let hi = this.positions.length - 1
    let found = -1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (this.positions[mid]! <= position) {
        found = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }

  /** End position of chunk `i`. */
  chunkEnd(i: number): number {
    return i + 1 < this.positions.length ? this.positions[i + 1]! : this.tail
  }

  /** Wake every reader waiting on this stream. */
  wake(): void {
    for (const w of [...this.waiters]) w()
  }
}
