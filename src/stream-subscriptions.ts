// The Durable Streams subscription service (PROTOCOL.md sections 6 and 7): durable cursors over
// sets of streams that wake workers, by webhook or by an event on a wake stream, when linked
// streams have data past the cursor. It serves the reserved `__ds` API for an HTTP server, and
// keeps its state in its own directory: every change is durable before the response that reports
// it, and timers, leases and webhook retries resume from that state after a restart.

import { randomBytes } from 'node:crypto'

import { invalidArg } from './errors.js'
import { FsDirectory } from './fs-directory.js'
import type { StreamEvents } from './stream-events.js'
import { configHash, parseStreamList, parseSubscriptionConfig, type SubscriptionConfig } from './stream-subscription-config.js'
import { globMatch, isReservedPath, normalizeStreamPath } from './stream-subscription-glob.js'
import {
  allowedMethods,
  bearerToken,
  failure,
  json,
  noContent,
  parseJsonBody,
  parseRoute,
  type RequestHeaders,
  type Route,
  type SubscriptionResponse,
} from './stream-subscription-http.js'
import { SubscriptionKeys } from './stream-subscription-keys.js'
import { KeyedQueue } from './keyed-queue.js'
import { BEFORE_FIRST_OFFSET, firstPending, streamInfos, type StreamLink, type SubscriptionRecord, type Wake } from './stream-subscription-record.js'
import { SubscriptionStore } from './stream-subscription-store.js'
import { issueWakeToken, TOKEN_LIFETIME_MS, verifyWakeToken } from './stream-subscription-tokens.js'
import { postWebhook, retryDelayMs } from './stream-subscription-webhook.js'

export type { RequestHeaders, SubscriptionResponse } from './stream-subscription-http.js'

/**
 * Options for {@link Subscriptions.open}.
 *
 * @example
 * ```ts
 * const subscriptions = await Subscriptions.open({ dir: './data/subscriptions', streams: store.events })
 * ```
 */
export interface SubscriptionsOptions {
  /** A directory owned by the service (created if missing): subscription records and signing keys. */
  dir: string
  /** The stream store the subscriptions watch and append wake events to. */
  streams: StreamEvents
  /** The clock, in epoch milliseconds (default `Date.now`); for tests. */
  now?: () => number
  /**
   * Called with failures of background work (webhook deliveries that could not be recorded, wake
   * events that could not be appended, state that could not be persisted). Default: `console.warn`.
   * Background work never throws out of a timer.
   */
  onError?: (error: unknown) => void
  /**
   * The absolute URL of the stream root as clients reach it (`https://host/v1/stream/`), for the
   * callback URLs in webhook deliveries. Default: the root of the latest request handled, then
   * the root a subscription was created under. Never derive it, or `handle`'s `rootUrl`, from
   * what a client sends (its `Host` header): every delivery's callback, and its token, would go
   * where that client says.
   */
  rootUrl?: string
  /** The most subscriptions the service holds (default 1000): each costs memory and work on every append. */
  maxSubscriptions?: number
  /**
   * Accept plain-http webhooks to this machine (`http://localhost`, `http://127.0.0.x`) for local
   * development (default true). Off, every webhook must use https to a public address: anyone who
   * can reach the server could otherwise have it post to services on its own machine. A webhook
   * to the server's own port is refused either way (each delivery would append to a stream it
   * may watch, waking it again).
   */
  localWebhooks?: boolean
}

/** A subscription in memory: its durable record plus the timers and requests working on it. */
interface Live {
  record: SubscriptionRecord
  links: Map<string, StreamLink>
  /** Stream names its pattern does not match (the pattern never changes), so appends to them cost no match. */
  misses: Set<string>
  leaseTimer: NodeJS.Timeout | null
  deliveryTimer: NodeJS.Timeout | null
  /** The webhook request in flight, to abort on delete or close. */
  delivering: AbortController | null
}

