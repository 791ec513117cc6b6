// Bounded memory under sustained load: 10,000,000 durable appends of 100 B from 256 concurrent
// writers; prints the growth of the process's resident set size. Target: under 64 MiB.
//   node bench/memory.mjs [appends]
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { Wal } from '../dist/index.mjs'

const total = Number(process.argv[2] ?? 10_000_000)
const writers = 256
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-memory-'))
const cleanup = () => fs.rmSync(dir, { recursive: true, force: true })
process.on('exit', cleanup)
process.on('SIGINT', () => process.exit(130))

const wal = await Wal.open(dir, { segmentBytes: 64 << 20 })
const rec = Buffer.alloc(100, 0x61)
let issued = 0
const run = async (n) => {
  const target = issued + n
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (issued < target) {
        issued++
        await wal.append(rec)
      }
    }),
  )
}
await run(200_000) // warm up: pools, JIT, first segments
// Drop whole old segments as we go, as a checkpointing user would: disk use stays bounded too.
const mib = (b) => (b / 2 ** 20).toFixed(1)
globalThis.gc?.()
const before = process.memoryUsage().rss
let peak = before
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100)
const start = performance.now()
for (let done = 0; done < total; done += 1_000_000) {
  await run(Math.min(1_000_000, total - done))
  await wal.truncateBefore(Math.max(0, wal.nextLsn - (128 << 20)))
}
const seconds = (performance.now() - start) / 1000
clearInterval(sampler)
globalThis.gc?.()
const after = process.memoryUsage().rss
await wal.close()
console.log(`${total.toLocaleString('en-US')} durable appends in ${seconds.toFixed(1)} s (${Math.round(total / seconds).toLocaleString('en-US')}/s)`)
console.log(`RSS ${mib(before)} MiB -> ${mib(after)} MiB (growth ${mib(after - before)} MiB, peak growth ${mib(peak - before)} MiB)`)
