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
  // Greedy matching that remembers only the latest `**`: when a later segment fails, that `**`
  // takes one more segment and matching resumes after it. An earlier `**` never needs to take
  // more, since the later one can absorb whatever it would have. So the cost is at most
  // |want| x |have| steps, never the exponential backtracking of trying every split, and there
  // is no recursion to overflow the stack (patterns are client-chosen; this runs on every append).
  let w = 0
  let h = 0
  let star = -1 // index in `want` of the latest `**`, or -1
  let starTook = 0 // where in `have` the segments taken by that `**` end
  while (h < have.length) {
    if (w < want.length && want[w] === '**') {
      star = w++
      starTook = h
    } else if (w < want.length && (want[w] === '*' || want[w] === have[h])) {
      w++
      h++
    } else if (star >= 0) {
      w = star + 1
      h = ++starTook
    } else {
      return false
    }
  }
  while (w < want.length && want[w] === '**') w++
  return w === want.length
}
