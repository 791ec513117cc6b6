// The Durable Streams HTTP server over a StreamStore: routing, request bodies with a size limit,
// the protocol's headers, catch-up and long-poll reads. SSE lives in stream-sse.ts, the reserved
// subscription API in stream-subscriptions.ts.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { SturdyError } from './errors.js'
import { StreamError } from './stream-error.js'
import { StreamStore, type ReadResult, type StreamInfo, type StreamStoreOptions } from './stream-store.js'
import { closedHeader, expiryHeaders, forkHeaders, header, producerHeaders, readQuery, type ReadQuery } from './stream-headers.js'
import { nextCursor } from './stream-cursor.js'
import { jsonArray } from './stream-json.js'
import { serveSse } from './stream-sse.js'
import { Subscriptions } from './stream-subscriptions.js'

/**
 * Options of {@link createStreamServer} (and of the {@link StreamStore} underneath).
 *
 * @example
 * ```ts
 * await createStreamServer({ dir: './data', port: 0, maxBodyBytes: 1 << 20, longPollTimeoutMs: 10_000 })
 * ```
 */
export interface StreamServerOptions extends StreamStoreOptions {
  /** Data directory. */
  dir: string
  /** Default `127.0.0.1`. */
  host?: string
  /** Default 4437 (the protocol's port); 0 picks a free one. */
  port?: number
  /** URL path under which streams live. Default `/v1/stream/`. */
  root?: string
  /** Largest request body; larger ones get 413. Default 8 MiB. */
  maxBodyBytes?: number
  /** How long a long-poll waits for data before answering 204. Default 20 s. */
  longPollTimeoutMs?: number
  /** How long an SSE response stays open before the server closes it (clients reconnect). Default 60 s. */
  sseMaxMs?: number
  /** Serve the reserved subscription / webhook API. Default true. */
  subscriptions?: boolean
  /**
   * Accept plain-http webhooks to this machine (`http://localhost`, `http://127.0.0.x`). Default:
   * only when `host` is a loopback address, so a server others can reach cannot be made to post
   * to services on its own machine.
   */
  localWebhooks?: boolean
  /**
   * The server's URL as clients reach it (`https://streams.example.com`), when that is not the
   * address it listens on (behind a proxy, on 0.0.0.0): used in `Location` headers and in the
   * callback URLs of webhook deliveries. Default: the listening address.
   */
  publicUrl?: string
  /**
   * A connection with no request in progress for this long is closed, and so is one whose
   * response has made no progress that long because its client stopped reading. Default 10 s.
   */
  idleTimeoutMs?: number
}

/**
 * A running stream server.
 *
 * @example
 * ```ts
 * const server = await createStreamServer({ dir: './data', port: 0 })
 * await fetch(server.streamsUrl + 'hello', { method: 'PUT' })
 * await server.close()
 * ```
 */
export interface StreamServer {
  /** `http://host:port`. */
  readonly url: string
  /** Absolute URL of the stream root, e.g. `http://127.0.0.1:4437/v1/stream/`. */
  readonly streamsUrl: string
  /** The store it serves. */
  readonly store: StreamStore
  /**
   * Stop accepting requests, end live reads, close the store. Responses still being sent after
   * a grace period of 2 s (a client that stopped reading) are cut.
   */
  close(): Promise<void>
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Cross-Origin-Resource-Policy': 'cross-origin',
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers':
    'Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, ETag, Location, Content-Type, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq',
}
const PREFLIGHT_HEADERS = {
  'Access-Control-Allow-Methods': 'GET, HEAD, PUT, POST, DELETE, OPTIONS',
  'Access-Control-Allow-Headers':
    'Content-Type, Authorization, If-None-Match, Stream-TTL, Stream-Expires-At, Stream-Seq, Stream-Closed, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, Producer-Id, Producer-Epoch, Producer-Seq',
  'Access-Control-Max-Age': '86400',
}
const CATCH_UP_CACHE = 'public, max-age=60, stale-while-revalidate=300'
/** Whether `host` (a listen address) is reachable from this machine only. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** The longest delay a Node timer takes; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Refuse option values the server would misuse, before the store is opened: a timer beyond
 * Node's limit fires at once (every long-poll would answer 204 straight away), and a port or
 * size that is not a whole number fails deep inside `listen` or never matches.
 */
