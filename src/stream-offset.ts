// Stream offsets: a position in the stream's byte space, as a fixed-width decimal so that string
// order is position order (the protocol lets clients compare offsets lexicographically). The 32
// digits are written as two groups of 16, `0000000000000000_0000000000000042`, the shape the
// reference servers use, so clients and tools that expect it keep working.

import { StreamError } from './stream-error.js'

const GROUP = 1e16
const OFFSET = /^(\d{16})_(\d{16})$/

/** Largest position an offset can name (well above any real stream). */
export const MAX_POSITION = Number.MAX_SAFE_INTEGER

/**
 * The offset token for a byte position.
 *
 * @example
 * ```ts
 * formatOffset(42) // '0000000000000000_0000000000000042'
 * ```
 */
export function formatOffset(position: number): string {
  const high = Math.floor(position / GROUP)
  return `${String(high).padStart(16, '0')}_${String(position - high * GROUP).padStart(16, '0')}`
}

/**
 * A parsed `offset` parameter: the stream start, the current tail, or a position.
 *
 * @example
 * ```ts
 * const from: OffsetRequest = { kind: 'position', position: 42 }
 * ```
 */
export type OffsetRequest = { kind: 'start' } | { kind: 'now' } | { kind: 'position'; position: number }

/**
 * Parse an offset given by a client (`-1`, `now`, or a token we minted); `INVALID_OFFSET` otherwise.
 *
 * @example
 * ```ts
 * parseOffset('-1') // { kind: 'start' }
 * ```
 */
export function parseOffset(text: string): OffsetRequest {
  if (text === '-1') return { kind: 'start' }
  if (text === 'now') return { kind: 'now' }
  return { kind: 'position', position: parsePosition(text) }
}

/** The position named by a minted offset token; `INVALID_OFFSET` if `text` is not one. */
export function parsePosition(text: string): number {
  const m = OFFSET.exec(text)
  if (m === null) throw new StreamError('INVALID_OFFSET', `malformed offset ${JSON.stringify(text.slice(0, 64))}`)
  const position = Number(m[1]) * GROUP + Number(m[2])
  if (position > MAX_POSITION) throw new StreamError('INVALID_OFFSET', 'offset out of range')
  return position
}