/** An ack as sent to the callback and ack endpoints, checked. */
interface AckRequest {
  wake_id: unknown
  generation: unknown
  acks: Array<{ stream: string; offset: string }>
  done: boolean
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * The reserved subscription and webhook API of a Durable Streams server.
 *
 * The HTTP server routes every request whose stream-root-relative path starts with `__ds/` to
 * {@link Subscriptions.handle} and writes the response it returns. Pending work is detected
 * through {@link StreamEvents.onTail}; offsets are compared as strings (PROTOCOL.md section 8).
 *
 * @example
 * ```ts
 * const subscriptions = await Subscriptions.open({ dir: './data/subscriptions', streams: events })
 * // in the request handler, for a path `/v1/stream/__ds/<rest>`:
 * const res = await subscriptions.handle(req.method, rest, req.headers, body, 'http://host:4437/v1/stream/')
 * response.writeHead(res.status, res.headers).end(res.body)
 * // on shutdown:
 * await subscriptions.close()
 * ```
 */
export class Subscriptions {
  readonly #streams: StreamEvents
  readonly #now: () => number
  readonly #onError: (error: unknown) => void
  readonly #localWebhooks: boolean
  /** Where clients reach the stream root now (see `SubscriptionsOptions.rootUrl`). */
  #root: string | undefined
  readonly #rootGiven: boolean
  /** Where the server listens, when that is not where clients reach it (see `servedAt`). */
  #listening: string | undefined
  readonly #maxSubscriptions: number
  readonly #keys: SubscriptionKeys
  readonly #store: SubscriptionStore
  readonly #queue = new KeyedQueue()
  readonly #live = new Map<string, Live>()
  /** The pull-wake subscriptions' wake streams (recomputed when `#live` changes). */
  #wakeStreams: Set<string> | undefined
  #stopListening: () => void = () => {}
  #closed = false

  private constructor(options: SubscriptionsOptions, keys: SubscriptionKeys, store: SubscriptionStore) {
    this.#streams = options.streams
    this.#now = options.now ?? Date.now
    this.#onError = options.onError ?? ((e) => console.warn('[subscriptions]', e))
    this.#localWebhooks = options.localWebhooks ?? true
    this.#root = options.rootUrl === undefined ? undefined : withSlash(options.rootUrl)
    this.#rootGiven = options.rootUrl !== undefined
    this.#maxSubscriptions = options.maxSubscriptions ?? 1000
    this.#keys = keys
    this.#store = store
  }