function checkServerOptions(options: StreamServerOptions): void {
  if (options === null || typeof options !== 'object') throw new StreamError('INVALID_ARG', 'options must be an object')
  const whole = (name: keyof StreamServerOptions, min: number, max: number) => {
    const v = options[name]
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max)) {
      throw new StreamError('INVALID_ARG', `${name} must be an integer from ${min} to ${max}, got ${String(v)}`)
    }
  }
  whole('port', 0, 65535)
  whole('maxBodyBytes', 1, Number.MAX_SAFE_INTEGER)
  whole('longPollTimeoutMs', 1, MAX_TIMER_MS)
  whole('sseMaxMs', 1, MAX_TIMER_MS)
  whole('idleTimeoutMs', 1, MAX_TIMER_MS)
  if (options.host !== undefined && typeof options.host !== 'string') throw new StreamError('INVALID_ARG', 'host must be a string')
  if (options.localWebhooks !== undefined && typeof options.localWebhooks !== 'boolean') throw new StreamError('INVALID_ARG', 'localWebhooks must be a boolean')
  if (options.publicUrl !== undefined) {
    let u: URL | undefined
    try {
      u = new URL(String(options.publicUrl))
    } catch {
      u = undefined
    }
    if (typeof options.publicUrl !== 'string') u = undefined
    if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.search !== '' || u.hash !== '') {
      throw new StreamError('INVALID_ARG', 'publicUrl must be an absolute http(s) URL without query or fragment')
    }
  }
}

/** A connection idle this long is closed (see `idleTimeoutMs`). */
const IDLE_CONNECTION_MS = 10_000
/** How long `close` lets responses in progress finish before it closes their connections. */
const CLOSE_GRACE_MS = 2_000

/**
 * Start a Durable Streams server on a {@link StreamStore} in `dir`: PUT / POST / GET / HEAD /
 * DELETE on `root` + stream name, catch-up, long-poll and SSE reads, ETags, CORS, and the reserved
 * subscription API. Every acknowledged write is on stable storage.
 *
 * @example
 * ```ts
 * const server = await createStreamServer({ dir: './data', port: 4437 })
 * console.log(`streams at ${server.streamsUrl}`)
 * // later
 * await server.close()
 * ```
 */
