// sturdy against its peers, all measured in this run on this disk, every write acknowledged
// only once durable. Prints a table with ratios and writes docs/bench.svg. Each workload runs in
// a fresh process (`workloads.mjs`): what one leaves in the heap must not slow the next.
//
//   npm run bench                 # everything
//   node bench/run.mjs a b        # only some workloads
//   BENCH_SECONDS=5 npm run bench # longer timed runs
//   BENCH_ROUNDS=5 npm run bench  # more rounds of (a) to (d) (each shows its median round)
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { chart } from './chart.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const only = new Set(process.argv.slice(2))

// ---------------------------------------------------------------------------------------------
const titles = {
  a: '(a) 1 writer, 1 KiB, each append awaited — latency',
  b: '(b) 64 concurrent writers, 1 KiB',
  c: '(c) 256 concurrent writers, 100 B',
  d: '(d) appendBatch of 1,000,000 × 100 B, durable at the end',
  e: '(e) open + recovery scan of a 1 GiB log',
  f: '(f) sequential read of 4 KiB records',
}
const results = {}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-bench-results-'))
try {
  for (const w of Object.keys(titles).filter((w) => only.size === 0 || only.has(w))) {
    const file = path.join(tmp, `${w}.json`)
    execFileSync(process.execPath, [path.join(here, 'workloads.mjs'), w], { stdio: 'inherit', env: { ...process.env, BENCH_RESULTS: file } })
    Object.assign(results, JSON.parse(fs.readFileSync(file, 'utf8')))
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true })
}

const fmt = (v) => (v >= 1000 ? Math.round(v).toLocaleString('en-US') : v >= 100 ? v.toFixed(0) : v.toFixed(2))
const scalar = (v) => (typeof v === 'object' ? v.p50 : v)
// The rounds each row was measured in, as workloads.mjs ran them.
const rounds = Object.values(results).find(({ rows }) => rows[0]?.rounds)?.rows[0].rounds.length ?? 1
console.log(`\nsturdy benchmarks — ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${SECONDS}s runs${rounds > 1 ? `, (a)–(d) the median of ${rounds} rounds` : ''}`)
console.log('raw limit: a C program doing pwrite + fdatasync of the same group size over zero-filled space (sturdy\'s default); raw (appending): the same, growing the file\n')
for (const [w, { rows, unit, better }] of Object.entries(results)) {
  const us = rows.find((r) => r.name === 'sturdy')
  console.log(titles[w])
  for (const r of rows) {
    const v = scalar(r.value)
    const extra = typeof r.value === 'object' ? `  (p99 ${fmt(r.value.p99)})` : ''
    let ratio = ''
    if (us && r !== us) {
      // How sturdy compares with this row: a speed-up over a peer, a share of a raw limit.
      const isRaw = r.name.startsWith('raw')
      const compare = (ours, theirs) => (isRaw || better === 'higher' ? ours / theirs : theirs / ours)
      const show = (x) => (isRaw && better === 'higher' ? `${(100 * x).toFixed(0)}%` : `${x.toFixed(2)}×`)
      const x = compare(scalar(us.value), v)
      ratio = isRaw ? (better === 'higher' ? `sturdy at ${show(x)} of it` : `sturdy p50 ${show(x)} of it`) : `sturdy ${show(x)}`
      // The same comparison within each round: how far apart single runs land.
      if (r.rounds?.length > 1) {
        const each = r.rounds.map((theirs, i) => compare(scalar(us.rounds[i]), scalar(theirs))).sort((a, b) => a - b)
        ratio += `  (rounds ${show(each[0])}–${show(each[each.length - 1])})`
      }
    }
    console.log(`  ${r.name.padEnd(22)} ${fmt(v).padStart(12)} ${unit}${extra}   ${ratio}`)
  }
  console.log()
}
const out = path.join(here, '..', 'docs', 'bench.svg')
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(out, chart(results, titles))
console.log(`chart written to ${path.relative(process.cwd(), out)}`)
