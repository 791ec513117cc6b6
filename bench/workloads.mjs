// One workload of the benchmark suite, measured in this process and written as JSON to the file
// named by BENCH_RESULTS. `run.mjs` runs each workload in a fresh process of its own, so one
// workload's heap (a million records, five libraries' caches) and garbage do not slow the next.
//
//   BENCH_RESULTS=out.json node bench/workloads.mjs d
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { closedLoop } from './closed-loop.mjs'
import { scratchDir } from './scratch.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
/** Rounds of the timed workloads (a), (b) and (c): each reports its median round. */
const ROUNDS = Math.max(1, Math.floor(Number(process.env.BENCH_ROUNDS ?? 3)) || 1)
const only = new Set(process.argv.slice(2))
const wanted = (w) => only.has(w)

const peerFiles = ['sturdy', 'js-group-commit', 'lmdb', 'sqlite', 'level']
const peers = []
for (const f of peerFiles) {
  try {
    peers.push(await import(`./peers/${f}.mjs`))
  } catch (e) {
    console.warn(`skipping ${f}: ${e.message.split('\n')[0]} (run npm --prefix bench install)`)
  }
}

const { dir: scratch, fresh: freshDir } = scratchDir('bench')

/** The raw limit: a tiny C program doing pwrite + fdatasync of `bytes` per cycle. */
const raw = (() => {
  const bin = path.join(scratch, 'raw-sync')
  try {
    execFileSync('cc', ['-O2', '-pthread', '-o', bin, path.join(here, 'raw-sync.c')], { stdio: 'pipe' })
  } catch {
    console.warn('skipping the raw limit: no C compiler (cc) on PATH')
    return undefined
  }
  return (bytes, seconds = SECONDS, mode = 'zeroed') => {
    const [cycles, p50, p99] = execFileSync(bin, [path.join(scratch, 'raw.dat'), String(bytes), String(seconds), mode]).toString().trim().split(' ').map(Number)
    return { cycles, p50, p99 }
  }
})()

const record = (size) => Buffer.alloc(size, 0x61)
const frame = (size) => size + 8 // sturdy's frame header; the raw program writes the same bytes

async function timed(store, writers, size) {
  const rec = record(size)
  return closedLoop(writers, SECONDS, () => store.append(rec))
}

const results = {}
const report = (workload, rows, unit, better) => {
  results[workload] = { rows, unit, better }
}

/** Let the disk finish writing back earlier runs' data, so one run's writeback does not slow the next. */
async function quiesce() {
  execFileSync('sync')
  await new Promise((resolve) => setTimeout(resolve, 500))
}