export async function createStreamServer(options: StreamServerOptions): Promise<StreamServer> {
  checkServerOptions(options)
  const root = options.root ?? '/v1/stream/'
  const publicUrl = options.publicUrl?.replace(/\/+$/, '')
  if (typeof root !== 'string' || !root.startsWith('/') || !root.endsWith('/')) throw new StreamError('INVALID_ARG', 'root must start and end with "/"')
  const store = await StreamStore.open(options.dir, options)
  let subscriptions: Subscriptions | undefined
  try {
    if (options.subscriptions !== false) {
      const localWebhooks = options.localWebhooks ?? isLoopback(options.host ?? '127.0.0.1')
      const rootUrl = publicUrl === undefined ? undefined : publicUrl + root
      subscriptions = await Subscriptions.open({ dir: join(options.dir, 'subscriptions'), streams: store, localWebhooks, ...(rootUrl ? { rootUrl } : {}) })
    }
  } catch (e) {
    await store.close()
    throw e
  }
  const ctx: Context = {
    store,
    subscriptions,
    root,
    maxBodyBytes: options.maxBodyBytes ?? 8 << 20,
    longPollTimeoutMs: options.longPollTimeoutMs ?? 20_000,
    sseMaxMs: options.sseMaxMs ?? 60_000,
    closing: new AbortController(),
    base: '',
  }
  /** Requests in progress per connection (pipelined requests may overlap). */
  const busy = new Map<Socket, number>()
  const idleMs = options.idleTimeoutMs ?? IDLE_CONNECTION_MS
  // Node checks the header and request timeouts only this often (30 s by default): checked every
  // second, a slow client is cut off within a second of them.
  const server = createServer({ connectionsCheckingInterval: 1_000 }, (req, res) => {
    const socket = req.socket
    busy.set(socket, (busy.get(socket) ?? 0) + 1)
    res.on('close', () => {
      const n = (busy.get(socket) ?? 1) - 1
      if (n > 0) busy.set(socket, n)
      else busy.delete(socket)
    })
    handle(ctx, req, res).catch((e: unknown) => fail(res, e))
  })
  // Slow or abandoned clients: bound how long a request may take to arrive, and close connections
  // that sit idle with no request in progress (long-polls and SSE responses are in progress) or
  // whose client stopped reading the response.
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  // A kept-alive connection between requests is idle too: Node closes it after this.
  server.keepAliveTimeout = idleMs
  // A 'timeout' listener on the server replaces Node's default of destroying the socket. It fires
  // after this long without traffic: fine for a long-poll or SSE response waiting for data, not
  // for one whose client stopped reading (bytes left unsent), which would hold its response in
  // memory and the server open for good.
  server.setTimeout(idleMs, (socket: Socket) => {
    if (!busy.has(socket) || socket.writableLength > 0) socket.destroy()
  })
  const shutDown = async () => {
    try {
      await subscriptions?.close()
    } finally {
      await store.close()
    }
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port ?? 4437, options.host ?? '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (e) {
    // Nothing else will release the store's locks and the subscriptions' timers. The failure to
    // listen is what the caller hears about, whatever the shutdown meets.
    await shutDown().catch(() => {})
    throw e
  }
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${host}:${address.port}`
  ctx.base = publicUrl ?? url
  subscriptions?.servedAt(ctx.base + root, url)
  return {
    url,
    streamsUrl: url + root,
    store,
    async close() {
      ctx.closing.abort()
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
        // Live reads end at once on `closing`, writes in flight within moments; a response its
        // client is not reading would keep the server open, so after a grace period it is cut.
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref()
      })
      await shutDown()
    },
  }
}

interface Context {
  store: StreamStore
  subscriptions: Subscriptions | undefined
  root: string
  maxBodyBytes: number
  longPollTimeoutMs: number
  sseMaxMs: number
  /** Aborted when the server closes: ends long-polls and SSE responses. */
  closing: AbortController
  base: string
}

async function handle(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
  const method = req.method ?? ''
  if (method === 'OPTIONS') {
    drain(req)
    res.writeHead(204, PREFLIGHT_HEADERS).end()
    return
  }
  let url: URL
  try {
    url = new URL(req.url ?? '/', 'http://localhost')
  } catch {
    return reply(res, 400, 'malformed request target', req)
  }
  if (!url.pathname.startsWith(ctx.root)) return reply(res, 404, 'not a stream path', req)
  let name: string
  try {
    name = decodeURIComponent(url.pathname.slice(ctx.root.length))
  } catch {
    return reply(res, 400, 'malformed stream path', req)
  }
  if (name.length === 0 || name.includes('\0')) return reply(res, 404, 'not a stream path', req)
  if (name === '__ds' || name.startsWith('__ds/')) return subscriptionRequest(ctx, req, res, url)
  switch (method) {
    case 'PUT':
      return create(ctx, name, req, res)
    case 'POST':
      return append(ctx, name, req, res)
    case 'GET':
      drain(req)
      return read(ctx, name, url, req, res)
    case 'HEAD':
      drain(req)
      return head(ctx, name, res)
    case 'DELETE':
      drain(req)
      await ctx.store.delete(name)
      res.writeHead(204).end()
      return
    default:
      res.setHeader('Allow', 'GET, HEAD, PUT, POST, DELETE, OPTIONS')
      return reply(res, 405, `method ${method} is not allowed`, req)
  }
}

async function create(ctx: Context, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const expiry = expiryHeaders(req.headers)
  const fork = forkHeaders(req.headers)
  const contentType = header(req.headers, 'content-type')
  let forkFrom: string | undefined
  if (fork.from !== undefined) {
    const path = fork.from.startsWith(ctx.root) ? fork.from.slice(ctx.root.length) : undefined
    if (path === undefined || path.length === 0) throw new StreamError('NOT_FOUND', `no fork source ${JSON.stringify(fork.from.slice(0, 256))}`)
    forkFrom = safeDecode(path)
  }
  const data = await body(ctx, req)
  const { created, info } = await ctx.store.create(name, {
    ...expiry,
    ...(contentType !== undefined ? { contentType } : {}),
    ...(closedHeader(req.headers) ? { closed: true } : {}),
    ...(data.length > 0 ? { data } : {}),
    ...(forkFrom !== undefined ? { forkFrom } : {}),
    ...(fork.offset !== undefined ? { forkOffset: fork.offset } : {}),
    ...(fork.subOffset !== undefined ? { forkSubOffset: fork.subOffset } : {}),
  })
  const headers: Record<string, string> = { ...infoHeaders(info) }
  if (created) headers.Location = ctx.base + ctx.root + encodeName(name)
  res.writeHead(created ? 201 : 200, headers).end()
}

async function append(ctx: Context, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const producer = producerHeaders(req.headers)
  const close = closedHeader(req.headers)
  const seq = header(req.headers, 'stream-seq')
  const contentType = header(req.headers, 'content-type')
  const data = await body(ctx, req)
  const r = await ctx.store.append(name, data, {
    close,
    ...(contentType !== undefined ? { contentType } : {}),
    ...(seq !== undefined ? { seq } : {}),
    ...(producer !== undefined ? { producer } : {}),
  })
  const headers: Record<string, string> = { 'Stream-Next-Offset': r.nextOffset }
  if (r.closed) headers['Stream-Closed'] = 'true'
  if (r.producer !== undefined) {
    headers['Producer-Epoch'] = String(r.producer.epoch)
    headers['Producer-Seq'] = String(r.producer.seq)
  }
  // 200 only when a producer's request stored new data; retries and close-only requests get 204.
  res.writeHead(producer !== undefined && r.outcome === 'appended' && data.length > 0 ? 200 : 204, headers).end()
}

async function head(ctx: Context, name: string, res: ServerResponse): Promise<void> {
  const info = await ctx.store.head(name)
  res.writeHead(200, { ...infoHeaders(info), 'Cache-Control': 'no-store' }).end()
}

async function read(ctx: Context, name: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const query = readQuery(url.searchParams)
  if (query.live === 'sse') {
    return serveSse(ctx.store, name, query, res, { maxMs: ctx.sseMaxMs, closing: ctx.closing.signal })
  }
  if (query.live === 'long-poll') return longPoll(ctx, name, query, res)
  const r = await ctx.store.read(name, query.offset)
  if (query.offset.kind === 'now') {
    res.writeHead(200, { ...readHeaders(r), 'Cache-Control': 'no-store' }).end(r.json ? '[]' : undefined)
    return
  }
  const etag = etagOf(r)
  if (etagMatches(header(req.headers, 'if-none-match'), etag)) {
    res.writeHead(304, { ETag: etag, 'Stream-Next-Offset': r.nextOffset }).end()
    return
  }
  // An empty answer at the tail of an open stream changes as soon as data arrives: not cacheable.
  const cache = r.data.length === 0 && !r.closed ? 'no-store' : CATCH_UP_CACHE
  res.writeHead(200, { ...readHeaders(r), ETag: etag, 'Cache-Control': cache }).end(r.json ? jsonArray(r.data) : r.data)
}

async function longPoll(ctx: Context, name: string, query: ReadQuery, res: ServerResponse): Promise<void> {
  const store = ctx.store
  const position = await store.position(name, query.offset)
  const abort = new AbortController()
  const onClose = () => abort.abort()
  res.on('close', onClose)
  ctx.closing.signal.addEventListener('abort', onClose)
  // Gone (or closing) already, before the listeners were attached: do not wait at all.
  if (res.destroyed || ctx.closing.signal.aborted) abort.abort()
  try {
    await store.wait(name, position, ctx.longPollTimeoutMs, abort.signal)
  } finally {
    res.off('close', onClose)
    ctx.closing.signal.removeEventListener('abort', onClose)
  }
  if (res.destroyed) return
  const offset = { kind: 'position' as const, position }
  const r = await store.read(name, offset)
  const cursor = nextCursor(query.cursor)
  if (r.data.length === 0) {
    const headers: Record<string, string> = { 'Stream-Next-Offset': r.nextOffset, 'Stream-Up-To-Date': 'true', 'Cache-Control': 'no-store' }
    if (r.closed) headers['Stream-Closed'] = 'true'
    else headers['Stream-Cursor'] = cursor
    res.writeHead(204, headers).end()
    return
  }
  const headers = { ...readHeaders(r), ETag: etagOf(r), 'Cache-Control': CATCH_UP_CACHE } as Record<string, string>
  if (!r.closed) headers['Stream-Cursor'] = cursor
  res.writeHead(200, headers).end(r.json ? jsonArray(r.data) : r.data)
}

function infoHeaders(info: StreamInfo): Record<string, string> {
  const h: Record<string, string> = { 'Content-Type': info.contentType, 'Stream-Next-Offset': info.nextOffset }
  if (info.closed) h['Stream-Closed'] = 'true'
  if (info.ttlSeconds !== undefined) h['Stream-TTL'] = String(info.ttlSeconds)
  if (info.expiresAt !== undefined) h['Stream-Expires-At'] = info.expiresAt
  return h
}

function readHeaders(r: ReadResult): Record<string, string> {
  const h: Record<string, string> = { 'Stream-Next-Offset': r.nextOffset }
  if (r.upToDate) h['Stream-Up-To-Date'] = 'true'
  if (r.closed) h['Stream-Closed'] = 'true'
  h['Content-Type'] = r.contentType
  return h
}

/** Varies with the range served and with closure, so a cached tail never hides EOF. */
function etagOf(r: ReadResult): string {
  return `"${r.uid}:${r.startOffset}:${r.nextOffset}${r.closed ? ':c' : ''}"`
}

/**
 * `If-None-Match` by weak comparison (RFC 9110 section 13.1.2): `*`, or a list of tags, any of
 * them `W/` (proxies that compress weaken the tags they pass on).
 */
function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch.trim() === '*') return true
  // Our tags hold no commas, so a list splits on them; an item that is not one tag matches nothing.
  return ifNoneMatch.split(',').some((item) => /^(W\/)?"[^"]*"$/.test(item.trim()) && item.trim().replace(/^W\//, '') === etag)
}

/** Read the request body, refusing more than `maxBodyBytes` (413). */
async function body(ctx: Context, req: IncomingMessage): Promise<Buffer> {
  const declared = Number(header(req.headers, 'content-length') ?? NaN)
  if (declared > ctx.maxBodyBytes) throw new StreamError('TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${ctx.maxBodyBytes}`)
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of req) {
    length += (chunk as Buffer).length
    if (length > ctx.maxBodyBytes) throw new StreamError('TOO_LARGE', `body exceeds the limit of ${ctx.maxBodyBytes} bytes`)
    chunks.push(chunk as Buffer)
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)
}

