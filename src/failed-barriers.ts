import { SturdyError } from './errors.js'

/**
 * Files and directories, by absolute path, whose durability barrier failed in this process, with
 * why. A failed barrier is never tried again: on Linux a failed write-back can leave the pages
 * marked clean, and a descriptor opened later is not told of the error, so a second fsync may
 * succeed while what the first was to make durable never reached the disk. Every later barrier
 * on the path is refused with `ERR_POISONED` for the rest of the process; restart it once the
 * storage is sound (what is then read back is what the disk holds).
 */
const failed = new Map<string, string>()

/** Refuse a barrier on any of `paths` if one there failed before. */
export function refuseFailedBarrier(paths: readonly string[], shown: string): void {
  for (const path of paths) {
    const why = failed.get(path)
    if (why === undefined) continue
    throw new SturdyError(
      'ERR_POISONED',
      `a durability barrier for ${JSON.stringify(shown)} failed earlier (${why}); it is not retried, as a retry can report success for what the failed one lost`,
    )
  }
}

/** Remember that the barrier on `paths` failed with `e`, if that was an I/O error. */
export function noteFailedBarrier(paths: readonly string[], e: unknown): void {
  // A missing file or a refused argument failed before any barrier ran.
  if (!(e instanceof SturdyError) || e.code !== 'ERR_IO') return
  for (const path of paths) if (!failed.has(path)) failed.set(path, e.message)
}

/** Run the barrier `sync` on `path`, unless one there failed before; remember it if it fails. */
export async function barrier(path: string, shown: string, sync: () => Promise<void>): Promise<void> {
  refuseFailedBarrier([path], shown)
  try {
    await sync()
  } catch (e) {
    noteFailedBarrier([path], e)
    throw e
  }
}
