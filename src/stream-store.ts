// Named append-only streams on sturdy's WAL: the store behind the Durable Streams server.
//
// Streams are spread over shards (one WAL each) by a hash of their name. Every operation is one
// WAL record (stream-record.ts); a write is validated against the accepted writer state, appended,
// and becomes visible to readers only once durable, in order. Recovery replays the shards
// (stream-replay.ts).

import { randomBytes } from 'node:crypto'
import { isBytes } from './bytes.js'
import { Wal } from './wal.js'
import { SturdyError } from './errors.js'
import type { SimulatedDisk } from './simulated-disk.js'
import { StreamError } from './stream-error.js'
import { isRfc3339 } from './rfc3339.js'
import type { StreamEvents } from './stream-events.js'
import { formatOffset, parsePosition, type OffsetRequest } from './stream-offset.js'
import { jsonMessages, messagesLength } from './stream-json.js'
import { collectRange, pieceOf, planRange, retainedStart, type Piece } from './stream-read.js'
import { isMediaType, mediaTypeOf, Stream } from './stream-state.js'
import { openLayout, shardDir, shardOf } from './stream-layout.js'
import { replayShards } from './stream-replay.js'
import {
  APPEND,
  CREATE,
  DELETE,
  TOUCH,
  dataStart,
  encodeStreamRecord,
  type EncodedRecord,
  type ProducerTuple,
  type StreamConfig,
  type StreamRecord,
} from './stream-record.js'
import { compactShard, retainStream, snapshotBytes, type CompactionOptions } from './stream-compaction.js'

/**
 * Options of {@link StreamStore.open}.
 *
 * @example
 * ```ts
 * const store = await StreamStore.open('./data', { shards: 8, retention: { maxAgeMs: 7 * 86_400_000 } })
 * ```
 */
export interface StreamStoreOptions {
  /** Number of shards (WALs) for a new directory; an existing one must match its manifest. Default 4. */
  shards?: number
  /** Segment size of each shard's WAL. Default 64 MiB. */
  segmentBytes?: number
  /** Largest stored record (an append's body plus a small header). Default 16 MiB. */
  maxRecordBytes?: number
  /** How often expired streams are deleted, in ms. Default 1000. */
  sweepIntervalMs?: number
  /**
   * Retention: drop data older than `maxAgeMs` or beyond the newest `maxBytes` of each stream
   * (whole chunks; reads below the retained start answer 410 Gone). Default: keep everything.
   */
  retention?: { maxAgeMs?: number; maxBytes?: number }
  /** When compaction rewrites a shard. See {@link CompactionOptions}. */
  compaction?: CompactionOptions
  /** Clock, for tests. */
  now?: () => number
  /** Put the shards on a simulated disk (`sturdy/testing`), for power-loss tests; `dir` still holds the layout manifest. */
  disk?: SimulatedDisk
}

/**
 * How to create a stream.
 *
 * @example
 * ```ts
 * await store.create('audit', { contentType: 'application/json', ttlSeconds: 86_400 })
 * await store.create('audit-v2', { forkFrom: 'audit' }) // shares audit's data up to its tail
 * ```
 */
export interface CreateOptions {
  /** Default `application/octet-stream` (or the fork source's type). */
  contentType?: string
  /** Sliding time-to-live, seconds. */
  ttlSeconds?: number
  /** Absolute expiry, RFC 3339. */
  expiresAt?: string
  /** Create the stream closed (its initial data is then all it will ever hold). */
  closed?: boolean
  /** Initial data (for JSON streams, a JSON value or array of messages). */
  data?: Buffer
  /** Fork: the source stream's name, the offset to fork at (default its tail) and a sub-offset. */
  forkFrom?: string
  forkOffset?: string
  forkSubOffset?: number
}

/**
 * An idempotent producer's request identity: a retry with the same triple is a duplicate.
 *
 * @example
 * ```ts
 * await store.append('audit', body, { contentType: 'application/json', producer: { id: 'svc-1', epoch: 0, seq: 0 } })
 * ```
 */
export interface ProducerRequest {
  id: string
  epoch: number
  seq: number
}

/**
 * How to append.
 *
 * @example
 * ```ts
 * await store.append('log', Buffer.from('last line'), { contentType: 'text/plain', seq: '000042', close: true })
 * ```
 */
export interface AppendOptions {
  /** Content type of the body; must match the stream's when there is a body. */
  contentType?: string
  /** Writer sequence: must be above the last one (byte-wise). */
  seq?: string
  producer?: ProducerRequest
  /** Close the stream after this append (the body may then be empty). */
  close?: boolean
}

/**
 * What a stream looks like now.
 *
 * @example
 * ```ts
 * const { nextOffset, closed } = await store.head('log')
 * ```
 */
export interface StreamInfo {
  name: string
  /** Internal identity: a deleted and re-created stream gets a new one. */
  uid: string
  contentType: string
  /** Offset after the last durable byte. */
  nextOffset: string
  closed: boolean
  ttlSeconds?: number
  expiresAt?: string
}

/**
 * The outcome of an append.
 *
 * @example
 * ```ts
 * const r = await store.append('log', body, { contentType: 'text/plain', producer })
 * if (r.outcome === 'duplicate') console.log('already stored; highest seq', r.producer?.seq)
 * ```
 */