async function subscriptionRequest(ctx: Context, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  if (ctx.subscriptions === undefined) return reply(res, 404, 'subscriptions are not enabled', req)
  const data = await body(ctx, req)
  const rest = url.pathname.slice(ctx.root.length + '__ds/'.length)
  const r = await ctx.subscriptions.handle(req.method ?? '', rest, req.headers, data, ctx.base + ctx.root)
  res.writeHead(r.status, r.headers ?? {}).end(r.body)
}

/** Answer with an error; an unread body is discarded and the connection closed after. */
function reply(res: ServerResponse, status: number, message: string, req?: IncomingMessage, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  if (req !== undefined && !req.complete) res.setHeader('Connection', 'close')
  res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end(res.req.method === 'HEAD' ? undefined : message + '\n')
}

function fail(res: ServerResponse, e: unknown): void {
  // The client went away mid-request: nobody to answer, nothing to report.
  if (res.destroyed || res.socket === null || res.socket.destroyed || (e as NodeJS.ErrnoException)?.code === 'ECONNRESET') {
    res.destroy()
    return
  }
  if (e instanceof StreamError) return reply(res, e.status, e.message, res.req, { ...e.headers })
  if (e instanceof SturdyError) return reply(res, e.code === 'ERR_CLOSED' ? 503 : 500, `storage error: ${e.code}`, res.req)
  console.error('sturdy stream server: unexpected error', e)
  reply(res, 500, 'internal error', res.req)
}

function drain(req: IncomingMessage): void {
  req.resume()
}

function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path)
  } catch {
    throw new StreamError('INVALID_ARG', 'malformed fork source path')
  }
}

function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/')
}
