// `sturdy probe [dir]`: what a durability barrier costs on this disk, like PostgreSQL's
// pg_test_fsync, with a warning when a barrier is implausibly fast to be real.
import fs from 'node:fs'
import path from 'node:path'
import { setImmediate as turn } from 'node:timers/promises'

import { syncFileSync } from '../native.js'
import { EXIT, expectPositionals, formatBytes, formatMicros, type Io, parseArgs, table, usageError } from './args.js'

export const PROBE_HELP = `Usage: sturdy probe [dir] [--seconds <s>] [--block-size <bytes>] [--file-size <bytes>] [--json]

Measure what each durability barrier costs on the file system holding [dir] (default: the
current directory), like PostgreSQL's pg_test_fsync: ops/s and latency of

  write only (no barrier, a baseline)      write + fdatasync      write + fsync
  write with O_DSYNC (where the OS has it) write + the barrier sturdy uses
                                           (fdatasync on Linux, F_FULLFSYNC on macOS,
                                            FlushFileBuffers on Windows)

each on a preallocated (zero-filled) file and on a file that grows with every write. On macOS,
Node's fsync and fdatasync already issue F_FULLFSYNC. A barrier whose median latency is below
--warn-below-us (default 20 µs) is flagged: such a disk, or a layer above it (tmpfs, a VM's
write-back cache, a controller), probably does not put the data on stable storage, unless it
is a drive with power-loss protection.

A temporary file (sturdy-probe-<pid>.tmp) is written in [dir] and removed afterwards.

Options:
  --seconds <s>         time per test (default 2; fractions allowed; at most 3600)
  --block-size <bytes>  bytes per write (default 8192; at most 64 MiB)
  --file-size <bytes>   size of the preallocated file (default 16 MiB; at most 64 GiB)
  --warn-below-us <µs>  latency below which a barrier is flagged (default 20)
  --json                print one JSON object instead of a table
  -h, --help            show this help

Exit status: 0 done (warnings included), 2 usage error, 3 the probe could not run.`

type Barrier = 'none' | 'fdatasync' | 'fsync' | 'O_DSYNC' | 'sturdy'
type Mode = 'preallocated' | 'appending'

/** One measured combination. */
export interface ProbeResult {
  mode: Mode
  barrier: Barrier
  label: string
  ops: number
  opsPerSec: number
  meanUs: number
  p50Us: number
  p99Us: number
  maxUs: number
  /** Set when a barrier is implausibly fast. */
  warning?: string
}

export interface ProbeReport {
  dir: string
  platform: string
  fileSystem: string | null
  blockSize: number
  seconds: number
  results: ProbeResult[]
  warnings: string[]
}

const FS_TYPES: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x858458f6: 'ramfs',
  0x794c7630: 'overlayfs',
  0x2fc12fc1: 'zfs',
  0xf2f52010: 'f2fs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
}

/** The file system type of `dir`, where Node can tell (Linux magic numbers). */
function fileSystemOf(dir: string): string | null {
  const statfs = (fs as { statfsSync?: (p: string) => { type: number } }).statfsSync
  if (typeof statfs !== 'function') return null
  try {
    const type = statfs(dir).type
    return FS_TYPES[type] ?? `0x${type.toString(16)}`
  } catch {
    return null
  }
}

function barrierLabel(b: Barrier): string {
  const mac = process.platform === 'darwin'
  switch (b) {
    case 'none':
      return 'write only (no barrier)'
    case 'fdatasync':
      return mac ? 'write + fdatasync (F_FULLFSYNC via libuv)' : 'write + fdatasync'
    case 'fsync':
      return mac ? 'write + fsync (F_FULLFSYNC via libuv)' : 'write + fsync'
    case 'O_DSYNC':
      return 'write with O_DSYNC'
    case 'sturdy': {
      const what = mac ? 'F_FULLFSYNC' : process.platform === 'win32' ? 'FlushFileBuffers' : 'fdatasync'
      return `write + sturdy barrier (${what}, reopens the file)`
    }
  }
}

const O_DSYNC: number | undefined = process.platform === 'win32' ? undefined : (fs.constants as Record<string, number>).O_DSYNC

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