  /**
   * Opens the service on `options.dir`: loads the signing key (generated on first use) and every
   * subscription, starts watching the streams, and resumes what was under way — leases run out at
   * their recorded times, webhook deliveries follow their recorded retry schedule, and
   * subscriptions with pending work are woken.
   */
  static async open(options: SubscriptionsOptions): Promise<Subscriptions> {
    if (options.maxSubscriptions !== undefined && !(Number.isSafeInteger(options.maxSubscriptions) && options.maxSubscriptions >= 0)) {
      throw invalidArg('maxSubscriptions must be a non-negative integer')
    }
    if (options.localWebhooks !== undefined && typeof options.localWebhooks !== 'boolean') throw invalidArg('localWebhooks must be a boolean')
    if (options.rootUrl !== undefined && typeof options.rootUrl !== 'string') throw invalidArg('rootUrl must be a string')
    const dir = await FsDirectory.open(options.dir)
    const keys = await SubscriptionKeys.open(dir)
    const store = new SubscriptionStore(dir)
    const service = new Subscriptions(options, keys, store)
    for (const record of await store.loadAll()) service.#adopt(record)
    service.#stopListening = options.streams.onTail((name, tail, created) => service.#onTail(name, tail, created))
    for (const live of service.#live.values()) service.#background(live.record.id, () => service.#resume(live))
    return service
  }

  /**
   * Tell the service where its server is: `rootUrl`, the stream root as clients reach it (for
   * callback URLs, unless `SubscriptionsOptions.rootUrl` was given), and `listenUrl`, the address
   * it listens on (a webhook to this machine at that port is refused as one to the root is).
   *
   * @internal
   */
  servedAt(rootUrl: string, listenUrl: string): void {
    if (!this.#rootGiven) this.#root = withSlash(rootUrl)
    this.#listening = listenUrl
  }

  /**
   * Handles one request under the reserved prefix. Never rejects: bad input is a 4xx response,
   * a failure to persist a 500.
   *
   * @param method - The HTTP method.
   * @param rest - The raw path after `__ds/`, still percent-encoded (`subscriptions/sub-1`,
   *   `subscriptions/sub-1/streams/events%2Fx`, `jwks.json`); a query string is ignored.
   * @param headers - The request headers (only `authorization` is read).
   * @param body - The request body.
   * @param rootUrl - The absolute URL of the stream root (`http://host:4437/v1/stream/`): the base
   *   of `jwks_url`, and of `callback_url` in webhooks of a subscription created by this request.
   */
  async handle(method: string, rest: string, headers: RequestHeaders, body: Buffer, rootUrl: string): Promise<SubscriptionResponse> {
    try {
      if (this.#closed) return failure(503, 'UNAVAILABLE', 'the subscription service is closed')
      const poisoned = this.#store.failure
      if (poisoned !== undefined) return failure(500, 'STORAGE_FAILED', `an earlier write failed: ${poisoned.message}`)
      const route = parseRoute(rest)
      if (route === 'bad-encoding') return failure(400, 'INVALID_REQUEST', 'malformed percent-encoding in the path')
      if (route === undefined) return failure(404, 'NOT_FOUND', 'no such Durable Streams control route')
      const allowed = allowedMethods(route)
      if (!allowed.includes(method)) {
        return { ...failure(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`), headers: { 'content-type': 'application/json', allow: allowed.join(', ') } }
      }
      const root = withSlash(rootUrl)
      if (!this.#rootGiven) this.#root = root
      if (route.kind === 'jwks') {
        const jwks = json(200, this.#keys.jwks(), { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300' })
        return method === 'HEAD' ? { status: 200, headers: jwks.headers } : jwks
      }
      return await this.#queue.run(route.id, () => this.#dispatch(method, route, headers, body, root))
    } catch (e) {
      this.#onError(e)
      return failure(500, 'INTERNAL_ERROR', e instanceof Error ? e.message : String(e))
    }
  }

  /** Stops watching streams, timers and webhook requests, and waits for work under way to finish. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#stopListening()
    for (const live of this.#live.values()) this.#stopActivity(live)
    await this.#queue.drain()
  }

  // ---- Requests (each runs in its subscription's queue) ------------------------------------------

  async #dispatch(method: string, route: Exclude<Route, { kind: 'jwks' }>, headers: RequestHeaders, raw: Buffer, root: string): Promise<SubscriptionResponse> {
    if (route.kind === 'subscription' && method === 'DELETE') return this.#delete(route.id)
    if (route.kind === 'subscription' && method === 'GET') {
      const live = this.#live.get(route.id)
      return live ? json(200, this.#describe(live, root)) : notFound()
    }
    if (route.kind === 'stream') return this.#unlinkExplicit(route.id, route.path)

    const body = parseJsonBody(raw)
    if (body === undefined) return failure(400, 'INVALID_REQUEST', 'the request body is not valid JSON')
    switch (route.kind) {
      case 'subscription':
        return this.#createOrConfirm(route.id, body, root)
      case 'streams':
        return this.#linkExplicit(route.id, body)
      case 'claim':
        return this.#claim(route.id, body)
      default:
        return this.#wakeRequest(route.kind, route.id, headers, body)
    }
  }

  async #createOrConfirm(id: string, body: unknown, root: string): Promise<SubscriptionResponse> {
    const config = parseSubscriptionConfig(body)
    if ('code' in config) return failure(400, config.code, config.message)
    const hook = config.webhook === null ? undefined : new URL(config.webhook.url)
    const local = hook?.protocol === 'http:'
    if (local && !this.#localWebhooks) return failure(400, 'WEBHOOK_URL_REJECTED', 'plain-http webhooks to this machine are turned off on this server; use https')
    const self = hook !== undefined && hook.origin === new URL(root).origin
    if (self || (local && [root, this.#listening].some((url) => url !== undefined && sameServer(hook, url)))) {
      return failure(400, 'WEBHOOK_URL_REJECTED', 'webhook.url must not point at this server')
    }
    const hash = configHash(config)
    const existing = this.#live.get(id)
    if (!existing && this.#live.size >= this.#maxSubscriptions) {
      return failure(400, 'INVALID_REQUEST', `this server holds at most ${this.#maxSubscriptions} subscriptions`)
    }
    if (existing) {
      if (existing.record.config_hash !== hash) {
        return failure(409, 'SUBSCRIPTION_ALREADY_EXISTS', 'a subscription with this id exists with a different configuration')
      }
      return json(200, this.#describe(existing, root))
    }
    const record: SubscriptionRecord = {
      version: 1,
      id,
      incarnation: randomBytes(12).toString('base64url'),
      config,
      config_hash: hash,
      created_at: new Date(this.#now()).toISOString(),
      root_url: root,
      links: [],
      generation: 0,
      wake: null,
      retry: null,
    }
    const live = this.#adopt(record)
    // Existing streams are linked at their tail: a new subscription does not replay history.
    for (const path of config.streams) this.#link(live, path, true, this.#streams.tail(path) ?? BEFORE_FIRST_OFFSET)
    for (const path of this.#streams.names()) {
      const tail = this.#streams.tail(path)
      if (tail !== undefined && this.#patternCovers(live, path)) this.#link(live, path, false, tail)
    }
    try {
      await this.#save(live)
    } catch (e) {
      this.#live.delete(id)
      this.#wakeStreams = undefined
      throw e
    }
    return json(201, this.#describe(live, root))
  }

  async #delete(id: string): Promise<SubscriptionResponse> {
    const live = this.#live.get(id)
    if (!live) return noContent()
    await this.#store.remove(id)
    this.#live.delete(id)
    this.#wakeStreams = undefined
    this.#stopActivity(live)
    return noContent()
  }

  async #linkExplicit(id: string, body: unknown): Promise<SubscriptionResponse> {
    const live = this.#live.get(id)
    if (!live) return notFound()
    const paths = isObject(body) ? parseStreamList(body.streams, 'streams') : parseStreamList(undefined, 'streams')
    if (!Array.isArray(paths)) return failure(400, paths.code, paths.message)
    if (paths.length === 0) return failure(400, 'INVALID_REQUEST', 'streams must name at least one stream')
    for (const path of paths) this.#link(live, path, true, this.#streams.tail(path) ?? BEFORE_FIRST_OFFSET)
    await this.#save(live)
    return noContent()
  }

  async #unlinkExplicit(id: string, rawPath: string): Promise<SubscriptionResponse> {
    const live = this.#live.get(id)
    if (!live) return notFound()
    const path = normalizeStreamPath(rawPath)
    const link = live.links.get(path)
    if (!link?.explicit) return noContent()
    if (this.#patternCovers(live, path)) {
      link.explicit = false
    } else {
      live.links.delete(path)
      live.record.links = live.record.links.filter((l) => l !== link)
    }
    await this.#save(live)
    return noContent()
  }

  async #claim(id: string, body: unknown): Promise<SubscriptionResponse> {
    const live = this.#live.get(id)
    if (!live) return notFound()
    if (live.record.config.type !== 'pull-wake') return failure(400, 'INVALID_REQUEST', 'only pull-wake subscriptions are claimed')
    const worker = isObject(body) ? body.worker : undefined
    if (typeof worker !== 'string' || worker === '') return failure(400, 'INVALID_REQUEST', 'worker must be a non-empty string')
    const record = live.record
    if (record.wake?.holder != null && this.#leaseLapsed(live)) await this.#endWake(live)
    if (record.wake?.holder != null) {
      return failure(409, 'ALREADY_CLAIMED', `the subscription is claimed by ${record.wake.holder}`, {
        current_holder: record.wake.holder,
        generation: record.generation,
      })
    }
    if (record.wake === null) {
      const pending = firstPending(record, this.#tailOf)
      if (pending === undefined) return failure(409, 'NO_PENDING_WORK', 'the subscription has no pending work')
      // The claimant takes the wake at once, so no wake event is needed for it.
      this.#issueWake(live, pending)
    }
    const wake = record.wake!
    wake.holder = worker
    wake.lease_expires_at = this.#now() + record.config.lease_ttl_ms
    await this.#save(live)
    this.#armLease(live)
    return json(200, {
      wake_id: wake.id,
      generation: wake.generation,
      token: this.#token(live, wake),
      streams: streamInfos(record, this.#tailOf),
      lease_ttl_ms: record.config.lease_ttl_ms,
    })
  }

  /** Webhook callback, pull-wake ack (heartbeat when not `done`), and pull-wake release. */
  async #wakeRequest(kind: 'callback' | 'ack' | 'release', id: string, headers: RequestHeaders, body: unknown): Promise<SubscriptionResponse> {
    const token = bearerToken(headers)
    if (token === undefined) return failure(401, 'TOKEN_INVALID', 'an Authorization: Bearer token is required')
    const request = parseAckRequest(body, kind !== 'release')
    if (typeof request === 'string') return failure(400, 'INVALID_REQUEST', request)
    const live = this.#live.get(id)
    if (!live) return notFound()
    const record = live.record
    if (kind !== 'callback' && record.config.type !== 'pull-wake') {
      return failure(400, 'INVALID_REQUEST', `${kind} is for pull-wake subscriptions; webhooks use the callback`)
    }
    const claims = verifyWakeToken(this.#keys.tokenSecret, token, this.#now())
    if (typeof claims === 'string') return failure(401, claims, claims === 'TOKEN_EXPIRED' ? 'the token has expired' : 'the token is not valid')
    if (claims.sub !== record.id || claims.inc !== record.incarnation) return failure(401, 'TOKEN_INVALID', 'the token is not for this subscription')

    const wake = record.wake
    if (this.#leaseLapsed(live)) {
      await this.#endWake(live)
      return fenced()
    }
    if (
      wake === null ||
      claims.gen !== record.generation ||
      claims.wid !== wake.id ||
      request.generation !== record.generation ||
      request.wake_id !== wake.id ||
      (record.config.type === 'pull-wake' && wake.holder === null)
    ) {
      return fenced()
    }
    if (kind === 'release') {
      await this.#endWake(live)
      return noContent()
    }
    const problem = this.#checkAcks(live, request.acks)
    if (problem !== undefined) return failure(409, 'INVALID_OFFSET', problem)
    for (const ack of request.acks) {
      const link = live.links.get(ack.stream)!
      if (ack.offset > link.acked_offset) link.acked_offset = ack.offset
    }
    if (request.done) {
      const nextWake = await this.#endWake(live)
      return json(200, { ok: true, next_wake: nextWake })
    }
    // Not done: a heartbeat that keeps the lease.
    wake.lease_expires_at = this.#now() + record.config.lease_ttl_ms
    if (kind === 'callback') wake.delivered = true
    await this.#save(live)
    this.#armLease(live)
    return json(200, { ok: true, next_wake: false })
  }

  /** Why the acks cannot be applied, or `undefined`. Nothing is applied unless all are valid. */
  #checkAcks(live: Live, acks: AckRequest['acks']): string | undefined {
    for (const { stream, offset } of acks) {
      const link = live.links.get(stream)
      if (!link) return `${stream} is not linked to this subscription`
      if (offset === BEFORE_FIRST_OFFSET || offset === 'now') return `an ack offset must be a real offset, not ${offset}`
      if (offset < link.acked_offset) return `the ack for ${stream} would move its cursor back`
      const tail = this.#streams.tail(stream)
      if (tail === undefined || offset > tail) return `the ack for ${stream} is beyond its tail`
    }
    return undefined
  }

  // ---- Wakes -----------------------------------------------------------------------------------

  /** Starts a new wake generation (in memory; the caller persists). */
  #issueWake(live: Live, stream: string): Wake {
    const record = live.record
    record.generation += 1
    const webhook = record.config.type === 'webhook'
    record.wake = {
      id: `w_${randomBytes(12).toString('hex')}`,
      generation: record.generation,
      stream,
      holder: null,
      // A webhook's lease starts when the wake is issued; a pull-wake's when it is claimed.
      lease_expires_at: webhook ? this.#now() + record.config.lease_ttl_ms : null,
    }
    return record.wake
  }

  /**
   * Ends the wake in flight (done, released, or lease expired) and wakes again if work is still
   * pending. Durable when the promise resolves; returns whether a new wake was issued.
   */
  async #endWake(live: Live): Promise<boolean> {
    live.record.wake = null
    // A retry schedule belongs to the wake that failed to be delivered: a receiver may finish it
    // by callback even so. Its successor starts with a first attempt, and `status` is active again.
    live.record.retry = null
    this.#clearTimer(live, 'leaseTimer')
    this.#clearTimer(live, 'deliveryTimer')
    return this.#wakeIfPending(live)
  }

  /** Issues a wake when the subscription is idle and has pending work; persists either way. */
  async #wakeIfPending(live: Live): Promise<boolean> {
    const record = live.record
    const pending = record.wake === null ? firstPending(record, this.#tailOf) : undefined
    if (pending === undefined) {
      await this.#save(live)
      return false
    }
    const wake = this.#issueWake(live, pending)
    await this.#save(live)
    this.#startWake(live, wake)
    return true
  }

  /** Sets a persisted wake going: schedules its webhook delivery, or announces it on the wake stream. */
  #startWake(live: Live, wake: Wake): void {
    if (live.record.config.type === 'webhook') this.#scheduleDelivery(live)
    else if (wake.holder === null) this.#announce(live, wake)
    else this.#armLease(live)
  }

  /** Appends the wake event workers race to claim (PROTOCOL.md section 7.2). */
  #announce(live: Live, wake: Wake): void {
    const wakeStream = live.record.config.wake_stream!
    if (this.#streams.tail(wakeStream) === undefined) {
      this.#onError(new Error(`subscription ${live.record.id}: wake stream ${wakeStream} does not exist; wake ${wake.generation} is claimable but unannounced`))
      return
    }
    const event = { type: 'wake', subscription_id: live.record.id, stream: wake.stream, generation: wake.generation, ts: this.#now() }
    this.#streams.appendJson(wakeStream, [event]).catch((e: unknown) => this.#onError(e))
  }

  /** Mints the bearer token for the current wake. */
  #token(live: Live, wake: Wake): string {
    return issueWakeToken(this.#keys.tokenSecret, {
      sub: live.record.id,
      inc: live.record.incarnation,
      gen: wake.generation,
      wid: wake.id,
      exp: Math.floor((this.#now() + TOKEN_LIFETIME_MS) / 1000),
    })
  }

  #leaseExpired(wake: Wake): boolean {
    return wake.lease_expires_at !== null && wake.lease_expires_at <= this.#now()
  }

  /** Whether the wake's lease has run out. A webhook wake being delivered, or due for a retry, keeps it. */
  #leaseLapsed(live: Live): boolean {
    const wake = live.record.wake
    return wake !== null && live.delivering === null && live.deliveryTimer === null && this.#leaseExpired(wake)
  }

  // ---- Webhook delivery --------------------------------------------------------------------------

  /** Schedules the next delivery attempt of the current wake, honoring the retry schedule. */
  #scheduleDelivery(live: Live): void {
    if (this.#closed || live.delivering !== null) return
    this.#clearTimer(live, 'deliveryTimer')
    const at = live.record.retry?.next_attempt_at ?? 0
    const { id, incarnation } = live.record
    live.deliveryTimer = setTimeout(() => {
      live.deliveryTimer = null
      this.#attemptDelivery(id, incarnation).catch((e: unknown) => this.#onError(e))
    }, Math.max(0, at - this.#now()))
  }

  /**
   * One delivery attempt. The request itself runs outside the subscription's queue so that a
   * receiver may call back before it answers; its outcome is applied only if the wake is still
   * the one that was sent.
   */
  async #attemptDelivery(id: string, incarnation: string): Promise<void> {
    const sent = await this.#queue.run(id, async () => {
      const live = this.#current(id, incarnation)
      const wake = live?.record.wake
      if (!live || !wake || live.delivering !== null) return undefined
      const streams = streamInfos(live.record, this.#tailOf)
      const body = JSON.stringify({
        subscription_id: id,
        wake_id: wake.id,
        generation: wake.generation,
        streams,
        // Where the server is reached now: it may have moved (another port, a proxy) since.
        callback_url: `${this.#root ?? live.record.root_url}__ds/subscriptions/${encodeURIComponent(id)}/callback`,
        callback_token: this.#token(live, wake),
      })
      // The lease waits while the wake is being delivered; it starts over once it has been.
      this.#clearTimer(live, 'leaseTimer')
      wake.lease_expires_at = this.#now() + live.record.config.lease_ttl_ms
      live.delivering = new AbortController()
      return { live, wakeId: wake.id, body, streams, signal: live.delivering.signal }
    })
    if (!sent) return
    const outcome = await postWebhook(sent.live.record.config.webhook!.url, sent.body, this.#keys.signatureHeader(sent.body, this.#now()), sent.signal)
    await this.#queue.run(id, async () => {
      const live = sent.live
      live.delivering = null
      if (this.#current(id, incarnation) !== live) return
      const record = live.record
      if (record.wake?.id !== sent.wakeId) {
        // The receiver finished the wake by callback before answering; deliver its successor.
        if (record.wake !== null) this.#scheduleDelivery(live)
        return
      }
      if (!outcome.delivered) {
        const failures = (record.retry?.failures ?? 0) + 1
        record.retry = { failures, next_attempt_at: this.#now() + retryDelayMs(failures) }
        await this.#save(live)
        this.#scheduleDelivery(live)
        return
      }
      record.retry = null
      record.wake.delivered = true
      if (outcome.done) {
        // `{"done": true}` acks exactly what the notification reported.
        for (const s of sent.streams) {
          const link = live.links.get(s.path)
          if (link && s.tail_offset > link.acked_offset) link.acked_offset = s.tail_offset
        }
        await this.#endWake(live)
        return
      }
      record.wake!.lease_expires_at = this.#now() + record.config.lease_ttl_ms
      await this.#save(live)
      this.#armLease(live)
    })
  }

  // ---- Leases --------------------------------------------------------------------------------------

  #armLease(live: Live): void {
    this.#clearTimer(live, 'leaseTimer')
    const at = live.record.wake?.lease_expires_at
    if (this.#closed || at == null) return
    const { id, incarnation } = live.record
    live.leaseTimer = setTimeout(() => {
      live.leaseTimer = null
      this.#background(id, async () => {
        const current = this.#current(id, incarnation)
        const wake = current?.record.wake
        if (!current || !wake) return
        if (!this.#leaseLapsed(current)) {
          if (current.delivering === null && current.deliveryTimer === null) this.#armLease(current)
          return
        }
        // Expired: the holder and its token are void; pending work gets a new generation.
        await this.#endWake(current)
      })
    }, Math.max(0, at - this.#now()))
  }

  // ---- Stream events -------------------------------------------------------------------------------

  #onTail(name: string, tail: string, created: boolean): void {
    if (this.#closed || isReservedPath(name)) return
    // The store calls this in its commit path, after the append is durable: a throw would fail
    // that append's request and starve the other listeners. Report it instead.
    try {
      this.#noteTail(name, tail, created)
    } catch (e) {
      this.#onError(e)
    }
  }

  #noteTail(name: string, tail: string, created: boolean): void {
    const wakeStream = this.#isWakeStream(name)
    if (created && wakeStream) {
      // A wake stream created after its subscription's wake was issued: announce the wake now
      // (nothing else would, as later appends find a wake in flight).
      for (const live of this.#live.values()) {
        const wake = live.record.wake
        if (live.record.config.wake_stream === name && wake !== null && wake.holder === null) this.#announce(live, wake)
      }
    }
    for (const live of this.#live.values()) {
      let link = live.links.get(name)
      if (!link && this.#patternCovers(live, name)) {
        // A stream found by an append is linked before that append, so the append is pending.
        link = this.#link(live, name, false, BEFORE_FIRST_OFFSET)
      }
      if (!link) continue
      // A glob link made before the stream became a wake stream: it goes at the next save.
      if (!link.explicit && wakeStream) continue
      // A new stream under a linked name (deleted and created again; its offsets start over), or
      // a tail below the cursor (the same, seen late): deliver it from its start.
      // The reset is saved even when no wake follows (one is in flight): a restart could not
      // tell a longer new stream from the old one, and would skip its start.
      const reset = (created || tail < link.acked_offset) && link.acked_offset !== BEFORE_FIRST_OFFSET
      if (reset) link.acked_offset = BEFORE_FIRST_OFFSET
      const { id, incarnation } = live.record
      this.#background(id, async () => {
        const current = this.#current(id, incarnation)
        if (!current) return
        if (current.record.wake === null && firstPending(current.record, this.#tailOf) !== undefined) {
          await this.#wakeIfPending(current)
        } else if (reset) {
          await this.#save(current)
        }
      })
    }
  }

  // ---- Bookkeeping ---------------------------------------------------------------------------------

  /** Puts a record in memory, on open or create. */
  #adopt(record: SubscriptionRecord): Live {
    const live: Live = { record, links: new Map(record.links.map((l) => [l.path, l])), misses: new Set(), leaseTimer: null, deliveryTimer: null, delivering: null }
    this.#live.set(record.id, live)
    this.#wakeStreams = undefined
    return live
  }

  /** After a restart: relink streams missed in a crash, restart leases and deliveries, wake pending work. */
  async #resume(live: Live): Promise<void> {
    const record = live.record
    for (const link of live.links.values()) {
      // The stream was deleted and created again while the service was down (offsets restart):
      // no append event will tell, so start the new stream over here.
      const tail = this.#streams.tail(link.path)
      if (tail !== undefined && tail < link.acked_offset) link.acked_offset = BEFORE_FIRST_OFFSET
    }
    for (const path of this.#streams.names()) {
      if (!live.links.has(path) && this.#patternCovers(live, path)) this.#link(live, path, false, BEFORE_FIRST_OFFSET)
    }
    const wake = record.wake
    if (wake === null) {
      if (firstPending(record, this.#tailOf) !== undefined) await this.#wakeIfPending(live)
      return
    }
    if (record.config.type === 'webhook' && !(wake.delivered && record.retry === null)) {
      // Whether the last attempt got through is unknown: deliver again, on the recorded schedule.
      this.#scheduleDelivery(live)
    } else if (record.config.type === 'pull-wake' && wake.holder === null) {
      // The wake event may not have reached the wake stream before the restart; duplicates are harmless.
      this.#announce(live, wake)
    } else if (this.#leaseLapsed(live)) {
      await this.#endWake(live)
    } else {
      this.#armLease(live)
    }
  }

  #link(live: Live, path: string, explicit: boolean, ackedOffset: string): StreamLink {
    const existing = live.links.get(path)
    if (existing) {
      if (explicit) existing.explicit = true
      return existing
    }
    const link: StreamLink = { path, explicit, acked_offset: ackedOffset }
    live.links.set(path, link)
    live.record.links.push(link)
    return link
  }

  /**
   * Whether the subscription's pattern selects `path`: never a pull-wake subscription's wake
   * stream (its own, or another's: two subscriptions watching each other's wake streams would
   * wake each other for ever).
   */
  #patternCovers(live: Live, path: string): boolean {
    const { pattern } = live.record.config
    if (pattern === null || isReservedPath(path) || this.#isWakeStream(path) || live.misses.has(path)) return false
    if (globMatch(pattern, path)) return true
    if (live.misses.size >= MAX_REMEMBERED_MISSES) live.misses.clear()
    live.misses.add(path)
    return false
  }

  #isWakeStream(path: string): boolean {
    this.#wakeStreams ??= new Set([...this.#live.values()].flatMap((l) => (l.record.config.wake_stream === null ? [] : [l.record.config.wake_stream])))
    return this.#wakeStreams.has(path)
  }

  /** The live subscription `id` if it is still the incarnation a timer or request started with. */
  #current(id: string, incarnation: string): Live | undefined {
    const live = this.#live.get(id)
    return live && live.record.incarnation === incarnation && !this.#closed ? live : undefined
  }

  readonly #tailOf = (path: string): string | undefined => this.#streams.tail(path)

  /**
   * Persists the record; durable when the promise resolves. Glob links to streams that no longer
   * exist are dropped first: with a pattern over short-lived streams they would otherwise pile up
   * forever, in memory, on disk and in every response. A stream created again under that name is
   * linked afresh by its first append, from its start.
   */
  async #save(live: Live): Promise<void> {
    // Glob links to a stream that became a wake stream since go too (see `#patternCovers`).
    const gone = live.record.links.filter((link) => !link.explicit && (this.#streams.tail(link.path) === undefined || this.#isWakeStream(link.path)))
    if (gone.length > 0) {
      for (const link of gone) live.links.delete(link.path)
      live.record.links = live.record.links.filter((link) => live.links.get(link.path) === link)
    }
    await this.#store.save(live.record)
  }

  /** Runs background work in the subscription's queue; failures are reported, never thrown. */
  #background(id: string, task: () => Promise<void>): void {
    if (this.#closed) return
    this.#queue.run(id, task).catch((e: unknown) => this.#onError(e))
  }

  #clearTimer(live: Live, which: 'leaseTimer' | 'deliveryTimer'): void {
    const timer = live[which]
    if (timer !== null) clearTimeout(timer)
    live[which] = null
  }

  #stopActivity(live: Live): void {
    this.#clearTimer(live, 'leaseTimer')
    this.#clearTimer(live, 'deliveryTimer')
    live.delivering?.abort()
  }

