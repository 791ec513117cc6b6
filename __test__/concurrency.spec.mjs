// Group commit under load: thousands of appends and batches in flight at once.
import test from 'ava'

import { Wal, tmpDir, bytes, readAll } from './helpers.mjs'

/** Record `i` of a workload: varied sizes (some empty), content unique to `i`. */
function record(i, maxLen) {
  const len = i % 97 === 0 ? 0 : (i * 7919) % maxLen
  if (i % 3 === 0) return `rec ${i} ${'é'.repeat(len >> 2)}` // strings, multi-byte
  return bytes(len, i + 1)
}

const asBytes = (d) => (typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d))

/**
 * Issue `total` records in one event-loop turn, mixing single appends and batches, without
 * awaiting anything; returns the records in call order with their LSN promises.
 */
function issue(wal, total, maxLen, start = 0) {
  const calls = [] // { records: [...], promise } in call order
  let i = start
  while (i < start + total) {
    if (i % 50 === 7) {
      const n = 1 + (i % 6)
      const recs = []
      for (let k = 0; k < n && i < start + total; k++) recs.push(record(i++, maxLen))
      calls.push({ records: recs, promise: wal.appendBatch(recs) })
    } else {
      const r = record(i++, maxLen)
      calls.push({ records: [r], promise: wal.append(r).then((lsn) => [lsn]) })
    }
  }
  return calls
}

async function settle(calls) {
  const lsnLists = await Promise.all(calls.map((c) => c.promise))
  const out = []
  calls.forEach((c, k) => {
    c.records.forEach((r, j) => out.push({ lsn: lsnLists[k][j], data: asBytes(r) }))
  })
  return out
}

function assertIncreasing(t, expected) {
  let bad = 0
  for (let i = 1; i < expected.length; i++) if (!(expected[i].lsn > expected[i - 1].lsn)) bad++
  t.is(bad, 0, 'LSNs strictly increase in call order')
  t.is(new Set(expected.map((e) => e.lsn)).size, expected.length, 'LSNs are distinct')
  t.true(expected.every((e) => Number.isSafeInteger(e.lsn) && e.lsn >= 0))
}

/** The expected records are there in the open log, and again after closing and reopening it. */
async function assertLiveAndReopened(t, wal, dir, expected) {
  await assertContents(t, wal, expected, 'live')
  await wal.close()
  const again = await Wal.open(dir)
  await assertContents(t, again, expected, 'reopened')
  await again.close()
}

async function assertContents(t, wal, expected, label) {
  const got = await readAll(wal)
  t.is(got.length, expected.length, `${label}: count`)
  let badLsn = 0
  let badData = 0
  for (let i = 0; i < expected.length; i++) {
    if (got[i]?.lsn !== expected[i].lsn) badLsn++
    else if (!got[i].data.equals(expected[i].data)) badData++
  }
  t.is(badLsn, 0, `${label}: entries() LSNs in call order`)
  t.is(badData, 0, `${label}: entries() payloads`)
  const reads = await Promise.all(expected.map((e) => wal.read(e.lsn)))
  t.is(reads.filter((r, i) => !r.equals(expected[i].data)).length, 0, `${label}: read() payloads`)
}

for (const [name, options, maxLen] of [
  ['default segments', {}, 2000],
  ['64 KiB segments (groups span many segments)', { segmentBytes: 65536, maxRecordBytes: 8192 }, 3000],
]) {
  test(`5,000 concurrent appends plus batches get increasing LSNs and read back (${name})`, async (t) => {
    const dir = tmpDir(t)
    let wal = await Wal.open(dir, options)
    const calls = issue(wal, 5000, maxLen)
    t.true(calls.length > 4000)
    t.true(calls.some((c) => c.records.length > 1), 'batches are interleaved')
    const expected = await settle(calls)
    t.is(expected.length, 5000)
    assertIncreasing(t, expected)
    t.true(wal.nextLsn > expected[expected.length - 1].lsn)
    await assertContents(t, wal, expected, 'live')
    await wal.close()

    wal = await Wal.open(dir, options)
    t.is(wal.recovery.records, 5000)
    t.is(wal.recovery.tornBytes, 0)
    if (options.segmentBytes) t.true(wal.recovery.segments > 10, `${wal.recovery.segments} segments`)
    await assertContents(t, wal, expected, 'reopened')
    await wal.close()
  })
}

test('appends issued over many turns without awaiting keep call order', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { segmentBytes: 1 << 20, maxRecordBytes: 4096 })
  const calls = []
  for (let turn = 0; turn < 20; turn++) {
    calls.push(...issue(wal, 250, 1500, turn * 250))
    // Let the group go to the committer while the next turn's appends pile up.
    await new Promise((resolve) => setImmediate(resolve))
  }
  const expected = await settle(calls)
  t.is(expected.length, 5000)
  assertIncreasing(t, expected)
  await assertLiveAndReopened(t, wal, dir, expected)
})

test('a group larger than 4 MiB is split without losing order', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const calls = []
  for (let i = 0; i < 200; i++) {
    const r = bytes(40_000 + i, i)
    calls.push({ records: [r], promise: wal.append(r).then((l) => [l]) })
    if (i % 40 === 0) {
      const b = [bytes(100, i + 1000), bytes(70_000, i + 2000)]
      calls.push({ records: b, promise: wal.appendBatch(b) })
    }
  }
  const expected = await settle(calls)
  assertIncreasing(t, expected)
  await assertLiveAndReopened(t, wal, dir, expected)
})

test('concurrent readers see only whole, durable records while appends are in flight', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { segmentBytes: 65536, maxRecordBytes: 4096 })
  const written = new Map()
  const pending = []
  let checks = 0
  for (let turn = 0; turn < 30; turn++) {
    for (let i = 0; i < 50; i++) {
      const r = bytes((turn * 50 + i) % 3000, turn * 50 + i + 1)
      pending.push(
        wal.append(r).then((lsn) => {
          written.set(lsn, r)
          return lsn
        }),
      )
    }
    // The first read waits for the first group, which it must then see; the later reads race the
    // appends still in flight.
    const durable = turn === 0 ? await pending[0] : undefined
    // Whatever entries() returns now must be a prefix of durable records with exact bytes.
    const seen = await readAll(wal)
    if (durable !== undefined && !seen.some((e) => e.lsn === durable)) t.fail(`a read after LSN ${durable} was acknowledged does not return it`)
    for (let k = 1; k < seen.length; k++) if (!(seen[k].lsn > seen[k - 1].lsn)) t.fail('entries out of order')
    for (const e of seen) {
      const w = written.get(e.lsn)
      if (w === undefined) continue
      if (!e.data.equals(w)) t.fail(`record ${e.lsn} differs`)
      checks++
    }
  }
  await Promise.all(pending)
  const all = await readAll(wal)
  t.is(all.length, 1500)
  t.true(all.every((e) => written.get(e.lsn)?.equals(e.data)))
  t.log(`${checks} records compared while appends were in flight`)
  await wal.close()
})
