// `sturdy inspect <dir>`: segments, LSN range, record counts and sizes of a log.
import path from 'node:path'

import { EXIT, expectPositionals, formatBytes, type Io, parseArgs, table } from './args.js'
import { cliErrorFor, openExistingLog } from './open-log.js'

export const INSPECT_HELP = `Usage: sturdy inspect <dir> [--json]

Show the segments of the log in <dir>: each segment file's base LSN, size, capacity, record
count and LSN range, and the log's totals. Opening the log takes its lock (a log another
process has open reports "locked") and checks every checksum, as any open does.

Options:
  --json       print one JSON object instead of a table
  -h, --help   show this help

Exit status: 0 ok, 1 the log is damaged (the location is printed), 2 usage error,
3 the log could not be read (missing, locked, I/O error).`

/** What `inspect --json` prints. */
export interface InspectReport {
  dir: string
  firstLsn: number
  nextLsn: number
  records: number
  payloadBytes: number
  diskBytes: number
  recovery: { tornBytes: number; droppedBytes: number; segments: number; records: number }
  segments: {
    file: string
    baseLsn: number
    sizeBytes: number
    capacityBytes: number | null
    prepared: boolean
    records: number
    payloadBytes: number
    firstLsn: number | null
    lastLsn: number | null
  }[]
}

export async function inspectLog(dir: string): Promise<InspectReport> {
  const { wal, segments } = openExistingLog('inspect', dir)
  try {
    const segs = segments.map((s) => ({ ...s, records: 0, payloadBytes: 0, firstLsn: null as number | null, lastLsn: null as number | null }))
    let i = 0
    let records = 0
    let payloadBytes = 0
    for await (const { lsn, data } of wal.entries()) {
      while (i + 1 < segs.length && segs[i + 1].baseLsn <= lsn) i++
      const s = segs[i]
      if (s !== undefined) {
        s.records++
        s.payloadBytes += data.length
        if (s.firstLsn === null) s.firstLsn = lsn
        s.lastLsn = lsn
      }
      records++
      payloadBytes += data.length
    }
    const r = wal.recovery
    return {
      dir: path.resolve(dir),
      firstLsn: wal.firstLsn,
      nextLsn: wal.nextLsn,
      records,
      payloadBytes,
      diskBytes: segs.reduce((n, s) => n + s.sizeBytes, 0),
      recovery: { tornBytes: r.tornBytes, droppedBytes: r.droppedBytes, segments: r.segments, records: r.records },
      segments: segs,
    }
  } catch (e) {
    throw cliErrorFor(dir, e)
  } finally {
    await wal.close()
  }
}

export function formatInspect(r: InspectReport): string {
  const lines = [
    table([
      ['log', r.dir],
      ['segments', `${r.segments.length} (${formatBytes(r.diskBytes)} on disk)`],
      ['LSN range', r.records === 0 ? `empty (next LSN ${r.nextLsn})` : `${r.firstLsn} .. ${r.nextLsn} (first record .. next append)`],
      ['records', `${r.records} (${formatBytes(r.payloadBytes)} of payload)`],
      ...(r.recovery.tornBytes > 0 ? [['open', `${r.recovery.tornBytes} bytes of an unacknowledged (torn) write after the last record, left in place (a writer's open cuts them)`]] : []),
    ]),
    '',
    table(
      [
        ['segment', 'base LSN', 'size', 'capacity', 'records', 'payload', 'first LSN', 'last LSN'],
        ...r.segments.map((s) => [
          s.prepared ? `${s.file} (prepared)` : s.file,
          String(s.baseLsn),
          formatBytes(s.sizeBytes),
          s.capacityBytes === null ? '?' : formatBytes(s.capacityBytes),
          String(s.records),
          formatBytes(s.payloadBytes),
          s.firstLsn === null ? '-' : String(s.firstLsn),
          s.lastLsn === null ? '-' : String(s.lastLsn),
        ]),
      ],
      [1, 2, 3, 4, 5, 6, 7],
    ),
  ]
  return lines.join('\n')
}

export async function inspectCommand(argv: readonly string[], io: Io): Promise<number> {
  const { options, positionals } = parseArgs('inspect', argv, { json: { type: 'boolean' } })
  if (options.help) {
    io.out(INSPECT_HELP)
    return EXIT.OK
  }
  expectPositionals('inspect', positionals, 1, 1, 'the log directory')
  const report = await inspectLog(positionals[0])
  io.out(options.json ? JSON.stringify(report, null, 2) : formatInspect(report))
  return EXIT.OK
}
