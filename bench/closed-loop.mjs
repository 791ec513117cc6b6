// A closed loop: `writers` callers, each awaiting `op()` and calling it again, for `seconds`.
// Ends on a clock check, not a timer: a synchronous peer never lets a timer fire.

/** Calls of `op` completed per second. */
export async function closedLoop(writers, seconds, op) {
  let done = 0
  const start = performance.now()
  const end = start + seconds * 1000
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < end) {
        await op()
        done++
      }
    }),
  )
  return done / ((performance.now() - start) / 1000)
}
