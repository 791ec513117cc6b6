// The client-chosen part of a subscription (PROTOCOL.md section 6.2): parsed and checked from a
// PUT body, normalized, and hashed so that re-confirming an identical configuration is
// recognized whatever the field order or the order and repetition of `streams`.

import { createHash } from 'node:crypto'

import { isReservedPath, normalizeStreamPath } from './stream-subscription-glob.js'
import { webhookUrlProblem } from './stream-subscription-webhook-url.js'

/** How a subscription is woken: by an HTTP POST to a worker, or by an event on a wake stream. */
export type SubscriptionType = 'webhook' | 'pull-wake'

/** A normalized subscription configuration; absent optional fields are `null`. */
export interface SubscriptionConfig {
  type: SubscriptionType
  pattern: string | null
  /** Explicit stream paths, normalized, unique and sorted. */
  streams: string[]
  webhook: { url: string } | null
  wake_stream: string | null
  lease_ttl_ms: number
  description: string | null
}

/** Lease duration when `lease_ttl_ms` is not given: 30 seconds. */
export const DEFAULT_LEASE_TTL_MS = 30_000
/** Shortest lease a subscription may ask for: 1 second. */
export const MIN_LEASE_TTL_MS = 1_000
/** Longest lease a subscription may ask for: 10 minutes. */
export const MAX_LEASE_TTL_MS = 600_000

/**
 * Longest `pattern`, in bytes: twice the longest stream name, ample for any useful pattern. The
 * pattern is matched against every appended stream's name, so its size is bounded like theirs.
 */
export const MAX_PATTERN_BYTES = 4096

/** Most segments in a `pattern`: each match's work grows with them. */
export const MAX_PATTERN_SEGMENTS = 32
/** Most streams one request may name (`streams`, or streams added to a subscription). */
export const MAX_STREAMS = 1000
/** Longest `description`, in bytes. */
export const MAX_DESCRIPTION_BYTES = 4096

/** A request the server refuses, with the protocol error code to report it under. */
export interface ConfigProblem {
  code: 'INVALID_REQUEST' | 'WEBHOOK_URL_REJECTED'
  message: string
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A stream path from a request, normalized, or a reason it is unusable. */
export function parseStreamPath(value: unknown, field: string): string | ConfigProblem {
  if (typeof value !== 'string') return { code: 'INVALID_REQUEST', message: `${field} must contain stream path strings` }
  const path = normalizeStreamPath(value)
  if (path === '') return { code: 'INVALID_REQUEST', message: `${field} must not contain an empty stream path` }
  if (isReservedPath(path)) return { code: 'INVALID_REQUEST', message: `${field} must not name a path under the reserved __ds prefix` }
  return path
}

/** Parses a list of stream paths (as in `streams: [...]`), unique and sorted. */
export function parseStreamList(value: unknown, field: string): string[] | ConfigProblem {
  if (!Array.isArray(value)) return { code: 'INVALID_REQUEST', message: `${field} must be an array of stream paths` }
  // Every record is held in memory, reloaded at start and rewritten whole on each save.
  if (value.length > MAX_STREAMS) return { code: 'INVALID_REQUEST', message: `${field} may name at most ${MAX_STREAMS} streams` }
  const paths = new Set<string>()
  for (const item of value) {
    const path = parseStreamPath(item, field)
    if (typeof path !== 'string') return path
    paths.add(path)
  }
  return [...paths].sort()
}

/** Checks a PUT body and returns its normalized configuration, or the problem to report. */
export function parseSubscriptionConfig(body: unknown): SubscriptionConfig | ConfigProblem {
  const bad = (message: string): ConfigProblem => ({ code: 'INVALID_REQUEST', message })
  if (!isObject(body)) return bad('the request body must be a JSON object')
  const type = body.type
  if (type !== 'webhook' && type !== 'pull-wake') return bad('type must be "webhook" or "pull-wake"')

  let pattern: string | null = null
  if (body.pattern !== undefined && body.pattern !== null) {
    if (typeof body.pattern !== 'string' || normalizeStreamPath(body.pattern) === '') return bad('pattern must be a non-empty string')
    pattern = normalizeStreamPath(body.pattern)
    if (Buffer.byteLength(pattern) > MAX_PATTERN_BYTES) return bad(`pattern must be at most ${MAX_PATTERN_BYTES} bytes`)
    // Matched against every new stream name in the store's commit path: bounded work per match.
    if (pattern.split('/').length > MAX_PATTERN_SEGMENTS) return bad(`pattern may have at most ${MAX_PATTERN_SEGMENTS} segments`)
  }
  let streams: string[] = []
  if (body.streams !== undefined && body.streams !== null) {
    const parsed = parseStreamList(body.streams, 'streams')
    if (!Array.isArray(parsed)) return parsed
    streams = parsed
  }
  if (pattern === null && streams.length === 0) return bad('at least one of pattern or streams is required')

  const ttl = body.lease_ttl_ms ?? DEFAULT_LEASE_TTL_MS
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < MIN_LEASE_TTL_MS || ttl > MAX_LEASE_TTL_MS) {
    return bad(`lease_ttl_ms must be an integer from ${MIN_LEASE_TTL_MS} to ${MAX_LEASE_TTL_MS}`)
  }
  const description = body.description ?? null
  if (description !== null && typeof description !== 'string') return bad('description must be a string')
  if (description !== null && Buffer.byteLength(description) > MAX_DESCRIPTION_BYTES) return bad(`description must be at most ${MAX_DESCRIPTION_BYTES} bytes`)

  let webhook: { url: string } | null = null
  let wakeStream: string | null = null
  if (type === 'webhook') {
    if (body.wake_stream !== undefined && body.wake_stream !== null) return bad('wake_stream is only for pull-wake subscriptions')
    if (!isObject(body.webhook) || typeof body.webhook.url !== 'string' || body.webhook.url === '') {
      return bad('webhook subscriptions require webhook.url')
    }
    const problem = webhookUrlProblem(body.webhook.url)
    if (problem !== undefined) return { code: 'WEBHOOK_URL_REJECTED', message: problem }
    webhook = { url: body.webhook.url }
  } else {
    if (body.webhook !== undefined && body.webhook !== null) return bad('webhook is only for webhook subscriptions')
    if (body.wake_stream === undefined || body.wake_stream === null) return bad('pull-wake subscriptions require wake_stream')
    const path = parseStreamPath(body.wake_stream, 'wake_stream')
    if (typeof path !== 'string') return path
    wakeStream = path
  }
  return { type, pattern, streams, webhook, wake_stream: wakeStream, lease_ttl_ms: ttl, description }
}

/** SHA-256 over the canonical JSON of a normalized configuration (fixed key order). */
export function configHash(config: SubscriptionConfig): string {
  const canonical = [
    config.type,
    config.pattern,
    config.streams,
    config.webhook === null ? null : config.webhook.url,
    config.wake_stream,
    config.lease_ttl_ms,
    config.description,
  ]
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex')
}