/** Write `size` zero bytes to `file` and make them durable, letting the event loop turn now and then (Ctrl-C). */
async function zeroFill(file: string, size: number): Promise<void> {
  const fd = fs.openSync(file, 'w')
  try {
    const zeros = Buffer.alloc(Math.min(size, 1 << 20))
    let sliceFrom = process.hrtime.bigint()
    for (let off = 0; off < size; off += zeros.length) {
      fs.writeSync(fd, zeros, 0, Math.min(zeros.length, size - off), off)
      if (process.hrtime.bigint() - sliceFrom > SLICE_NS) {
        await turn()
        sliceFrom = process.hrtime.bigint()
      }
    }
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

interface RunOptions {
  file: string
  blockSize: number
  fileSize: number
  seconds: number
}

/** How long a test runs before it lets the event loop turn: Ctrl-C is handled there. */
const SLICE_NS = 20_000_000n

async function runOne(mode: Mode, barrier: Barrier, o: RunOptions): Promise<ProbeResult> {
  const block = Buffer.alloc(o.blockSize)
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff
  if (mode === 'preallocated') await zeroFill(o.file, o.fileSize)
  else fs.writeFileSync(o.file, '')
  const flags = (barrier === 'O_DSYNC' ? (O_DSYNC ?? 0) : 0) | fs.constants.O_WRONLY
  const fd = fs.openSync(o.file, flags)
  // The appending file starts over (untimed) once it reaches four times the preallocated size.
  const wrapAt = mode === 'preallocated' ? o.fileSize : o.fileSize * 4
  const lat: number[] = []
  let offset = 0
  let timed = 0n
  const limit = BigInt(Math.round(o.seconds * 1e9))
  let sliceFrom = process.hrtime.bigint()
  try {
    while (timed < limit || lat.length === 0) {
      // Outside the timed part: a signal handler can only run once the loop yields.
      if (process.hrtime.bigint() - sliceFrom > SLICE_NS) {
        await turn()
        sliceFrom = process.hrtime.bigint()
      }
      if (offset + o.blockSize > wrapAt) {
        offset = 0
        if (mode === 'appending') {
          fs.ftruncateSync(fd, 0)
          fs.fsyncSync(fd)
        }
      }
      const t0 = process.hrtime.bigint()
      fs.writeSync(fd, block, 0, block.length, offset)
      if (barrier === 'fdatasync') fs.fdatasyncSync(fd)
      else if (barrier === 'fsync') fs.fsyncSync(fd)
      else if (barrier === 'sturdy') syncFileSync(o.file)
      const dt = process.hrtime.bigint() - t0
      timed += dt
      lat.push(Number(dt) / 1000)
      offset += o.blockSize
    }
  } finally {
    fs.closeSync(fd)
    fs.rmSync(o.file, { force: true })
  }
  const sorted = Float64Array.from(lat).sort()
  const totalUs = Number(timed) / 1000
  return {
    mode,
    barrier,
    label: barrierLabel(barrier),
    ops: lat.length,
    opsPerSec: lat.length / (totalUs / 1e6),
    meanUs: totalUs / lat.length,
    p50Us: percentile(sorted, 0.5),
    p99Us: percentile(sorted, 0.99),
    maxUs: sorted[sorted.length - 1],
  }
}

export interface ProbeOptions {
  seconds?: number
  blockSize?: number
  fileSize?: number
  warnBelowUs?: number
  /** Called before each test starts, e.g. to show progress. */
  onTest?: (mode: Mode, label: string) => void
}

export async function probe(dir: string, options: ProbeOptions = {}): Promise<ProbeReport> {
  const seconds = options.seconds ?? 2
  const blockSize = options.blockSize ?? 8192
  const fileSize = Math.max(options.fileSize ?? 16 << 20, blockSize)
  const warnBelowUs = options.warnBelowUs ?? 20
  const file = path.join(dir, `sturdy-probe-${process.pid}.tmp`)
  const fileSystem = fileSystemOf(dir)
  const barriers: Barrier[] = ['none', 'fdatasync', 'fsync', ...(O_DSYNC !== undefined ? (['O_DSYNC'] as const) : []), 'sturdy']
  const results: ProbeResult[] = []
  const warnings: string[] = []
  const cleanup = () => fs.rmSync(file, { force: true })
  const onSignal = () => {
    cleanup()
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  try {
    for (const mode of ['preallocated', 'appending'] as const) {
      for (const barrier of barriers) {
        options.onTest?.(mode, barrierLabel(barrier))
        const r = await runOne(mode, barrier, { file, blockSize, fileSize, seconds })
        if (barrier !== 'none' && r.p50Us < warnBelowUs) {
          r.warning = `${r.label} (${mode}) took a median ${formatMicros(r.p50Us)}: implausibly fast for a barrier that reaches stable storage`
          warnings.push(r.warning)
        }
        results.push(r)
      }
    }
  } finally {
    process.removeListener('SIGINT', onSignal)
    cleanup()
  }
  if (warnings.length > 0) {
    const where = fileSystem === 'tmpfs' || fileSystem === 'ramfs' ? ` ${dir} is on ${fileSystem}, which lives in memory and does not survive a power loss.` : ''
    warnings.push(
      `The disk (or a layer above it: a VM's write-back cache, a RAID controller, a container file system) probably does not honour these barriers, so acknowledged writes may not survive a power loss, unless the drive has power-loss protection.${where}`,
    )
  }
  return { dir: path.resolve(dir), platform: `${process.platform}-${process.arch}`, fileSystem, blockSize, seconds, results, warnings }
}

export function formatProbe(r: ProbeReport): string {
  const out = [`sturdy probe: ${r.dir}${r.fileSystem ? ` (${r.fileSystem})` : ''}, ${r.platform}, ${formatBytes(r.blockSize)} writes, ${r.seconds} s per test`, '']
  for (const mode of ['preallocated', 'appending'] as const) {
    out.push(mode === 'preallocated' ? 'Preallocated file (overwriting zero-filled space):' : 'Appending (the file grows with every write):')
    const rows = r.results
      .filter((x) => x.mode === mode)
      .map((x) => [`  ${x.label}${x.warning ? ' (!)' : ''}`, x.opsPerSec.toFixed(0), formatMicros(x.meanUs), formatMicros(x.p50Us), formatMicros(x.p99Us)])
    out.push(table([['', 'ops/s', 'mean', 'p50', 'p99'], ...rows], [1, 2, 3, 4]), '')
  }
  for (const w of r.warnings) out.push(`WARNING: ${w}`)
  return out.join('\n').trimEnd()
}

export async function probeCommand(argv: readonly string[], io: Io): Promise<number> {
  const { options, positionals } = parseArgs('probe', argv, {
    seconds: { type: 'number', min: 0.001, max: 3600 },
    'block-size': { type: 'number', min: 1, max: 64 << 20, integer: true },
    'file-size': { type: 'number', min: 1, max: 2 ** 36, integer: true },
    'warn-below-us': { type: 'number', min: 0 },
    json: { type: 'boolean' },
  })
  if (options.help) {
    io.out(PROBE_HELP)
    return EXIT.OK
  }
  expectPositionals('probe', positionals, 0, 1, 'dir')
  const dir = positionals[0] ?? '.'
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch {
    throw usageError(`${dir}: no such directory`)
  }
  if (!st.isDirectory()) throw usageError(`${dir}: not a directory`)
  const seconds = (options.seconds as number | undefined) ?? 2
  const progress = options.json ? undefined : io.progress
  const report = await probe(dir, {
    seconds,
    blockSize: options['block-size'] as number | undefined,
    fileSize: options['file-size'] as number | undefined,
    warnBelowUs: options['warn-below-us'] as number | undefined,
    onTest: progress ? (mode, label) => progress.write(`\r\x1b[Kprobing ${mode}: ${label} ...`) : undefined,
  })
  progress?.write('\r\x1b[K')
  io.out(options.json ? JSON.stringify(report, null, 2) : formatProbe(report))
  return EXIT.OK
}
