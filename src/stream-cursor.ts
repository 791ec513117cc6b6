// Stream cursors for CDN collapsing (PROTOCOL.md 10.1): the number of 20-second intervals since
// 2024-10-09T00:00:00Z, always moved past the client's echoed cursor so caches cannot loop.

import { randomInt } from 'node:crypto'

const EPOCH = Date.UTC(2024, 9, 9)
const INTERVAL_MS = 20_000
/** Jitter of 1–3600 seconds, in intervals. */
const MAX_JITTER = 3600_000 / INTERVAL_MS

/** The cursor for a live response, given the one the client echoed. */
export function nextCursor(echoed: string | undefined, now = Date.now()): string {
  const current = BigInt(Math.floor((now - EPOCH) / INTERVAL_MS))
  // Any length a client may echo back (one we moved ahead may pass 2^53): compared exactly.
  const previous = echoed !== undefined && /^\d{1,64}$/.test(echoed) ? BigInt(echoed) : -1n
  return String(previous >= current ? previous + BigInt(randomInt(1, MAX_JITTER + 1)) : current)
}
