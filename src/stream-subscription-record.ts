// A subscription's durable state: its configuration, one cursor per linked stream, the wake
// generation, the wake in flight (with its lease), and the webhook retry schedule. This is
// exactly what is persisted; timers and in-flight HTTP requests are rebuilt from it on open.

import type { SubscriptionConfig } from './stream-subscription-config.js'

/** `-1`, the protocol's "before the first message" offset: sorts below every real offset. */
export const BEFORE_FIRST_OFFSET = '-1'

/**
 * One linked stream and its cursor (PROTOCOL.md section 6.1). A link that is not explicit exists
 * because the stream matches the subscription's pattern.
 */
export interface StreamLink {
  path: string
  /** Linked by `streams[]` or the membership API (reported as `explicit` even if the pattern matches too). */
  explicit: boolean
  /** Last processed offset, inclusive. */
  acked_offset: string
}

/** The wake in flight: issued, maybe claimed (pull-wake) or delivered (webhook). */
export interface Wake {
  id: string
  generation: number
  /** The stream whose pending work caused the wake (named in pull-wake events). */
  stream: string
  /** Who holds the lease (pull-wake claims); `null` while unclaimed, and always for webhooks. */
  holder: string | null
  /** When the lease runs out (epoch ms), or `null` while no lease runs (unclaimed pull-wake). */
  lease_expires_at: number | null
  /**
   * A webhook's receiver has this wake (it answered a delivery with 2xx, or called back): a
   * restart leaves it to its lease rather than delivering it again. Absent until then.
   */
  delivered?: true
}

/** The webhook retry schedule after failed delivery attempts (PROTOCOL.md section 7.1). */
export interface RetrySchedule {
  /** Failed attempts in a row. */
  failures: number
  /** When to attempt again (epoch ms). */
  next_attempt_at: number
}

/** Everything about one subscription that survives a restart. */
export interface SubscriptionRecord {
  version: 1
  id: string
  /** Random per creation: tokens of a deleted subscription never work on its successor. */
  incarnation: string
  config: SubscriptionConfig
  config_hash: string
  created_at: string
  /** The stream root URL seen when the subscription was created; callback URLs are built on it. */
  root_url: string
  links: StreamLink[]
  /** Generation of the most recent wake; 0 before the first. */
  generation: number
  wake: Wake | null
  retry: RetrySchedule | null
}

/** A link as reported to clients and workers: its cursor against the stream's durable tail. */
export interface StreamInfo {
  path: string
  link_type: 'explicit' | 'glob'
  acked_offset: string
  tail_offset: string
  has_pending: boolean
}

/**
 * Cursor reports for every link, by path. A stream that does not exist (yet, or any more) has no
 * pending work: its tail is reported as its cursor.
 */
export function streamInfos(record: SubscriptionRecord, tailOf: (path: string) => string | undefined): StreamInfo[] {
  return [...record.links]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((link) => {
      const tail = tailOf(link.path) ?? link.acked_offset
      return {
        path: link.path,
        link_type: link.explicit ? 'explicit' : 'glob',
        acked_offset: link.acked_offset,
        tail_offset: tail,
        has_pending: tail > link.acked_offset,
      }
    })
}

/** The first stream with pending work, or `undefined` when the subscription is caught up. */
export function firstPending(record: SubscriptionRecord, tailOf: (path: string) => string | undefined): string | undefined {
  return streamInfos(record, tailOf).find((s) => s.has_pending)?.path
}

/** Checks the shape of a record read back from disk. */
export function isSubscriptionRecord(value: unknown): value is SubscriptionRecord {
  const r = value as SubscriptionRecord
  return (
    typeof r === 'object' &&
    r !== null &&
    r.version === 1 &&
    typeof r.id === 'string' &&
    typeof r.incarnation === 'string' &&
    typeof r.config === 'object' &&
    typeof r.config_hash === 'string' &&
    Array.isArray(r.links) &&
    Number.isSafeInteger(r.generation)
  )
}