  /** The subscription as GET and PUT report it (PROTOCOL.md section 6.3). */
  #describe(live: Live, root: string): Record<string, unknown> {
    const { record } = live
    const config: SubscriptionConfig = record.config
    return {
      id: record.id,
      subscription_id: record.id,
      type: config.type,
      pattern: config.pattern,
      streams: streamInfos(record, this.#tailOf).map(({ path, link_type, acked_offset }) => ({ path, link_type, acked_offset })),
      webhook:
        config.webhook === null
          ? null
          : { url: config.webhook.url, signing: { alg: 'ed25519', kid: this.#keys.kid, jwks_url: `${root}__ds/jwks.json` } },
      wake_stream: config.wake_stream,
      lease_ttl_ms: config.lease_ttl_ms,
      created_at: record.created_at,
      status: record.retry === null ? 'active' : 'failed',
      description: config.description,
    }
  }
}

function notFound(): SubscriptionResponse {
  return failure(404, 'SUBSCRIPTION_NOT_FOUND', 'no such subscription')
}

function fenced(): SubscriptionResponse {
  return failure(409, 'FENCED', 'the wake generation is stale')
}

/** `url` ending in a slash. */
function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`
}

/** Stream names remembered as not matching one subscription's pattern, at most. */
const MAX_REMEMBERED_MISSES = 10_000

/** Whether a plain-http webhook to this machine reaches the server at `rootUrl` (its port). */
function sameServer(hook: URL, rootUrl: string): boolean {
  const port = (u: URL) => u.port || (u.protocol === 'https:' ? '443' : '80')
  const root = new URL(rootUrl)
  return port(hook) === port(root)
}

/** Checks the body of a callback, ack or release; a message when it is malformed. */
function parseAckRequest(body: unknown, withAcks: boolean): AckRequest | string {
  if (!isObject(body)) return 'the request body must be a JSON object'
  const acks: AckRequest['acks'] = []
  if (withAcks && body.acks !== undefined && body.acks !== null) {
    if (!Array.isArray(body.acks)) return 'acks must be an array'
    for (const ack of body.acks) {
      const stream = isObject(ack) ? (ack.stream ?? ack.path) : undefined
      const offset = isObject(ack) ? ack.offset : undefined
      if (typeof stream !== 'string' || typeof offset !== 'string' || offset === '') return 'each ack needs a stream and an offset string'
      acks.push({ stream: normalizeStreamPath(stream), offset })
    }
  }
  if (body.done !== undefined && typeof body.done !== 'boolean') return 'done must be a boolean'
  return { wake_id: body.wake_id, generation: body.generation, acks, done: body.done === true }
}
