// Wake tokens: the bearer credentials handed out with a webhook delivery (callback_token) or a
// pull-wake claim (token). Each is an HMAC-signed claim set scoped to one subscription
// incarnation, generation and wake (PROTOCOL.md sections 7.3, 12.9), so the server keeps no
// token table: a token is valid while its claims still match the subscription's current wake.

import { createHmac, timingSafeEqual } from 'node:crypto'

/** What a wake token vouches for. */
export interface WakeTokenClaims {
  /** Subscription id. */
  sub: string
  /** Subscription incarnation: a token for a deleted and re-created subscription is void. */
  inc: string
  /** Generation of the wake. */
  gen: number
  /** The wake's id. */
  wid: string
  /** Expiry, Unix seconds. */
  exp: number
}

/** How long a token lives at most; generation fencing usually voids it much sooner. */
export const TOKEN_LIFETIME_MS = 24 * 60 * 60 * 1000

function mac(secret: Buffer, payload: string): string {
  return createHmac('sha256', secret).update(payload).digest('base64url')
}

/** `base64url(JSON claims).base64url(HMAC-SHA256)`. */
export function issueWakeToken(secret: Buffer, claims: WakeTokenClaims): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  return `${payload}.${mac(secret, payload)}`
}

/** The claims of a well-signed, unexpired token, or the error code to answer with. */
export function verifyWakeToken(secret: Buffer, token: string, nowMs: number): WakeTokenClaims | 'TOKEN_INVALID' | 'TOKEN_EXPIRED' {
  const dot = token.indexOf('.')
  if (dot < 0) return 'TOKEN_INVALID'
  const payload = token.slice(0, dot)
  const given = Buffer.from(token.slice(dot + 1))
  const expected = Buffer.from(mac(secret, payload))
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'TOKEN_INVALID'
  let claims: WakeTokenClaims
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as WakeTokenClaims
  } catch {
    return 'TOKEN_INVALID'
  }
  if (typeof claims !== 'object' || claims === null || typeof claims.exp !== 'number') return 'TOKEN_INVALID'
  if (Math.floor(nowMs / 1000) > claims.exp) return 'TOKEN_EXPIRED'
  return claims
}
