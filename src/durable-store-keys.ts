import { invalidArg } from './errors.js'

/**
 * A predicate for Akka-style `durableKeys`: exact keys, and patterns ending in `*` that match
 * every key starting with what comes before it. `undefined` means every key is durable.
 *
 * @example
 * ```ts
 * const durable = durableKeyMatcher(['config', 'counter/*'])
 * durable('counter/a') // true
 * durable('cache/x')   // false
 * ```
 */
export function durableKeyMatcher(patterns: unknown): (key: string) => boolean {
  if (patterns === undefined) return () => true
  if (!Array.isArray(patterns) || patterns.some((p) => typeof p !== 'string')) {
    throw invalidArg('durableKeys must be an array of strings')
  }
  const exact = new Set<string>()
  const prefixes: string[] = []
  for (const p of patterns as string[]) {
    if (p.endsWith('*')) prefixes.push(p.slice(0, -1))
    else exact.add(p)
  }
  return (key) => exact.has(key) || prefixes.some((p) => key.startsWith(p))
}
