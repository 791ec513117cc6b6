// The HTTP surface of the reserved `__ds` prefix, independent of any server: which operation a
// request path names, and the shapes of the responses (JSON bodies, `{"error": {...}}` errors).

/** A response for the HTTP server to write. */
export interface SubscriptionResponse {
  status: number
  headers?: Record<string, string>
  body?: string
}

/** Request headers as Node's `IncomingMessage.headers` has them. */
export type RequestHeaders = Record<string, string | string[] | undefined>

/** The operations under `__ds/`, by path. */
export type Route =
  | { kind: 'jwks' }
  | { kind: 'subscription'; id: string }
  | { kind: 'streams'; id: string }
  | { kind: 'stream'; id: string; path: string }
  | { kind: 'callback' | 'claim' | 'ack' | 'release'; id: string }

const ACTIONS = new Set(['callback', 'claim', 'ack', 'release'])

/**
 * The route a path names, given the raw (still percent-encoded) path after `__ds/`; `undefined`
 * when it names nothing, or `'bad-encoding'` for malformed percent-escapes. The stream path in
 * `subscriptions/:id/streams/:path` may be one encoded segment (`events%2Fx`) or several.
 */
export function parseRoute(rest: string): Route | 'bad-encoding' | undefined {
  const query = rest.indexOf('?')
  const parts = (query < 0 ? rest : rest.slice(0, query)).split('/')
  if (parts.length === 1 && parts[0] === 'jwks.json') return { kind: 'jwks' }
  if (parts[0] !== 'subscriptions' || parts.length < 2 || parts[1] === '') return undefined
  try {
    const id = decodeURIComponent(parts[1]!)
    const tail = parts.slice(2)
    if (tail.length === 0) return { kind: 'subscription', id }
    if (tail[0] === 'streams' && tail.length === 1) return { kind: 'streams', id }
    if (tail[0] === 'streams') return { kind: 'stream', id, path: decodeURIComponent(tail.slice(1).join('/')) }
    if (tail.length === 1 && ACTIONS.has(tail[0]!)) return { kind: tail[0] as 'callback', id }
    return undefined
  } catch {
    return 'bad-encoding'
  }
}

/** The methods each route accepts. */
export function allowedMethods(route: Route): string[] {
  switch (route.kind) {
    case 'jwks':
      return ['GET', 'HEAD']
    case 'subscription':
      return ['GET', 'PUT', 'DELETE']
    case 'stream':
      return ['DELETE']
    default:
      return ['POST']
  }
}

/** A JSON response. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): SubscriptionResponse {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }
}

/** A `{"error": {"code", "message", ...}}` response. */
export function failure(status: number, code: string, message: string, extra: Record<string, unknown> = {}): SubscriptionResponse {
  return json(status, { error: { code, message, ...extra } })
}

/** `204 No Content`. */
export function noContent(): SubscriptionResponse {
  return { status: 204 }
}

/** A header's value, looked up case-insensitively; the first one when repeated. */
export function header(headers: RequestHeaders, name: string): string | undefined {
  const wanted = name.toLowerCase()
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted) continue
    return Array.isArray(value) ? value[0] : value
  }
  return undefined
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(headers: RequestHeaders): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header(headers, 'authorization') ?? '')
  return match?.[1]
}

/** Parses a JSON request body; `undefined` when it is not JSON. An empty body is `{}`. */
export function parseJsonBody(body: Buffer): unknown {
  const text = body.toString('utf8')
  if (text.trim() === '') return {}
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}
