/**
 * Why a stream operation was refused. Each code maps to one HTTP status in the stream server.
 *
 * - `NOT_FOUND` (404): no such stream.
 * - `GONE` (410): the stream was deleted but forks still read from it, or the offset was dropped by retention.
 * - `CONFLICT` (409): the stream exists with another configuration, the path is held by a deleted source, or a fork's content type differs.
 * - `STREAM_CLOSED` (409): the stream takes no more appends.
 * - `CONTENT_TYPE_MISMATCH` (409): the body's content type is not the stream's.
 * - `SEQ_CONFLICT` (409): `Stream-Seq` is not above the last one.
 * - `PRODUCER_STALE_EPOCH` (403): a newer producer epoch fenced this one.
 * - `PRODUCER_SEQ_GAP` (409): a producer sequence number was skipped.
 * - `INVALID_OFFSET` (400), `INVALID_ARG` (400): malformed input.
 * - `TOO_LARGE` (413): the body exceeds the configured limit.
 * - `LAYOUT_MISMATCH`: the data directory was written with another shard layout.
 * - `CLOSED`: the store was closed.
 *
 * @example
 * ```ts
 * try {
 *   await store.append('orders', Buffer.from('x'), { contentType: 'text/plain' })
 * } catch (e) {
 *   if (e instanceof StreamError && e.code === 'STREAM_CLOSED') console.log('final offset', e.headers['Stream-Next-Offset'])
 * }
 * ```
 */
export type StreamErrorCode =
  | 'NOT_FOUND'
  | 'GONE'
  | 'CONFLICT'
  | 'STREAM_CLOSED'
  | 'CONTENT_TYPE_MISMATCH'
  | 'SEQ_CONFLICT'
  | 'PRODUCER_STALE_EPOCH'
  | 'PRODUCER_SEQ_GAP'
  | 'INVALID_OFFSET'
  | 'INVALID_ARG'
  | 'TOO_LARGE'
  | 'LAYOUT_MISMATCH'
  | 'CLOSED'

const STATUS: Record<StreamErrorCode, number> = {
  NOT_FOUND: 404,
  GONE: 410,
  CONFLICT: 409,
  STREAM_CLOSED: 409,
  CONTENT_TYPE_MISMATCH: 409,
  SEQ_CONFLICT: 409,
  PRODUCER_STALE_EPOCH: 403,
  PRODUCER_SEQ_GAP: 409,
  INVALID_OFFSET: 400,
  INVALID_ARG: 400,
  TOO_LARGE: 413,
  LAYOUT_MISMATCH: 500,
  CLOSED: 503,
}

/**
 * A refused stream operation: a stable `code`, the HTTP `status` it maps to, and protocol headers
 * the answer must carry (for example `Stream-Closed` and the final offset).
 *
 * @example
 * ```ts
 * const e = new StreamError('NOT_FOUND', 'no stream "a"')
 * e.status // 404
 * ```
 */
export class StreamError extends Error {
  /** Stable, machine-readable code. */
  readonly code: StreamErrorCode
  /** The HTTP status this refusal maps to. */
  readonly status: number
  /** Protocol headers that go with the refusal. */
  readonly headers: Readonly<Record<string, string>>

  constructor(code: StreamErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.name = 'StreamError'
    this.code = code
    this.status = STATUS[code]
    this.headers = headers
  }
}
