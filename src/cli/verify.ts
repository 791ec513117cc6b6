// `sturdy verify <dir>`: read every record of a log, checking every checksum.
import path from 'node:path'

import { SturdyError } from '../errors.js'
import { CliError, EXIT, expectPositionals, formatBytes, type Io, parseArgs } from './args.js'
import { cliErrorFor, corruptionLocation, openExistingLog } from './open-log.js'

export const VERIFY_HELP = `Usage: sturdy verify <dir> [--json] [--no-progress]

Check the log in <dir>: open it with strict recovery (the segment headers, every frame and the
commit markers are checked) and read every record back through the library, verifying each
record's CRC32C. On damage, print the segment file and byte offset and exit 1. A progress bar
is drawn on a terminal (stderr).

The log is opened read-only: nothing is written, and a torn tail of a write that was never
acknowledged is reported, not cut. A shared lock keeps writers out meanwhile, so a log another
process has open for writing reports "locked" (run on a copy).

Options:
  --json          print the result as one JSON object on stdout
  --no-progress   no progress bar, even on a terminal
  -h, --help      show this help

Exit status: 0 every record verified, 1 the log is damaged, 2 usage error,
3 the log could not be read (missing, locked, I/O error).`

/** What `verify --json` prints. */
export interface VerifyReport {
  dir: string
  ok: boolean
  records: number
  payloadBytes: number
  segments: number
  firstLsn?: number
  nextLsn?: number
  /**
   * Bytes of a write that was never acknowledged, after the last record (a crash mid-write):
   * not damage, and left in place here; the next writer's open cuts them.
   */
  tornBytes: number
  /** On damage: the segment file, offset and message from the library. */
  corrupt?: { segment: string | null; offset: number | null; message: string }
}

class Progress {
  readonly #stream: NodeJS.WriteStream | undefined
  #last = 0
  #drawn = false
  constructor(stream: NodeJS.WriteStream | undefined) {
    this.#stream = stream
  }
  update(done: number, total: number, records: number, force = false): void {
    const s = this.#stream
    if (s === undefined) return
    const now = Date.now()
    if (!force && now - this.#last < 100) return
    this.#last = now
    const frac = total > 0 ? Math.min(1, done / total) : 1
    const width = Math.max(10, Math.min(40, (s.columns ?? 80) - 40))
    const fill = Math.round(frac * width)
    s.write(`\r\x1b[Kverifying [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${records} records`)
    this.#drawn = true
  }
  clear(): void {
    if (this.#drawn) this.#stream?.write('\r\x1b[K')
    this.#drawn = false
  }
}

export async function verifyLog(dir: string, progressStream?: NodeJS.WriteStream): Promise<VerifyReport> {
  const report: VerifyReport = { dir: path.resolve(dir), ok: false, records: 0, payloadBytes: 0, segments: 0, tornBytes: 0 }
  const progress = new Progress(progressStream)
  const { wal, segments } = openExistingLog('verify', dir)
  // A prepared next segment (`.wal.tmp`) holds no records yet.
  report.segments = segments.filter((s) => !s.prepared).length
  report.tornBytes = wal.recovery.tornBytes
  report.firstLsn = wal.firstLsn
  report.nextLsn = wal.nextLsn
  const total = wal.nextLsn - wal.firstLsn
  try {
    for await (const { lsn, data } of wal.entries()) {
      report.records++
      report.payloadBytes += data.length
      progress.update(lsn - wal.firstLsn, total, report.records)
    }
    progress.update(total, total, report.records, true)
    report.ok = true
  } catch (e) {
    if (!(e instanceof SturdyError) || e.code !== 'ERR_CORRUPT') throw cliErrorFor(dir, e)
    report.corrupt = { segment: e.segment ?? null, offset: e.offset ?? null, message: e.message }
  } finally {
    progress.clear()
    await wal.close()
  }
  return report
}

export async function verifyCommand(argv: readonly string[], io: Io): Promise<number> {
  const { options, positionals } = parseArgs('verify', argv, { json: { type: 'boolean' }, 'no-progress': { type: 'boolean' } })
  if (options.help) {
    io.out(VERIFY_HELP)
    return EXIT.OK
  }
  expectPositionals('verify', positionals, 1, 1, 'the log directory')
  const dir = positionals[0]
  let report: VerifyReport
  try {
    report = await verifyLog(dir, options['no-progress'] || options.json ? undefined : io.progress)
  } catch (e) {
    // Damage found while opening: the open checks every frame before reading begins.
    const cause = (e as { cause?: unknown }).cause
    if (e instanceof CliError && e.exitCode === EXIT.CORRUPT && options.json && cause instanceof SturdyError) {
      io.out(JSON.stringify({ dir: path.resolve(dir), ok: false, corrupt: { segment: cause.segment ?? null, offset: cause.offset ?? null, message: cause.message } }, null, 2))
    }
    throw e
  }
  if (report.corrupt) {
    if (options.json) io.out(JSON.stringify(report, null, 2))
    const c = report.corrupt
    const where = corruptionLocation(dir, new SturdyError('ERR_CORRUPT', c.message, { segment: c.segment ?? undefined, offset: c.offset ?? undefined }))
    throw new CliError(`corrupt: ${where}: ${c.message} (${report.records} records read before it)`, EXIT.CORRUPT)
  }
  if (options.json) io.out(JSON.stringify(report, null, 2))
  else {
    io.out(
      `ok: ${report.records} records (${formatBytes(report.payloadBytes)}) in ${report.segments} segments verified` +
        (report.records > 0 ? `, LSN ${report.firstLsn} .. ${report.nextLsn}` : '') +
        (report.tornBytes > 0 ? `\nnote: ${formatBytes(report.tornBytes)} of a write that was never acknowledged follow the last record (a torn tail, not damage); left in place, a writer's open cuts them` : ''),
    )
  }
  return EXIT.OK
}
