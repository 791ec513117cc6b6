// Stream paths and the glob patterns subscriptions select them with (PROTOCOL.md section 6.2):
// whole path segments only, `*` for exactly one segment and `**` for zero or more.

/**
 * A stream-root-relative path without leading or trailing slashes: `"/events/a/"` → `"events/a"`.
 * Subscriptions key their links by this form so `events/a` and `/events/a` are one stream.
 */
export function normalizeStreamPath(path: string): string {
  return path.replace(/^\/+/, '').replace(/\/+$/, '')
}

/** Whether a root-relative path lies under the reserved `__ds` control prefix. */
export function isReservedPath(path: string): boolean {
  return path === '__ds' || path.startsWith('__ds/')
}

/**
 * Whether `path` matches `pattern`. Both are split on `/`; a pattern segment `*` matches any
 * one segment, `**` any run of segments (none included), and any other segment only itself.
 *
 * @example
 * ```ts
 * globMatch('events/*', 'events/a')      // true
 * globMatch('events/*', 'events/a/b')    // false
 * globMatch('events/**', 'events')       // true
 * globMatch('**', 'any/depth/at/all')    // true
 * ```
 */
export function globMatch(pattern: string, path: string): boolean {
  const want = normalizeStreamPath(pattern).split('/')
  const have = normalizeStreamPath(path).split('/')
  return matchFrom(want, 0, have, 0)
}

function matchFrom(want: readonly string[], w: number, have: readonly string[], h: number): boolean {
  for (; w < want.length; w++, h++) {
    if (want[w] === '**') {
      // Collapse runs of `**` so the backtracking stays linear in the common cases.
      while (want[w + 1] === '**') w++
      if (w === want.length - 1) return true
      for (let skip = h; skip <= have.length; skip++) {
        if (matchFrom(want, w + 1, have, skip)) return true
      }
      return false
    }
    if (h >= have.length) return false
    if (want[w] !== '*' && want[w] !== have[h]) return false
  }
  return h === have.length
}