export interface AppendResult {
  /** `appended`: new data (or a close) was made durable; `duplicate`: a producer retry, already stored. */
  outcome: 'appended' | 'duplicate'
  nextOffset: string
  closed: boolean
  /** For producer requests: the epoch and the highest accepted sequence number. */
  producer?: { epoch: number; seq: number }
}

/**
 * A catch-up read.
 *
 * @example
 * ```ts
 * let r = await store.read('log', { kind: 'start' })
 * while (!r.upToDate) r = await store.read('log', parseOffset(r.nextOffset))
 * ```
 */
export interface ReadResult {
  uid: string
  /** Stored bytes (for JSON streams: messages, each followed by a comma; see `jsonArray`). */
  data: Buffer
  startOffset: string
  nextOffset: string
  /** Reached the durable tail. */
  upToDate: boolean
  /** Reached the tail of a closed stream. */
  closed: boolean
  json: boolean
  contentType: string
}

const DEFAULT_TYPE = 'application/octet-stream'
const MAX_READ_BYTES = 1 << 20
/** Plans a read makes before a piece still missing is an error (see `read`). */
const READ_ATTEMPTS = 10
/** Reads of up to this many pieces use positioned reads on the event loop (page cache: µs). */
const SYNC_READ_PIECES = 8
const MAX_NAME_BYTES = 2048
/** Producer ids and Stream-Seq values: kept per stream and in every snapshot, so bounded. */
const MAX_WRITER_ID_BYTES = 1024

/**
 * Thrown inside an operation whose answer would depend on writes of `stream` that are not
 * durable yet (a refusal, or a stream being created or deleted): the operation waits for them
 * and runs again, so nobody is told something a crash could undo.
 */
class Unsettled {
  constructor(readonly stream: Stream) {}
}

/** A refusal to give once the writes it was judged against are durable (see `#refuse`). */
class RefusedAfter {
  constructor(
    readonly written: Promise<unknown>,
    readonly error: StreamError,
  ) {}
}

/** Epochs and sequence numbers: what the protocol's headers carry, whole and not negative. */
function checkProducer(p: ProducerRequest): void {
  if (p === null || typeof p !== 'object' || typeof p.id !== 'string' || p.id.length === 0) {
    throw new StreamError('INVALID_ARG', 'a producer has a non-empty string id')
  }
  for (const [what, v] of [['epoch', p.epoch], ['seq', p.seq]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new StreamError('INVALID_ARG', `producer ${what} must be a non-negative integer, got ${String(v)}`)
    }
  }
}

/**
 * Durable, named, append-only streams with the Durable Streams protocol's semantics, on sturdy's
 * WAL. An append resolves once it is on stable storage; producer state, `Stream-Seq` and closure
 * are committed in the same record as the data they guard.
 *
 * @example
 * ```ts
 * const store = await StreamStore.open('./data')
 * await store.create('orders', { contentType: 'application/json' })
 * await store.append('orders', Buffer.from('{"id":1}'), { contentType: 'application/json' })
 * const r = await store.read('orders', { kind: 'start' })
 * console.log(r.data.toString()) // {"id":1},
 * await store.close()
 * ```
 */
export class StreamStore implements StreamEvents {
  readonly #wals: Wal[]
  readonly #byName = new Map<string, Stream>()
  readonly #byUid = new Map<string, Stream>()
  readonly #listeners = new Set<(name: string, tail: string, created: boolean) => void>()
  readonly #now: () => number
  readonly #options: StreamStoreOptions
  readonly #sweep: NodeJS.Timeout
  readonly #compacting = new Map<number, Promise<void>>()
  /** Streams with a TTL or expiry time: the only ones the sweep looks at. */
  readonly #expiring = new Set<Stream>()
  #failure: Error | undefined
  /** The close in progress or done: later calls resolve with it. */
  #closing: Promise<void> | undefined

