// One webhook delivery attempt and the backoff between failed ones (PROTOCOL.md section 7.1).

const FIRST_RETRY_MS = 1_000
const MAX_RETRY_MS = 60_000
const JITTER = 0.2
/** An attempt that takes longer than this counts as failed. */
const ATTEMPT_TIMEOUT_MS = 30_000

/** What a delivery attempt came to. */
export type DeliveryOutcome =
  | { delivered: true; /** The receiver answered `{"done": true}`. */ done: boolean }
  | { delivered: false; reason: string }

/**
 * POSTs a signed wake notification. Redirects are not followed (a redirect could lead to an
 * address the URL check would have refused), so a 3xx counts as a failure, like any non-2xx
 * status, a network error or a timeout. Never rejects.
 */
export async function postWebhook(url: string, body: string, signature: string, signal: AbortSignal): Promise<DeliveryOutcome> {
  const timeout = new AbortController()
  const timer = setTimeout(() => timeout.abort(), ATTEMPT_TIMEOUT_MS)
  const abort = (): void => timeout.abort()
  signal.addEventListener('abort', abort)
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-signature': signature },
      body,
      redirect: 'manual',
      signal: timeout.signal,
    })
    const text = await response.text()
    if (response.status < 200 || response.status > 299) return { delivered: false, reason: `HTTP ${response.status}` }
    let done = false
    try {
      const parsed = JSON.parse(text) as { done?: unknown } | null
      done = typeof parsed === 'object' && parsed !== null && parsed.done === true
    } catch {
      // Any 2xx counts as delivered; only a JSON `{"done": true}` finishes the wake.
    }
    return { delivered: true, done }
  } catch (e) {
    return { delivered: false, reason: e instanceof Error ? e.message : String(e) }
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', abort)
  }
}

/**
 * Delay before the next attempt after `failures` failed ones in a row: 1 s doubling up to 60 s,
 * each ±20% at random so that receivers recovering from an outage are not hit in lockstep.
 */
export function retryDelayMs(failures: number, random: () => number = Math.random): number {
  const base = Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, failures - 1), MAX_RETRY_MS)
  return Math.round(base * (1 + JITTER * (random() * 2 - 1)))
}
