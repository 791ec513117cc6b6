// The records a RaftLog writes: an append of several entries is one BATCH record (each entry
// framed by a 4-byte length), one entry or an append past the record limit is one ENTRY record
// per entry, and logs mixing both read back and reopen alike. A BATCH record whose own lengths
// do not add up is reported as damage, and the files are left as they were.
import path from 'node:path'

import test from 'ava'

import { RaftLog } from '../dist/index.mjs'
import { Wal, fileBytes, tmpDir, readAll, rejectsWith } from './helpers.mjs'

const ENTRY_HEADER = 22
const data = (i, n = 40 + (i % 13)) => Buffer.alloc(n, i % 251)

/** The records of the RaftLog in `dir`, read through a read-only Wal once the log is closed. */
async function records(dir) {
  const wal = await Wal.open(path.join(dir, 'log'), { readOnly: true })
  try {
    return await readAll(wal)
  } finally {
    await wal.close()
  }
}

test('one record per append of several entries, one per entry otherwise; mixed logs read back and reopen', async (t) => {
  const dir = tmpDir(t)
  // Small enough that an append of 10 × 3,000 B cannot be one record.
  const opts = { maxEntryBytes: 20_000 }
  let log = await RaftLog.open(dir, opts)
  const batch = (first, n, term, size) => Array.from({ length: n }, (_, k) => ({ index: first + k, term, data: data(first + k, size?.(k)) }))
  await log.append(batch(1, 64, 1, () => 256)) // one BATCH record
  await log.append(batch(65, 1, 1)) // one ENTRY record
  await log.append([...batch(66, 3, 1), ...batch(69, 3, 2)]) // one BATCH record, terms varying
  await log.append(batch(72, 10, 2, () => 3000)) // ten ENTRY records: 30,000 B is past the limit
  await log.append(batch(40, 5, 3)) // conflicts inside the first BATCH record: entries 40-44 replace 40-81
  await log.close()

  const recs = await records(dir)
  t.deepEqual(
    recs.map((r) => r.data[0]),
    [5, 1, 5, ...Array(10).fill(1), 5],
    'record kinds: BATCH, ENTRY, BATCH, ten ENTRY, BATCH',
  )
  t.is(recs[0].data.length, ENTRY_HEADER + 64 * 4 + 64 * 256, 'a batch frames each entry with 4 bytes')
  t.is(recs[2].data[1], 1, 'a batch whose terms vary says so, and carries them')

  const want = [...batch(1, 39, 1, () => 256), ...batch(40, 5, 3)]
  const check = async (l, when) => {
    t.is(l.lastIndex(), 44, when)
    t.deepEqual(l.lastLogId(), { index: 44, term: 3 }, when)
    const all = await l.entries(1, 100)
    t.deepEqual(
      all.map((e) => [e.index, e.term, Buffer.from(e.data).toString('hex')]),
      want.map((e) => [e.index, e.term, e.data.toString('hex')]),
      when,
    )
    // Point reads and short ranges inside one record, and across two.
    for (const [lo, hi] of [[7, 8], [38, 42], [39, 41], [44, 45]]) {
      t.deepEqual((await l.entries(lo, hi)).map((e) => e.index), want.slice(lo - 1, hi - 1).map((e) => e.index), `${when}: [${lo}, ${hi})`)
    }
    t.deepEqual(Buffer.from((await l.entry(39)).data), want[38].data, when)
    t.is(await l.entry(45), undefined, when)
    t.deepEqual((await l.entries(1, 100, { maxBytes: 600 })).map((e) => e.index), [1, 2], `${when}: limited`)
  }
  log = await RaftLog.open(dir, opts)
  await check(log, 'after reopen')
  // The terms of a varied batch survive replay too: rewrite the log's end with one and reopen.
  await log.append([...batch(45, 2, 3), ...batch(47, 2, 4)])
  want.push(...batch(45, 2, 3), ...batch(47, 2, 4))
  await log.close()
  log = await RaftLog.open(dir, opts)
  t.deepEqual(
    (await log.entries(44, 49)).map((e) => [e.index, e.term]),
    [[44, 3], [45, 3], [46, 3], [47, 4], [48, 4]],
  )
  t.is(log.term(46), 3)
  t.is(log.term(47), 4)
  await log.close()
})

