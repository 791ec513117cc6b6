// `sturdy bench [dir]`: a short group-commit vs naive run of the write-ahead log on this disk.
import fs from 'node:fs'
import path from 'node:path'

import { Wal } from '../wal.js'
import { EXIT, expectPositionals, formatMicros, type Io, parseArgs, table, usageError } from './args.js'

export const BENCH_HELP = `Usage: sturdy bench [dir] [--seconds <s>] [--writers <n>] [--size <bytes>] [--json]

A short benchmark of durable appends on the disk holding [dir] (default: the current
directory), in a temporary log that is removed afterwards:

  naive          one writer, each append awaited before the next: one barrier per record
  group commit   --writers concurrent writers, each awaiting its own appends: appends made
                 in the same event-loop turn share one write and one durability barrier

Options:
  --seconds <s>     total run time, split between the two runs (default 2; at most 3600)
  --writers <n>     concurrent writers for the group-commit run (default 64; at most 100000)
  --size <bytes>    record size (default 256; at most 16 MiB)
  --json            print one JSON object instead of a table
  -h, --help        show this help

Exit status: 0 done, 2 usage error, 3 the benchmark could not run.`

export interface BenchRun {
  name: 'naive' | 'group commit'
  writers: number
  records: number
  seconds: number
  recordsPerSec: number
  meanLatencyUs: number
}

export interface BenchReport {
  dir: string
  recordBytes: number
  runs: BenchRun[]
  speedup: number
}

async function run(name: BenchRun['name'], dir: string, writers: number, record: Buffer, seconds: number): Promise<BenchRun> {
  const wal = await Wal.open(dir, { segmentBytes: 16 << 20 })
  try {
    await wal.append(record) // warm up: first segment ready
    let records = 0
    let latency = 0
    const start = performance.now()
    const deadline = start + seconds * 1000
    const writer = async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now()
        await wal.append(record)
        latency += performance.now() - t0
        records++
      }
    }
    await Promise.all(Array.from({ length: writers }, writer))
    const elapsed = (performance.now() - start) / 1000
    return { name, writers, records, seconds: elapsed, recordsPerSec: records / elapsed, meanLatencyUs: records > 0 ? (latency * 1000) / records : 0 }
  } finally {
    await wal.close()
  }
}

export async function bench(dir: string, options: { seconds?: number; writers?: number; size?: number } = {}): Promise<BenchReport> {
  const seconds = options.seconds ?? 2
  const writers = options.writers ?? 64
  const record = Buffer.alloc(options.size ?? 256, 0x61)
  const root = fs.mkdtempSync(path.join(dir, '.sturdy-bench-'))
  const cleanup = () => fs.rmSync(root, { recursive: true, force: true })
  const onSignal = () => {
    cleanup()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  try {
    const naive = await run('naive', path.join(root, 'naive'), 1, record, seconds / 2)
    const group = await run('group commit', path.join(root, 'group'), writers, record, seconds / 2)
    return {
      dir: path.resolve(dir),
      recordBytes: record.length,
      runs: [naive, group],
      speedup: naive.recordsPerSec > 0 ? group.recordsPerSec / naive.recordsPerSec : 0,
    }
  } finally {
    process.removeListener('SIGINT', onSignal)
    cleanup()
  }
}

export function formatBench(r: BenchReport): string {
  return [
    `sturdy bench: ${r.dir}, ${r.recordBytes}-byte records, every append awaited until durable`,
    '',
    table(
      [
        ['run', 'writers', 'records', 'records/s', 'mean latency'],
        ...r.runs.map((x) => [x.name, String(x.writers), String(x.records), x.recordsPerSec.toFixed(0), formatMicros(x.meanLatencyUs)]),
      ],
      [1, 2, 3, 4],
    ),
    '',
    `group commit: ${r.speedup.toFixed(1)}x the naive throughput`,
  ].join('\n')
}

export async function benchCommand(argv: readonly string[], io: Io): Promise<number> {
  const { options, positionals } = parseArgs('bench', argv, {
    seconds: { type: 'number', min: 0.01, max: 3600 },
    writers: { type: 'number', min: 1, max: 100_000, integer: true },
    size: { type: 'number', min: 0, max: 16 << 20, integer: true }, // the log's default record limit
    json: { type: 'boolean' },
  })
  if (options.help) {
    io.out(BENCH_HELP)
    return EXIT.OK
  }
  expectPositionals('bench', positionals, 0, 1, 'dir')
  const dir = positionals[0] ?? '.'
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw usageError(`${dir}: no such directory`)
  const report = await bench(dir, {
    seconds: options.seconds as number | undefined,
    writers: options.writers as number | undefined,
    size: options.size as number | undefined,
  })
  io.out(options.json ? JSON.stringify(report, null, 2) : formatBench(report))
  return EXIT.OK
}
