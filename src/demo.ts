// The Quick start's main job: an ingest demo. Many concurrent writers append records that are
// acknowledged only once durable; the log is then reopened and every acknowledged record is
// checked. Usage: node dist/demo.js [dir] (default ./data/demo-wal).
import { Wal } from './wal.js'

async function main(): Promise<void> {
  const dir = process.argv[2] ?? './data/demo-wal'
  const writers = 64
  const perWriter = 500
  let wal = await Wal.open(dir)
  const before = wal.nextLsn
  const acknowledged = new Map<number, string>()
  const started = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) {
        const body = JSON.stringify({ writer: w, seq: i, at: Date.now() })
        acknowledged.set(await wal.append(body), body)
      }
    }),
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  await wal.close()

  wal = await Wal.open(dir)
  let found = 0
  for await (const { lsn, data } of wal.entries({ from: before })) {
    const expected = acknowledged.get(lsn)
    if (expected === undefined || expected !== data.toString()) throw new Error(`unexpected record at LSN ${lsn}`)
    found++
  }
  await wal.close()
  if (found !== acknowledged.size) throw new Error(`expected ${acknowledged.size} records, found ${found}`)
  const n = writers * perWriter
  console.log(`appended ${n} durable records from ${writers} concurrent writers in ${seconds.toFixed(2)} s (${Math.round(n / seconds)} records/s)`)
  console.log(`reopened ${dir}: all ${found} acknowledged records present and intact`)
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e)
  process.exit(1)
})
