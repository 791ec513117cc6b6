import { invalidArg } from './errors.js'

/**
 * When a file writer from {@link Directory.createFile} or {@link Directory.appendFile} makes
 * its appends durable (the platform's barrier: fdatasync, F_FULLFSYNC or FlushFileBuffers).
 * Every append is handed to the OS at once; the policy only decides when the barrier runs.
 *
 * - `'per-append'` (default): each `append` resolves once its bytes are durable.
 * - `{ everyN }`: every N-th append runs the barrier for itself and the N-1 before it; the
 *   others resolve once written (not yet durable).
 * - `{ intervalMs }`: the barrier runs at most `intervalMs` after an append (on a timer that
 *   does not keep the process alive); appends resolve once written.
 * - `'manual'`: only {@link FileWriter.sync} runs the barrier; `close()` does not.
 *
 * With every policy `sync()` makes everything appended so far durable.
 *
 * @example
 * ```ts
 * const log = await dir.appendFile('events.log', { flushPolicy: { everyN: 100 } })
 * for (const e of events) await log.append(JSON.stringify(e) + '\n')
 * await log.sync()   // the tail that did not reach the 100th append
 * ```
 */
export type FlushPolicy = 'per-append' | 'manual' | { everyN: number } | { intervalMs: number }

/** A validated {@link FlushPolicy}. */
export type CheckedFlushPolicy =
  | { kind: 'per-append' }
  | { kind: 'manual' }
  | { kind: 'every-n'; n: number }
  | { kind: 'interval'; ms: number }

/** Largest delay a Node timer accepts. */
const MAX_INTERVAL_MS = 2 ** 31 - 1

/**
 * Validate a {@link FlushPolicy} (default `'per-append'`), with `ERR_INVALID_ARG` for anything
 * else.
 *
 * @example
 * ```ts
 * checkFlushPolicy({ everyN: 10 }) // { kind: 'every-n', n: 10 }
 * ```
 */
export function checkFlushPolicy(policy: unknown = 'per-append'): CheckedFlushPolicy {
  if (policy === 'per-append' || policy === 'manual') return { kind: policy }
  if (policy !== null && typeof policy === 'object') {
    const { everyN, intervalMs } = policy as { everyN?: unknown; intervalMs?: unknown }
    if (everyN !== undefined && intervalMs === undefined) {
      if (typeof everyN !== 'number' || !Number.isSafeInteger(everyN) || everyN < 1) {
        throw invalidArg('flushPolicy.everyN must be a positive integer')
      }
      return { kind: 'every-n', n: everyN }
    }
    if (intervalMs !== undefined && everyN === undefined) {
      if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs <= 0 || intervalMs > MAX_INTERVAL_MS) {
        throw invalidArg(`flushPolicy.intervalMs must be a positive number of milliseconds up to ${MAX_INTERVAL_MS}`)
      }
      return { kind: 'interval', ms: intervalMs }
    }
  }
  throw invalidArg(`flushPolicy must be 'per-append', 'manual', { everyN } or { intervalMs }`)
}
