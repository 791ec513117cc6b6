// Parsing the protocol's request headers and query. Every malformed value is a 400 with a
// message naming the header; nothing reaches the store unchecked.

import type { IncomingHttpHeaders } from 'node:http'
import { isRfc3339 } from './rfc3339.js'
import { StreamError } from './stream-error.js'
import { parseOffset, type OffsetRequest } from './stream-offset.js'
import type { ProducerRequest } from './stream-store.js'

const DECIMAL = /^(0|[1-9][0-9]*)$/
/** The single value of header `name`, or undefined. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

function bad(message: string): StreamError {
  return new StreamError('INVALID_ARG', message)
}

/** A non-negative decimal integer without sign, leading zeros or exponent, up to 2^53 - 1. */
function decimal(name: string, text: string): number {
  if (!DECIMAL.test(text)) throw bad(`${name} must be a non-negative decimal integer`)
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw bad(`${name} is too large`)
  return n
}

/** `Stream-Closed` counts only when it is exactly `true` (any case). */
export function closedHeader(headers: IncomingHttpHeaders): boolean {
  return header(headers, 'stream-closed')?.trim().toLowerCase() === 'true'
}

/** `Stream-TTL` / `Stream-Expires-At` (not both). */
export function expiryHeaders(headers: IncomingHttpHeaders): { ttlSeconds?: number; expiresAt?: string } {
  const ttl = header(headers, 'stream-ttl')
  const expiresAt = header(headers, 'stream-expires-at')
  if (ttl !== undefined && expiresAt !== undefined) throw bad('give Stream-TTL or Stream-Expires-At, not both')
  if (ttl !== undefined) return { ttlSeconds: decimal('Stream-TTL', ttl) }
  if (expiresAt !== undefined) {
    if (!isRfc3339(expiresAt)) throw bad('Stream-Expires-At must be an RFC 3339 timestamp')
    return { expiresAt }
  }
  return {}
}

/** `Producer-Id`, `-Epoch`, `-Seq`: all three or none. */
export function producerHeaders(headers: IncomingHttpHeaders): ProducerRequest | undefined {
  const id = header(headers, 'producer-id')
  const epoch = header(headers, 'producer-epoch')
  const seq = header(headers, 'producer-seq')
  if (id === undefined && epoch === undefined && seq === undefined) return undefined
  if (id === undefined || epoch === undefined || seq === undefined) throw bad('Producer-Id, Producer-Epoch and Producer-Seq go together')
  if (id.length === 0) throw bad('Producer-Id must not be empty')
  return { id, epoch: decimal('Producer-Epoch', epoch), seq: decimal('Producer-Seq', seq) }
}

/** Fork headers of a PUT: the source path (as sent), offset and sub-offset. */
export function forkHeaders(headers: IncomingHttpHeaders): { from?: string; offset?: string; subOffset?: number } {
  const from = header(headers, 'stream-forked-from')
  const offset = header(headers, 'stream-fork-offset')
  const sub = header(headers, 'stream-fork-sub-offset')
  if (from === undefined) {
    if (offset !== undefined || sub !== undefined) throw bad('Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From')
    return {}
  }
  return {
    from,
    ...(offset !== undefined ? { offset } : {}),
    ...(sub !== undefined ? { subOffset: decimal('Stream-Fork-Sub-Offset', sub) } : {}),
  }
}

/** A read's query: offset (absent = stream start), live mode and cursor. */
export interface ReadQuery {
  offset: OffsetRequest
  offsetGiven: boolean
  live: 'long-poll' | 'sse' | undefined
  cursor: string | undefined
}

/** Parse a GET's query parameters. */
export function readQuery(params: URLSearchParams): ReadQuery {
  const offsets = params.getAll('offset')
  if (offsets.length > 1) throw new StreamError('INVALID_OFFSET', 'give one offset')
  if (offsets.length === 1 && offsets[0] === '') throw new StreamError('INVALID_OFFSET', 'offset must not be empty')
  const live = params.get('live') ?? undefined
  if (live !== undefined && live !== 'long-poll' && live !== 'sse') throw bad(`unknown live mode ${JSON.stringify(live.slice(0, 32))}`)
  if (live !== undefined && offsets.length === 0) throw new StreamError('INVALID_OFFSET', `live=${live} needs an offset`)
  return {
    offset: offsets.length === 1 ? parseOffset(offsets[0]!) : { kind: 'start' },
    offsetGiven: offsets.length === 1,
    live,
    cursor: params.get('cursor') ?? undefined,
  }
}