  /** Whether close has been called. */
  get #closed(): boolean {
    return this.#closing !== undefined
  }

  private constructor(wals: Wal[], streams: Stream[], options: StreamStoreOptions) {
    this.#wals = wals
    this.#options = options
    this.#now = options.now ?? Date.now
    for (const s of streams) {
      this.#byUid.set(s.uid, s)
      // A live stream owns its name over an older soft-deleted one kept for its forks.
      if (s.deleted === 'no' || !this.#byName.has(s.name)) this.#byName.set(s.name, s)
      if (s.deleted === 'no' && (s.config.ttl !== undefined || s.config.expiresAt !== undefined)) this.#expiring.add(s)
    }
    this.#sweep = setInterval(() => this.#maintain(), options.sweepIntervalMs ?? 1000)
    this.#sweep.unref()
  }

  /** Open (or create) the store in `dir`, recovering every shard. */
  static async open(dir: string, options: StreamStoreOptions = {}): Promise<StreamStore> {
    const shards = await openLayout(dir, options.shards)
    const wals: Wal[] = []
    try {
      for (let i = 0; i < shards; i++) {
        wals.push(
          await Wal.open(shardDir(dir, i), {
            segmentBytes: options.segmentBytes ?? 64 << 20,
            // Reads of stream data are served synchronously, from the page cache.
            directWrites: false,
            ...(options.maxRecordBytes !== undefined ? { maxRecordBytes: options.maxRecordBytes } : {}),
            ...(options.disk !== undefined ? { disk: options.disk } : {}),
          }),
        )
      }
      const streams = await replayShards(wals, (options.now ?? Date.now)())
      return new StreamStore(wals, streams, options)
    } catch (e) {
      await Promise.all(wals.map((w) => w.close().catch(() => {})))
      throw e
    }
  }

  /** Number of shards. */
  get shards(): number {
    return this.#wals.length
  }

  // ---- StreamEvents (for subscriptions) ----

  names(): Iterable<string> {
    return [...this.#byName.values()].filter((s) => s.deleted === 'no' && s.durable).map((s) => s.name)
  }

  tail(name: string): string | undefined {
    const s = this.#byName.get(name)
    return s === undefined || s.deleted !== 'no' || !s.durable ? undefined : formatOffset(s.tail)
  }

  async appendJson(name: string, messages: readonly unknown[]): Promise<void> {
    await this.append(name, Buffer.from(JSON.stringify(messages)), { contentType: 'application/json' })
  }

  onTail(listener: (name: string, tail: string, created: boolean) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  // ---- operations ----

  /**
   * Create a stream, or confirm one with the same configuration (`created: false`); a different
   * configuration is a `CONFLICT`.
   */
  create(name: string, options: CreateOptions = {}): Promise<{ created: boolean; info: StreamInfo }> {
    return this.#retrying(() => this.#create(name, options))
  }

  async #create(name: string, options: CreateOptions): Promise<{ created: boolean; info: StreamInfo }> {
    this.#checkOpen()
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw new StreamError('INVALID_ARG', `a stream name is 1 to ${MAX_NAME_BYTES} bytes`)
    }
    // URLs resolve `.` and `..` segments away (even percent-encoded): no client could address it.
    if (name.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw new StreamError('INVALID_ARG', 'a stream name has no "." or ".." segments')
    }
    // `a/`, `/a` and `a//b` would be other streams than `a` and `a/b` to the store, but the same
    // to anything that normalizes paths (subscriptions acknowledge by path).
    if (name.split('/').some((segment) => segment === '')) {
      throw new StreamError('INVALID_ARG', 'a stream name has no empty segments (no leading, trailing or doubled "/")')
    }
    const now = this.#now()
    const existing = this.#byName.get(name)
    if (existing !== undefined && existing.deleted === 'no') {
      if (existing.expired(now)) this.#expire(existing)
      if (existing.deleting) throw new Unsettled(existing) // wait for the deletion, then look again
    }
    if (existing !== undefined && existing.deleted === 'soft') {
      throw new StreamError('CONFLICT', `${name} was deleted and is kept for its forks; the path cannot be reused yet`)
    }
    let source: Stream | undefined
    let forkAt: number | undefined
    if (options.forkFrom !== undefined) {
      const live = existing !== undefined && existing.deleted === 'no' ? existing : undefined
      ;({ source, forkAt } = (live && this.#sameForkPoint(live, options)) || this.#forkPoint(options, now))
    } else if (options.forkOffset !== undefined || options.forkSubOffset !== undefined) {
      throw new StreamError('INVALID_ARG', 'a fork offset needs a fork source')
    }
    if (source !== undefined && options.contentType !== undefined && mediaTypeOf(options.contentType) !== source.mediaType) {
      throw new StreamError('CONFLICT', `a fork must have its source's content type (${source.config.type})`)
    }
    const config = this.#config(options, source, forkAt)
    if (existing !== undefined && existing.deleted === 'no') {
      if (!sameConfig(existing, config, options.closed === true)) {
        this.#refuse(existing, new StreamError('CONFLICT', `${name} exists with a different configuration`))
      }
      await existing.commit
      this.#checkHealthy()
      return { created: false, info: this.#info(existing) }
    }
    if (options.contentType !== undefined && !isMediaType(options.contentType)) throw badContentType(options.contentType)
    const stream = new Stream(randomBytes(9).toString('base64url'), name, shardOf(name, this.#wals.length), config, now)
    stream.source = source
    let data = options.data ?? Buffer.alloc(0)
    if (!isBytes(data)) throw new StreamError('INVALID_ARG', 'initial data must be a Buffer or Uint8Array')
    if (stream.json && data.length > 0) data = jsonMessages(data, true)
    const header = { uid: stream.uid, name, time: now, ...config, ...(options.closed === true ? { closed: true } : {}) }
    const record = encodeStreamRecord({ kind: CREATE, header, data })
    this.#checkSize(stream.shard, record)
    this.#checkSnapshotSize(stream, {})
    if (source !== undefined) source.forks++
    stream.acceptedTail = stream.base + data.length
    stream.acceptedClosed = options.closed === true
    this.#byName.set(name, stream)
    this.#byUid.set(stream.uid, stream)
    if (config.ttl !== undefined || config.expiresAt !== undefined) this.#expiring.add(stream)
    await this.#writeEncoded(stream, record, (lsn) => {
      stream.durable = true
      if (data.length > 0) this.#addChunk(stream, stream.base, lsn, now)
      stream.tail = stream.acceptedTail
      stream.closed = stream.acceptedClosed
    })
    return { created: true, info: this.#info(stream) }
  }

  /** Append to a stream (see {@link AppendOptions}); resolves once durable. */
  append(name: string, body: Buffer, options: AppendOptions = {}): Promise<AppendResult> {
    return this.#retrying(() => this.#append(name, body, options))
  }

  async #append(name: string, body: Buffer, options: AppendOptions): Promise<AppendResult> {
    this.#checkOpen()
    const now = this.#now()
    const s = this.#live(name, now)
    const close = options.close === true
    // Checked here: the log would refuse it only after the writer state had moved on.
    if (!isBytes(body)) throw new StreamError('INVALID_ARG', 'a body must be a Buffer or Uint8Array')
    if (body.length === 0 && !close) throw new StreamError('INVALID_ARG', 'an append needs a body (or Stream-Closed: true)')
    const p = options.producer
    if (p !== undefined) checkProducer(p)
    if (options.seq !== undefined && typeof options.seq !== 'string') throw new StreamError('INVALID_ARG', 'Stream-Seq must be a string')
    if (p !== undefined && Buffer.byteLength(p.id) > MAX_WRITER_ID_BYTES) throw new StreamError('INVALID_ARG', `a producer id is at most ${MAX_WRITER_ID_BYTES} bytes`)
    if (options.seq !== undefined && Buffer.byteLength(options.seq) > MAX_WRITER_ID_BYTES) {
      throw new StreamError('INVALID_ARG', `Stream-Seq is at most ${MAX_WRITER_ID_BYTES} bytes`)
    }
    if (s.acceptedClosed) {
      const same = p !== undefined && s.closedBy !== undefined && s.closedBy[0] === p.id && s.closedBy[1] === p.epoch && s.closedBy[2] === p.seq
      if (same || (close && body.length === 0 && p === undefined)) {
        await s.commit
        this.#checkHealthy()
        return { outcome: 'duplicate', nextOffset: formatOffset(s.tail), closed: true, ...(p ? { producer: producerReply(s, p) } : {}) }
      }
      this.#refuse(s, new StreamError('STREAM_CLOSED', `${name} is closed`, { 'Stream-Closed': 'true', 'Stream-Next-Offset': formatOffset(s.acceptedTail) }))
    }
    if (body.length > 0) {
      if (options.contentType === undefined) throw new StreamError('INVALID_ARG', 'Content-Type is required with a body')
      if (mediaTypeOf(options.contentType) !== s.mediaType) {
        // Checked only when it differs: a stream stored under a type that is not one still takes appends of it.
        const error = isMediaType(options.contentType)
          ? new StreamError('CONTENT_TYPE_MISMATCH', `${name} holds ${s.config.type}, not ${options.contentType}`)
          : badContentType(options.contentType)
        this.#refuse(s, error)
      }
    }
    if (p !== undefined) {
      const state = s.producers.get(p.id)
      if (state !== undefined && p.epoch < state[0]) {
        this.#refuse(
          s,
          new StreamError('PRODUCER_STALE_EPOCH', `producer ${p.id}: epoch ${p.epoch} is fenced by epoch ${state[0]}`, {
            'Producer-Epoch': String(state[0]),
          }),
        )
      }
      if (state === undefined || p.epoch > state[0]) {
        if (p.seq !== 0) this.#refuse(s, new StreamError('INVALID_ARG', `producer ${p.id}: a new epoch must start at sequence 0`))
      } else if (p.seq <= state[1]) {
        await s.commit
        this.#checkHealthy()
        return { outcome: 'duplicate', nextOffset: formatOffset(s.tail), closed: s.closed, producer: producerReply(s, p) }
      } else if (p.seq > state[1] + 1) {
        this.#refuse(
          s,
          new StreamError('PRODUCER_SEQ_GAP', `producer ${p.id}: expected sequence ${state[1] + 1}, got ${p.seq}`, {
            'Producer-Expected-Seq': String(state[1] + 1),
            'Producer-Received-Seq': String(p.seq),
          }),
        )
      }
    }
    if (options.seq !== undefined && s.seq !== undefined && Buffer.compare(Buffer.from(options.seq), Buffer.from(s.seq)) <= 0) {
      this.#refuse(s, new StreamError('SEQ_CONFLICT', `Stream-Seq ${JSON.stringify(options.seq)} is not above ${JSON.stringify(s.seq)}`))
    }
    const data = s.json && body.length > 0 ? jsonMessages(body, false) : body
    const at = s.acceptedTail
    const tuple: ProducerTuple | undefined = p && [p.id, p.epoch, p.seq]
    const header = {
      uid: s.uid,
      at,
      time: now,
      ...(options.seq !== undefined ? { seq: options.seq } : {}),
      ...(tuple ? { producer: tuple } : {}),
      ...(close ? { close: true } : {}),
    }
    const record = encodeStreamRecord({ kind: APPEND, header, data })
    this.#checkSize(s.shard, record)
    if (options.seq !== undefined || close) this.#checkSnapshotSize(s, { seq: options.seq ?? s.seq, closedBy: close ? tuple : s.closedBy })
    // Accept: from here the writer state moves on, before the record is durable.
    s.acceptedTail += data.length
    if (options.seq !== undefined) s.seq = options.seq
    if (p !== undefined) s.producers.set(p.id, [p.epoch, p.seq])
    if (close) {
      s.acceptedClosed = true
      s.closedBy = tuple
    }
    s.lastAccess = s.touched = now // the record holds `now`
    const end = s.acceptedTail
    await this.#writeEncoded(s, record, (lsn) => {
      if (data.length > 0) this.#addChunk(s, at, lsn, now)
      s.tail = end
      if (close) s.closed = true
    })
    return {
      outcome: 'appended',
      nextOffset: formatOffset(end),
      closed: close || s.closed,
      ...(p ? { producer: { epoch: p.epoch, seq: p.seq } } : {}),
    }
  }

  /** A stream's metadata (does not count as an access for its TTL). */
  head(name: string): Promise<StreamInfo> {
    return this.#retrying(async () => {
      const s = this.#settled(name, this.#now())
      return this.#info(s)
    })
  }

  /** Catch-up read from `offset`: at most about `maxBytes` (whole chunks, at least one). */
  read(name: string, offset: OffsetRequest, maxBytes = MAX_READ_BYTES): Promise<ReadResult> {
    return this.#retrying(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.#read(name, offset, maxBytes, attempt <= 3)
        } catch (e) {
          // Compaction dropped a segment the plan pointed into: plan again. Past the first few
          // tries the reads are synchronous, so compaction cannot keep moving the data away; one
          // still missing then is not a race, and looping on it would starve the event loop.
          if (!(e instanceof SturdyError && e.code === 'ERR_NOT_FOUND') || attempt >= READ_ATTEMPTS) throw e
        }
      }
    })
  }

  /**
   * A read: plan the pieces, then fetch them — a few from the page cache at once (`readSync`),
   * more in parallel off the event loop, so a cold catch-up read never stalls other requests.
   */
  async #read(name: string, offset: OffsetRequest, maxBytes: number, mayWait: boolean): Promise<ReadResult> {
    const now = this.#now()
    const s = this.#settled(name, now)
    this.#accessed(s, now)
    const from = this.#from(s, offset)
    const pieces: Piece[] = []
    const end = offset.kind === 'now' ? s.tail : planRange(s, from, s.tail, maxBytes, pieces, (stream, i) => this.#chunkData(stream, i))
    const tail = s.tail
    const closed = end === tail && s.closed
    const parts =
      pieces.length <= SYNC_READ_PIECES || !mayWait
        ? pieces.map((p) => this.#readPiece(p))
        : await this.#readPieces(pieces)
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
    return {
      uid: s.uid,
      data,
      startOffset: formatOffset(from),
      nextOffset: formatOffset(end),
      upToDate: end === tail,
      closed,
      json: s.json,
      contentType: s.config.type,
    }
  }

  /**
   * The position a read of `offset` starts at (for live reads waiting on the tail), checked like
   * a read's: beyond the tail or between two JSON messages is `INVALID_OFFSET`, dropped is `GONE`.
   */
  position(name: string, offset: OffsetRequest): Promise<number> {
    return this.#retrying(async () => {
      const s = this.#settled(name, this.#now())
      const from = this.#from(s, offset)
      if (from < s.tail) this.#collectRange(s, from, from, 0, []) // GONE below retention, INVALID_OFFSET mid-message
      return from
    })
  }

  /**
   * Wait until the stream has durable data beyond `position`, is closed, or is gone; `false` if
   * `timeoutMs` passes first or `signal` aborts. Counts as an access for the stream's TTL.
   */
  wait(name: string, position: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    let s: Stream
    try {
      s = this.#live(name, this.#now())
    } catch (e) {
      return e instanceof Unsettled ? Promise.resolve(true) : Promise.reject(e) // changing now: look again
    }
    this.#accessed(s, this.#now())
    if (s.tail > position || s.closed) return Promise.resolve(true)
    if (signal?.aborted === true || this.#closed) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer)
        s.waiters.delete(wake)
        signal?.removeEventListener('abort', abort)
        resolve(ready)
      }
      const wake = () => {
        if (s.tail > position || s.closed || s.deleted !== 'no') done(true)
        else if (this.#closed) done(false) // the store is closing: nothing more will come
      }
      const abort = () => done(false)
      const timer = setTimeout(() => done(false), timeoutMs)
      s.waiters.add(wake)
      signal?.addEventListener('abort', abort)
    })
  }

  /** Delete a stream: soft (410 Gone, data kept) while forks read from it, otherwise for good. */
  delete(name: string): Promise<void> {
    return this.#retrying(async () => {
      const s = this.#settled(name, this.#now())
      await this.#delete(s)
    })
  }

  /** Compact every shard now (normally it runs on its own). */
  async compact(): Promise<void> {
    this.#checkOpen()
    for (let i = 0; i < this.#wals.length; i++) await this.#compactShard(i, true)
  }

  /** Stop maintenance, wait for writes in flight, close the shards. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    clearInterval(this.#sweep)
    await Promise.allSettled(this.#compacting.values())
    await Promise.allSettled([...this.#byUid.values()].map((s) => s.commit))
    for (const s of this.#byUid.values()) s.wake()
    await Promise.all(this.#wals.map((w) => w.close()))
  }

  // ---- internals ----

  #checkOpen(): void {
    if (this.#closed) throw new StreamError('CLOSED', 'the stream store is closed')
    this.#checkHealthy()
  }

  /** Refuse a record the shard's WAL would refuse, before any state moves (`TOO_LARGE`). */
  #checkSize(shard: number, [head, data]: EncodedRecord): void {
    const limit = this.#wals[shard]!.maxRecordBytes
    if (head.length + data.length > limit) {
      throw new StreamError('TOO_LARGE', `the record would exceed the store's limit of ${limit} bytes`)
    }
  }

  /** `TOO_LARGE` if a snapshot of `s` holding `next` could not be written (see `snapshotBytes`). */
  #checkSnapshotSize(s: Stream, next: Parameters<typeof snapshotBytes>[1]): void {
    const limit = this.#wals[s.shard]!.maxRecordBytes
    if (snapshotBytes(s, next) > limit) {
      throw new StreamError('TOO_LARGE', `the stream's name, type, Stream-Seq and closing producer would not fit in one record of ${limit} bytes`)
    }
  }

  #checkHealthy(): void {
    if (this.#failure !== undefined) throw this.#failure
  }

  /**
   * The stream named `name` if clients may use it: `NOT_FOUND`, `GONE` (soft-deleted) otherwise.
   * A stream being deleted (or just expired) is `Unsettled` until its deletion is durable.
   */
  #live(name: string, now: number): Stream {
    const s = this.#byName.get(name)
    if (s === undefined || s.deleted === 'hard') throw new StreamError('NOT_FOUND', `no stream ${JSON.stringify(name)}`)
    if (s.deleted === 'soft') throw new StreamError('GONE', `${JSON.stringify(name)} was deleted`)
    if (!s.deleting && s.expired(now)) this.#expire(s)
    if (s.deleting) throw new Unsettled(s)
    return s
  }

  /** A live stream whose creation is durable, on an open store (else `Unsettled`, or an error). */
  #settled(name: string, now: number): Stream {
    this.#checkOpen()
    const s = this.#live(name, now)
    if (!s.durable) throw new Unsettled(s)
    return s
  }

  /**
   * Refuse with `error` once the writes in flight now, which it was judged against, are durable.
   * Only those: a write that fails poisons the store (the answer is then that failure), and later
   * writes cannot change a judgement made on earlier state, so a busy stream still gets its answer.
   */
  #refuse(s: Stream, error: StreamError): never {
    if (s.pending > 0) throw new RefusedAfter(s.commit, error)
    throw error
  }

  /** Run `op`, again after each wait for an unsettled stream. */
  async #retrying<T>(op: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await op()
      } catch (e) {
        if (e instanceof RefusedAfter) {
          await e.written
          this.#checkHealthy()
          throw e.error
        }
        if (!(e instanceof Unsettled)) throw e
        await e.stream.commit
      }
    }
  }

  /** Where a read of `offset` on `s` starts; `INVALID_OFFSET` if not a position in it. */
  #from(s: Stream, offset: OffsetRequest): number {
    const from = offset.kind === 'start' ? retainedStart(s) : offset.kind === 'now' ? s.tail : offset.position
    if (!Number.isSafeInteger(from) || from < 0) throw new StreamError('INVALID_OFFSET', 'a position is a non-negative integer')
    if (from > s.tail) throw new StreamError('INVALID_OFFSET', 'offset is beyond the end of the stream')
    return from
  }


  #info(s: Stream): StreamInfo {
    return {
      name: s.name,
      uid: s.uid,
      contentType: s.config.type,
      nextOffset: formatOffset(s.tail),
      closed: s.closed,
      ...(s.config.ttl !== undefined ? { ttlSeconds: s.config.ttl } : {}),
      ...(s.config.expiresAt !== undefined ? { expiresAt: s.config.expiresAt } : {}),
    }
  }

  #config(options: CreateOptions, source: Stream | undefined, forkAt: number | undefined): StreamConfig {
    const { ttlSeconds, expiresAt } = options
    if (ttlSeconds !== undefined && expiresAt !== undefined) throw new StreamError('INVALID_ARG', 'give a TTL or an expiry time, not both')
    if (ttlSeconds !== undefined && (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 0)) {
      throw new StreamError('INVALID_ARG', 'TTL must be a non-negative integer number of seconds')
    }
    if (expiresAt !== undefined && !(typeof expiresAt === 'string' && isRfc3339(expiresAt))) throw new StreamError('INVALID_ARG', 'expiry must be an RFC 3339 time')
    const config: StreamConfig = { type: options.contentType ?? source?.config.type ?? DEFAULT_TYPE }
    if (ttlSeconds !== undefined) config.ttl = ttlSeconds
    else if (expiresAt !== undefined) config.expiresAt = expiresAt
    else if (source?.config.ttl !== undefined) config.ttl = source.config.ttl
    else if (source?.config.expiresAt !== undefined) config.expiresAt = source.config.expiresAt
    if (source !== undefined) config.fork = { uid: source.uid, at: forkAt! }
    return config
  }

  /** Resolve a fork request to its source and divergence position. */
  #forkPoint(options: CreateOptions, now: number): { source: Stream; forkAt: number } {
    const source = this.#byName.get(options.forkFrom!)
    if (source === undefined || source.deleted === 'hard') throw new StreamError('NOT_FOUND', `no fork source ${JSON.stringify(options.forkFrom)}`)
    if (source.deleted === 'soft') throw new StreamError('CONFLICT', `fork source ${JSON.stringify(options.forkFrom)} was deleted`)
    if (!source.deleting && source.expired(now)) this.#expire(source)
    // The fork's record goes to its own shard: the source's creation (or deletion) must be
    // durable first, or a crash could keep the fork without its source.
    if (source.deleting || !source.durable) throw new Unsettled(source)
    return { source, forkAt: this.#forkPosition(source, options) }
  }

  /**
   * The fork point of `existing` when the request names its source and divergence point again
   * (a retried PUT), which must be answered 200 whatever became of the source since: appended
   * to, deleted, or trimmed by retention (PROTOCOL.md section 4.2). An omitted offset, or `now`,
   * matches any, as in the reference server. `undefined` when the request asks for another fork.
   */
  #sameForkPoint(existing: Stream, options: CreateOptions): { source: Stream; forkAt: number } | undefined {
    const source = existing.source
    const at = existing.config.fork?.at
    if (source === undefined || at === undefined || this.#byName.get(options.forkFrom!) !== source) return undefined
    const text = options.forkOffset
    const sub = options.forkSubOffset ?? 0
    let asked: number | undefined
    try {
      if ((text === undefined || text === 'now') && sub === 0) asked = at
      // A position needs no look at the source, whose data retention may have dropped since.
      else if (text !== undefined && text !== 'now' && text !== '-1' && sub === 0) asked = parsePosition(text)
      else asked = this.#forkPosition(source, options)
    } catch {
      return undefined // malformed or not resolvable now: answered as a new fork request is
    }
    return asked === at ? { source, forkAt: at } : undefined
  }

  /** Where a fork of `source` diverges, from the request's offset and sub-offset. */
  #forkPosition(source: Stream, options: CreateOptions): number {
    // The oldest position readers can see; `-1` names it (for a fork, not where its own data begins).
    const floor = source.acceptedStart > source.base ? source.acceptedStart : retainedStart(source)
    const text = options.forkOffset
    let at = text === undefined || text === 'now' ? source.tail : text === '-1' ? floor : parseForkOffset(text)
    if (at > source.tail) throw new StreamError('INVALID_ARG', 'fork offset is beyond the end of the source')
    if (at < floor) throw new StreamError('GONE', 'fork offset is below the retained data of the source')
    if (source.json) this.#collectRange(source, at, at, 0, []) // INVALID_OFFSET unless between two messages
    const sub = options.forkSubOffset ?? 0
    if (!Number.isSafeInteger(sub) || sub < 0) throw new StreamError('INVALID_ARG', 'fork sub-offset must be a non-negative integer')
    if (sub > 0) {
      // The sub-offset may not cross the data boundary after the anchor: stay inside one chunk.
      const parts: Buffer[] = []
      const end = this.#collectRange(source, at, source.tail, 1, parts)
      const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
      const length = source.json ? messagesLength(chunk, sub) : sub <= end - at ? sub : undefined
      if (length === undefined) throw new StreamError('INVALID_ARG', 'fork sub-offset passes the next data boundary')
      at += length
    }
    return at
  }

  #collectRange(s: Stream, from: number, limit: number, maxBytes: number, out: Buffer[]): number {
    return collectRange(s, from, limit, maxBytes, out, (stream, i) => this.#chunkData(stream, i), (p) => this.#readPiece(p))
  }

  /** The bytes of `pieces`, in order: one read off the event loop per shard they lie in. */
  async #readPieces(pieces: Piece[]): Promise<Buffer[]> {
    const out = new Array<Buffer>(pieces.length)
    const byShard = new Map<number, number[]>() // shard -> indexes into `pieces`
    pieces.forEach((p, k) => {
      const ks = byShard.get(p.shard)
      if (ks) ks.push(k)
      else byShard.set(p.shard, [k])
    })
    await Promise.all(
      [...byShard].map(async ([shard, ks]) => {
        const records = await this.#wals[shard]!.readMany(ks.map((k) => pieces[k]!.lsn))
        ks.forEach((k, j) => (out[k] = pieceOf(records[j]!, pieces[k]!)))
      }),
    )
    return out
  }

  /** The bytes of `p`, read at once (from the page cache, usually). */
  #readPiece(p: Piece): Buffer {
    return pieceOf(this.#wals[p.shard]!.readSync(p.lsn), p)
  }

  /** The stored data of chunk `i` of `s`. */
  #chunkData(s: Stream, i: number): Buffer {
    const record = this.#wals[s.shard]!.readSync(s.lsns[i]!)
    return record.subarray(dataStart(record))
  }

  #addChunk(s: Stream, position: number, lsn: number, time: number): void {
    s.positions.push(position)
    s.lsns.push(lsn)
    s.times.push(time)
  }

  /**
   * Append `record` for `s` to its shard and, once durable, apply it (in write order per stream)
   * and tell waiters and listeners. A failed write poisons the whole store.
   */
  #write(s: Stream, record: StreamRecord, apply: (lsn: number) => void): Promise<void> {
    return this.#writeEncoded(s, encodeStreamRecord(record), apply)
  }

  async #writeEncoded(s: Stream, record: EncodedRecord, apply: (lsn: number) => void): Promise<void> {
    const created = record[0][0] === CREATE
    const durable = this.#wals[s.shard]!.append(record)
    durable.catch(() => {}) // observed below, after the stream's earlier writes; no unhandled rejection meanwhile
    s.pending++
    const applied = s.commit.then(async () => {
      let lsn: number
      try {
        lsn = await durable
      } catch (e) {
        this.#failure ??= e instanceof Error ? e : new Error(String(e))
        throw this.#failure
      } finally {
        s.pending--
      }
      apply(lsn)
      s.wake()
      // Creates and appends move the tail; compaction's and touches' records do not.
      if (s.deleted === 'no' && (created || record[0][0] === APPEND)) this.#tellListeners(s.name, formatOffset(s.tail), created)
    })
    s.commit = applied.catch(() => {})
    await applied
  }

  /**
   * A client read `s` (or waits on it) at `now`. For a stream with a TTL, record that in the log
   * now and then (see `Stream.touched`): otherwise every restart would start its TTL over, and a
   * process restarting more often than the TTL would keep an idle stream for good.
   */
  #accessed(s: Stream, now: number): void {
    s.lastAccess = now
    const every = s.touchEveryMs()
    if (every === undefined || now - s.touched < every || !s.durable || s.deleted !== 'no' || s.deleting) return
    s.touched = now
    // A failed write poisons the store, as any other does; nothing waits for this one.
    this.#write(s, { kind: TOUCH, header: { uid: s.uid, time: now }, data: Buffer.alloc(0) }, () => {}).catch(() => {})
  }

  /**
   * Tell every `onTail` listener. The change is durable already: a listener that throws must not
   * fail the write that caused it, nor keep the listeners after it from hearing of it. What it
   * threw goes to a process warning.
   */
  #tellListeners(name: string, tail: string, created: boolean): void {
    for (const l of this.#listeners) {
      try {
        l(name, tail, created)
      } catch (e) {
        process.emitWarning(`a stream onTail listener threw: ${e instanceof Error ? e.message : String(e)}`, { code: 'STURDY_LISTENER' })
      }
    }
  }

  /**
   * Delete `s`: it stays visible (every operation on it waits) until the record is durable; then
   * it is soft-deleted if forks still read from it, and gone otherwise.
   */
  async #delete(s: Stream): Promise<void> {
    s.deleting = true
    this.#expiring.delete(s)
    await this.#write(s, { kind: DELETE, header: { uid: s.uid, time: this.#now() }, data: Buffer.alloc(0) }, () => {
      s.deleting = false
      s.deleted = s.forks > 0 ? 'soft' : 'hard'
      if (s.deleted === 'hard') {
        if (this.#byName.get(s.name) === s) this.#byName.delete(s.name)
        this.#drop(s)
      }
    })
  }

  /** `s` is gone for good: release its source, and the source too if it was only kept for forks. */
  #drop(s: Stream): void {
    if (!this.#byUid.delete(s.uid)) return // already dropped by the cascade of one of its forks
    for (let src = s.source; src !== undefined; src = src.source) {
      if (--src.forks > 0 || src.deleted !== 'soft') break
      src.deleted = 'hard'
      if (this.#byName.get(src.name) === src) this.#byName.delete(src.name)
      this.#byUid.delete(src.uid)
    }
  }

  #expire(s: Stream): void {
    if (s.deleted !== 'no' || s.deleting) return
    this.#delete(s).catch(() => {}) // a failure poisons the store; nothing more to do here
  }

  /** Periodic work: expire streams, apply retention, compact shards with enough garbage. */
  #maintain(): void {
    if (this.#closed || this.#failure !== undefined) return
    const now = this.#now()
    for (const s of this.#expiring) {
      if (s.deleted !== 'no') this.#expiring.delete(s)
      else if (s.waiters.size > 0) this.#accessed(s, now) // live readers keep a stream alive (PROTOCOL 5.1)
      else if (s.durable && s.expired(now)) this.#expire(s)
    }
    const retention = this.#options.retention
    if (retention !== undefined) {
      for (const s of this.#byName.values()) {
        if (s.deleted === 'no') retainStream(s, retention, now, (r, apply) => void this.#write(s, r, apply).catch(() => {}))
      }
    }
    for (let i = 0; i < this.#wals.length; i++) this.#compactShard(i, false).catch(() => {})
  }

  #compactShard(shard: number, force: boolean): Promise<void> {
    const running = this.#compacting.get(shard)
    if (running !== undefined) return running
    const streams = () => [...this.#byUid.values()].filter((s) => s.shard === shard)
    const job = compactShard(this.#wals[shard]!, streams, {
      ...this.#options.compaction,
      force,
      maxRecordBytes: this.#wals[shard]!.maxRecordBytes,
      write: (s, r, apply) => this.#write(s, r, apply),
    }).finally(() => this.#compacting.delete(shard))
    this.#compacting.set(shard, job)
    return job
  }
}

function producerReply(s: Stream, p: ProducerRequest): { epoch: number; seq: number } {
  const state = s.producers.get(p.id)
  return state === undefined ? { epoch: p.epoch, seq: p.seq } : { epoch: state[0], seq: state[1] }
}

function badContentType(contentType: string): StreamError {
  return new StreamError('INVALID_ARG', `Content-Type ${JSON.stringify(contentType.slice(0, 128))} is not a media type`)
}

function parseForkOffset(text: string): number {
  try {
    return parsePosition(text)
  } catch {
    throw new StreamError('INVALID_ARG', `malformed fork offset ${JSON.stringify(text.slice(0, 64))}`)
  }
}

function sameConfig(s: Stream, config: StreamConfig, closed: boolean): boolean {
  const expiry = config.expiresAt === undefined ? undefined : Date.parse(config.expiresAt)
  return (
    s.mediaType === mediaTypeOf(config.type) &&
    s.config.ttl === config.ttl &&
    s.expiresAtMs === expiry &&
    s.config.fork?.uid === config.fork?.uid &&
    s.config.fork?.at === config.fork?.at &&
    s.acceptedClosed === closed
  )
}
