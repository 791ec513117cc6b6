// sturdy against its peers, all measured in this run on this disk, every write acknowledged
// only once durable. Prints a table with ratios and writes docs/bench.svg.
//
//   npm run bench                 # everything
//   node bench/run.mjs a b        # only some workloads
//   BENCH_SECONDS=5 npm run bench # longer timed runs
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { chart } from './chart.mjs'
import { scratchDir } from './scratch.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const only = new Set(process.argv.slice(2))
const wanted = (w) => only.size === 0 || only.has(w)

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
    execFileSync('cc', ['-O2', '-o', bin, path.join(here, 'raw-sync.c')], { stdio: 'pipe' })
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
  let n = 0
  const start = performance.now()
  // A clock check, not a timer: a synchronous peer never lets a timer fire.
  const end = start + SECONDS * 1000
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < end) {
        await store.append(rec)
        n++
      }
    }),
  )
  return n / ((performance.now() - start) / 1000)
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
    const store = await peer.open(freshDir())
    try {
      rows.push({ name: peer.name, value: await fn(store, peer) })
    } finally {
      await store.close()
    }
  }
  return rows
}

if (wanted('a')) {
  // (a) one writer, 1 KiB records, each append awaited: latency.
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
  report('a', rows, 'µs p50', 'lower')
}

for (const [w, writers, size] of [
  ['b', 64, 1024],
  ['c', 256, 100],
]) {
  if (!wanted(w)) continue
  const rows = await withEach((store) => timed(store, writers, size))
  if (raw) {
    rows.unshift(
      { name: 'raw limit', value: raw(writers * frame(size)).cycles * writers },
      { name: 'raw (appending)', value: raw(writers * frame(size), SECONDS, 'append').cycles * writers },
    )
  }
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
    rows.push({ name: 'read the files', value: bytes / ((performance.now() - t) / 1000) / 1e9 })
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

// ---------------------------------------------------------------------------------------------
const titles = {
  a: '(a) 1 writer, 1 KiB, each append awaited — latency',
  b: '(b) 64 concurrent writers, 1 KiB',
  c: '(c) 256 concurrent writers, 100 B',
  d: '(d) appendBatch of 1,000,000 × 100 B, durable at the end',
  e: '(e) open + recovery scan of a 1 GiB log',
  f: '(f) sequential read of 4 KiB records',
}
const fmt = (v) => (v >= 1000 ? Math.round(v).toLocaleString('en-US') : v >= 100 ? v.toFixed(0) : v.toFixed(2))
const scalar = (v) => (typeof v === 'object' ? v.p50 : v)
console.log(`\nsturdy benchmarks — ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${SECONDS}s runs`)
console.log('raw limit: a C program doing pwrite + fdatasync of the same group size over zero-filled space (sturdy\'s default); raw (appending): the same, growing the file\n')
for (const [w, { rows, unit, better }] of Object.entries(results)) {
  const us = rows.find((r) => r.name === 'sturdy')
  console.log(titles[w])
  for (const r of rows) {
    const v = scalar(r.value)
    const extra = typeof r.value === 'object' ? `  (p99 ${fmt(r.value.p99)})` : ''
    let ratio = ''
    if (us && r !== us) {
      const x = better === 'higher' ? scalar(us.value) / v : v / scalar(us.value)
      const isRaw = r.name.startsWith('raw')
      ratio = isRaw ? `sturdy at ${(100 * (better === 'higher' ? x : 1 / x)).toFixed(0)}% of it` : `sturdy ${x.toFixed(2)}×`
      if (isRaw && better === 'lower') ratio = `sturdy p50 ${(scalar(us.value) / v).toFixed(2)}× of it`
    }
    console.log(`  ${r.name.padEnd(22)} ${fmt(v).padStart(12)} ${unit}${extra}   ${ratio}`)
  }
  console.log()
}
const out = path.join(here, '..', 'docs', 'bench.svg')
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, chart(results, titles))
console.log(`chart written to ${path.relative(process.cwd(), out)}`)