test('a batch record whose lengths do not add up is damage: open fails with ERR_CORRUPT and changes nothing', async (t) => {
  for (const [what, rec] of [
    ['lengths past the data', batchRecord({ count: 2, first: 3, term: 1, lengths: [10, 10], data: Buffer.alloc(5) })],
    ['data past the lengths', batchRecord({ count: 2, first: 3, term: 1, lengths: [1, 1], data: Buffer.alloc(5) })],
    ['no entries', batchRecord({ count: 0, first: 3, term: 1, lengths: [], data: Buffer.alloc(0) })],
    ['a count past the record', batchRecord({ count: 1000, first: 3, term: 1, lengths: [1], data: Buffer.alloc(1) })],
  ]) {
    const dir = tmpDir(t)
    const log = await RaftLog.open(dir)
    await log.append([
      { index: 1, term: 1, data: 'a' },
      { index: 2, term: 1, data: 'b' },
    ])
    await log.close()
    // A record RaftLog could not have written, with a valid checksum.
    const wal = await Wal.open(path.join(dir, 'log'))
    await wal.append(rec)
    await wal.close()
    const before = fileBytes(dir)
    const e = await rejectsWith(t, RaftLog.open(dir), 'ERR_CORRUPT', what)
    t.regex(e.message, /batch/, what)
    t.deepEqual(fileBytes(dir), before, `${what}: the files changed`)
  }
})

function batchRecord({ count, first, term, lengths, data }) {
  const head = Buffer.alloc(ENTRY_HEADER + 4 * lengths.length)
  head[0] = 5
  head.writeUInt32LE(count, 2)
  head.writeBigUInt64LE(BigInt(first), 6)
  head.writeBigUInt64LE(BigInt(term), 14)
  lengths.forEach((n, k) => head.writeUInt32LE(n, ENTRY_HEADER + 4 * k))
  return Buffer.concat([head, data])
}

test('a byte budget over a long range returns exactly the longest prefix within it, across the windows it reads in', async (t) => {
  const log = await RaftLog.open(path.join(tmpDir(t), 'raft'))
  t.teardown(() => log.close())
  // Batches and single entries, sizes 0..99, some entries replaced by a conflicting append.
  let next = 1
  while (next <= 3000) {
    const n = next % 7 === 0 ? 1 : 1 + (next % 50)
    await log.append(Array.from({ length: n }, (_, k) => ({ index: next + k, term: 1, data: Buffer.alloc((next + k) % 100, 1) })))
    next += n
  }
  await log.append(Array.from({ length: 40 }, (_, k) => ({ index: 1500 + k, term: 2, data: Buffer.alloc((1500 + k) % 100, 2) })))
  const all = await log.entries(1, 1540)
  t.is(all.length, 1539)
  for (const [lo, hi, maxBytes] of [[1, 1540, 0], [1, 1540, 150], [1, 1540, 12_345], [1, 1540, 60_000], [300, 1540, 40_000], [1, 1_000_000, 77_000], [1499, 1540, 1_000_000]]) {
    const want = []
    let bytes = 0
    for (const e of all.filter((e) => e.index >= lo && e.index < hi)) {
      if (want.length > 0 && bytes + e.data.length > maxBytes) break
      bytes += e.data.length
      want.push(e)
    }
    const got = await log.entries(lo, hi, { maxBytes })
    t.deepEqual(got.map((e) => [e.index, e.term, e.data.length]), want.map((e) => [e.index, e.term, e.data.length]), `[${lo}, ${hi}) within ${maxBytes}`)
  }
  t.is((await log.entries(1, 1540, { maxBytes: Infinity })).length, 1539)
})
