// One webhook delivery attempt and the backoff between failed ones (PROTOCOL.md section 7.1).

import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { LookupFunction } from 'node:net'

import { isLocalAddress } from './stream-subscription-webhook-url.js'

const FIRST_RETRY_MS = 1_000
const MAX_RETRY_MS = 60_000
const JITTER = 0.2
/** An attempt that takes longer than this counts as failed. */
const ATTEMPT_TIMEOUT_MS = 30_000
/** The most of a receiver's answer that is read: `{"done": true}` needs a few bytes. */
export const MAX_RESPONSE_BYTES = 64 * 1024

/** What a delivery attempt came to. */
export type DeliveryOutcome =
  | { delivered: true; /** The receiver answered `{"done": true}`. */ done: boolean }
  | { delivered: false; reason: string }

/**
 * POSTs a signed wake notification. Redirects are not followed (a redirect could lead to an
 * address the URL check would have refused), so a 3xx counts as a failure, like any non-2xx
 * status, a network error or a timeout. Over https the host name must resolve to public
 * addresses only ({@link publicAddressLookup}); plain http is only ever allowed to this machine.
 * Never rejects.
 */
export async function postWebhook(url: string, body: string, signature: string, signal: AbortSignal): Promise<DeliveryOutcome> {
  try {
    return await attempt(url, body, signature, signal)
  } catch (e) {
    // A request that cannot even be made (a malformed stored URL) is a failed attempt too.
    return { delivered: false, reason: e instanceof Error ? e.message : String(e) }
  }
}

function attempt(url: string, body: string, signature: string, signal: AbortSignal): Promise<DeliveryOutcome> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ delivered: false, reason: 'aborted' })
    const target = new URL(url)
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest
    const request = send(target, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'webhook-signature': signature },
      lookup: target.protocol === 'https:' ? publicAddressLookup : undefined,
    })
    let settled = false
    const finish = (outcome: DeliveryOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', abort)
      request.destroy()
      resolve(outcome)
    }
    const abort = (): void => finish({ delivered: false, reason: 'aborted' })
    const timer = setTimeout(() => finish({ delivered: false, reason: `no answer within ${ATTEMPT_TIMEOUT_MS} ms` }), ATTEMPT_TIMEOUT_MS)
    signal.addEventListener('abort', abort)
    request.on('error', (e) => finish({ delivered: false, reason: e.message }))
    request.on('response', (response) => {
      const status = response.statusCode ?? 0
      if (status < 200 || status > 299) return finish({ delivered: false, reason: `HTTP ${status}` })
      const chunks: Buffer[] = []
      let length = 0
      response.on('data', (chunk: Buffer) => {
        length += chunk.length
        // An answer too long to be read whole is not `{"done": true}`; the rest is not read.
        if (length > MAX_RESPONSE_BYTES) return finish({ delivered: true, done: false })
        chunks.push(chunk)
      })
      response.on('end', () => finish({ delivered: true, done: isDone(Buffer.concat(chunks).toString('utf8')) }))
      response.on('error', (e) => finish({ delivered: false, reason: e.message }))
    })
    request.end(body)
  })
}

/** Whether a receiver's answer is JSON `{"done": true}`; any other 2xx answer is just delivered. */
function isDone(text: string): boolean {
  try {
    const parsed = JSON.parse(text) as { done?: unknown } | null
    return typeof parsed === 'object' && parsed !== null && parsed.done === true
  } catch {
    return false
  }
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for outgoing webhook connections that fails when the host name resolves to any
 * private, loopback or link-local address. The URL check at subscription time only sees the
 * name; this checks the addresses actually connected to, at every attempt, so neither a name
 * that points inside the network nor one re-pointed there later (DNS rebinding) is followed.
 */
export const publicAddressLookup = ((hostname: string, options: LookupOptions, callback: LookupCallback): void => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, [])
    const refused = addresses.find((a) => isLocalAddress(a.address))
    const first = addresses[0]
    if (refused !== undefined || first === undefined) {
      const why = refused === undefined ? 'has no address' : `resolves to ${refused.address}, a private, loopback or link-local address`
      return callback(Object.assign(new Error(`${hostname} ${why}`), { code: 'ENOTPUBLIC' }), [])
    }
    if (options.all === true) return callback(null, addresses)
    callback(null, first.address, first.family)
  })
}) as unknown as LookupFunction

/**
 * Delay before the next attempt after `failures` failed ones in a row: 1 s doubling up to 60 s,
 * each ±20% at random so that receivers recovering from an outage are not hit in lockstep.
 */
export function retryDelayMs(failures: number, random: () => number = Math.random): number {
  const base = Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS)
  return Math.round(base * (1 + JITTER * (random() * 2 - 1)))
}
