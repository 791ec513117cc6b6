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
/** Rounds of workloads (a) to (d): each row reports its median round. */
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

/** Run `fn(store)` on a fresh store of `peer` (after `quiesce`), then close and delete it. */
async function onFreshStore(peer, fn) {
  await quiesce()
  const dir = freshDir()
  const store = await peer.open(dir)
  try {
    return await fn(store)
  } finally {
    await store.close()
    // Rounds would otherwise leave several GB behind until the process exits.
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** One row per peer, each measured by `fn(store)` on a fresh store. */
const storeRows = (fn) => peers.map((peer) => ({ name: peer.name, measure: () => onFreshStore(peer, fn) }))

/** A row measured by the raw program (after `quiesce`, like the stores). */
const rawRow = (name, measure) => ({
  name,
  measure: async () => {
    await quiesce()
    return measure()
  },
})

const median = (xs) => {
  const sorted = [...xs].sort((x, y) => x - y)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Measure every row `ROUNDS` times. Within a round the rows take turns, and each round starts one
 * row later than the one before: a disk that speeds up or slows down during the run (it does, for
 * a while after heavy writing) weighs on all rows alike, and no row always goes first after the
 * previous workload. Rows come back in the order given, each with its median over the rounds (for
 * latencies, of each percentile; for an even count, the mean of the middle two) and every round's
 * value in `rounds`.
 */
async function inRounds(rows) {
  const values = rows.map(() => [])
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < rows.length; k++) {
      const i = (r + k) % rows.length
      values[i].push(await rows[i].measure())
    }
  }
  return rows.map(({ name }, i) => {
    const vs = values[i]
    const value = typeof vs[0] === 'object' ? Object.fromEntries(Object.keys(vs[0]).map((k) => [k, median(vs.map((v) => v[k]))])) : median(vs)
    return { name, value, rounds: vs }
  })
}

if (wanted('a')) {
  // (a) one writer, 1 KiB records, each append awaited: latency.
  const latency = ({ p50, p99 }) => ({ p50, p99 })
  const rows = await inRounds([
    ...(raw ? [rawRow('raw limit', () => latency(raw(frame(1024)))), rawRow('raw (appending)', () => latency(raw(frame(1024), SECONDS, 'append')))] : []),
    ...storeRows(async (store) => {
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
    }),
  ])
  report('a', rows, 'µs p50', 'lower')
}

for (const [w, writers, size] of [
  ['b', 64, 1024],
  ['c', 256, 100],
]) {
  if (!wanted(w)) continue
  const rate = (mode) => () => raw(writers * frame(size), SECONDS, mode).cycles * writers
  const rows = await inRounds([
    ...(raw
      ? [
          rawRow('raw limit', rate('zeroed')),
          // The same, paying for as many zeros written ahead as bytes written: a log's real
          // ceiling on this disk unless its space was zero-filled before the run.
          rawRow('raw (zero-filling)', rate('filling')),
          rawRow('raw (appending)', rate('append')),
        ]
      : []),
    ...storeRows((store) => timed(store, writers, size)),
  ])
  report(w, rows, 'records/s', 'higher')
}

if (wanted('d')) {
  // (d) bulk: one appendBatch of 1,000,000 × 100 B, acknowledged once all of it is durable. The
  // peers issue one barrier at the end; sturdy hands the batch to the disk in 8 MiB slices as it
  // stages them, so copying overlaps writing. One batch into a fresh store per round.
  const recs = Array.from({ length: 1_000_000 }, () => record(100))
  const rows = await inRounds([
    ...(raw ? [rawRow('raw limit', () => raw(1e6 * frame(100), 1, 'append').cycles * 1e6)] : []),
    ...storeRows(async (store) => {
      const start = performance.now()
      await store.appendBatch(recs)
      return 1e6 / ((performance.now() - start) / 1000)
    }),
  ])
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
    const readRate = async (store) => {
      for (let i = 0; i < 16; i++) await store.appendBatch(batch)
      let bytes = 0
      const start = performance.now()
      for await (const data of store.read()) bytes += data.length
      return bytes / ((performance.now() - start) / 1000) / 1e9
    }
    const rows = []
    for (const peer of peers) rows.push({ name: peer.name, value: await onFreshStore(peer, readRate) })
    report('f', rows, 'GB/s', 'higher')
  }
}

fs.writeFileSync(process.env.BENCH_RESULTS, JSON.stringify(results))