async function withEach(fn) {
  const rows = []
  for (const peer of peers) {
    await quiesce()
    const dir = freshDir()
    const store = await peer.open(dir)
    try {
      rows.push({ name: peer.name, value: await fn(store, peer) })
    } finally {
      await store.close()
      // Rounds would otherwise leave several GB behind until the process exits.
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  return rows
}

/**
 * Measure every row `ROUNDS` times, the rows taking turns within each round, so that a disk that
 * speeds up or slows down during the run weighs on all of them alike. Each row reports its median
 * over the rounds (for latencies, of each percentile; for an even count, the mean of the middle
 * two) and keeps every round's value in `rounds`.
 */
async function inRounds(measureRound) {
  const perRound = []
  for (let r = 0; r < ROUNDS; r++) perRound.push(await measureRound())
  const median = (xs) => {
    const sorted = [...xs].sort((x, y) => x - y)
    const mid = sorted.length >> 1
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }
  return perRound[0].map(({ name }, i) => {
    const values = perRound.map((rows) => rows[i].value)
    const value =
      typeof values[0] === 'object'
        ? Object.fromEntries(Object.keys(values[0]).map((k) => [k, median(values.map((v) => v[k]))]))
        : median(values)
    return { name, value, rounds: values }
  })
}

if (wanted('a')) {
  // (a) one writer, 1 KiB records, each append awaited: latency.
  const rows = await inRounds(async () => {
    const rows = await withEach(async (store) => {
      const rec = record(1024)
      const lat = []
      const end = performance.now() + SECONDS * 1000
      while (performance.now() < end && lat.length < 20000) {
        const t = process.hrtime.bigint()
        await store.append(rec)
        lat.push(Number(process.hrtime.bigint() - t) / 1000)
      }
      lat.sort((x, y) => x - y)
      return { p50: lat[lat.length >> 1], p99: lat[Math.floor(lat.length * 0.99)] }
    })
    if (raw) {
      const a = raw(frame(1024), SECONDS, 'append')
      const z = raw(frame(1024))
      rows.unshift({ name: 'raw limit', value: { p50: z.p50, p99: z.p99 } }, { name: 'raw (appending)', value: { p50: a.p50, p99: a.p99 } })
    }
    return rows
  })
  report('a', rows, 'µs p50', 'lower')
}

for (const [w, writers, size] of [
  ['b', 64, 1024],
  ['c', 256, 100],
]) {
  if (!wanted(w)) continue
  const rows = await inRounds(async () => {
    const rows = await withEach((store) => timed(store, writers, size))
    if (raw) {
      rows.unshift(
        { name: 'raw limit', value: raw(writers * frame(size)).cycles * writers },
        // The same, paying for as many zeros written ahead as bytes written: a log's real ceiling
        // on this disk unless its space was zero-filled before the run.
        { name: 'raw (zero-filling)', value: raw(writers * frame(size), SECONDS, 'filling').cycles * writers },
        { name: 'raw (appending)', value: raw(writers * frame(size), SECONDS, 'append').cycles * writers },
      )
    }
    return rows
  })
  report(w, rows, 'records/s', 'higher')
}

if (wanted('d')) {
  // (d) bulk: one appendBatch of 1,000,000 × 100 B, acknowledged once all of it is durable. The
  // peers issue one barrier at the end; sturdy hands the batch to the disk in 8 MiB slices as it
  // stages them, so copying overlaps writing.
  const recs = Array.from({ length: 1_000_000 }, () => record(100))
  // Three batches into the same store, the median rate: one batch is a single, noisy sample.
  const rows = await withEach(async (store) => {
    const rates = []
    for (let i = 0; i < 3; i++) {
      const start = performance.now()
      await store.appendBatch(recs)
      rates.push(1e6 / ((performance.now() - start) / 1000))
    }
    return rates.sort((a, b) => a - b)[1]
  })
  if (raw) {
    const r = raw(1e6 * frame(100), 1, 'append')
    rows.unshift({ name: 'raw limit', value: r.cycles * 1e6 })
  }
  report('d', rows, 'records/s', 'higher')
}

if (wanted('e') || wanted('f')) {
  const { Wal } = await import('../dist/index.mjs')
  // (e) open and recovery scan of a 1 GiB log (page cache warm: this measures the scan).
  if (wanted('e')) {
    const dir = freshDir()
    const wal = await Wal.open(dir)
    const batch = Array.from({ length: 4096 }, () => record(4096))
    for (let i = 0; i < 64; i++) await wal.appendBatch(batch)
    await wal.close()
    const bytes = fs.readdirSync(dir).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0)
    const start = performance.now()
    const reopened = await Wal.open(dir)
    const seconds = (performance.now() - start) / 1000
    await reopened.close()
    const rows = [{ name: 'sturdy', value: bytes / seconds / 1e9 }]
    // Reading the same files, nothing else: the ceiling for a scan.
    const t = performance.now()
    const buf = Buffer.allocUnsafe(4 << 20)
    for (const f of fs.readdirSync(dir)) {
      const fd = fs.openSync(path.join(dir, f), 'r')
      while (fs.readSync(fd, buf) > 0);
      fs.closeSync(fd)
    }
    rows.push({ name: 'raw (reading the files)', value: bytes / ((performance.now() - t) / 1000) / 1e9 })
    fs.rmSync(dir, { recursive: true })
    report('e', rows, 'GB/s', 'higher')
  }
  // (f) sequential iteration over 4 KiB records (256 MiB per store).
  if (wanted('f')) {
    const batch = Array.from({ length: 4096 }, () => record(4096))
    const rows = await withEach(async (store) => {
      for (let i = 0; i < 16; i++) await store.appendBatch(batch)
      let bytes = 0
      const start = performance.now()
      for await (const data of store.read()) bytes += data.length
      return bytes / ((performance.now() - start) / 1000) / 1e9
    })
    report('f', rows, 'GB/s', 'higher')
  }
}

fs.writeFileSync(process.env.BENCH_RESULTS, JSON.stringify(results))
