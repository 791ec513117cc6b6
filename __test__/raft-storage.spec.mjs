// How RaftLog uses its storage: purging drops whole segment files and rewrites nothing, reads
// racing a purge still succeed, the in-memory index holds across its chunk boundaries and at
// the largest indexes, and hard state lives apart from the entries.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import { RaftLog } from '../dist/index.mjs'
import { tmpDir, segments } from './helpers.mjs'

const OPTS = { segmentBytes: 64 << 10 }
const ent = (index, term, data = `i${index}t${term}`) => ({ index, term, data })
const range = (from, to, term, pad = '') =>
  Array.from({ length: to - from + 1 }, (_, k) => ent(from + k, term, `i${from + k}t${term}${pad}`))

test('purge drops whole segment files, rewrites none, and persists its boundary', async (t) => {
  const dir = tmpDir(t)
  const logDir = path.join(dir, 'log')
  const log = await RaftLog.open(dir, OPTS)
  const pad = 'p'.repeat(200)
  for (let i = 1; i <= 2000; i += 100) await log.append(range(i, i + 99, 1, pad))
  const before = segments(logDir)
  t.true(before.length >= 6, `${before.length} segments`)
  const bytesBefore = new Map(before.map((s) => [s.name, fs.readFileSync(s.path)]))

  await log.purge(1000)
  const after = segments(logDir)
  const dropped = before.filter((s) => !after.some((a) => a.name === s.name))
  t.true(dropped.length >= 2, `${dropped.length} segments dropped`)
  t.true(
    dropped.every((s) => s.base < after[0].base),
    'only the oldest segments go',
  )
  // What remains was only ever appended to: every byte written before is still there as it was.
  for (const s of after.filter((a) => bytesBefore.has(a.name))) {
    const old = bytesBefore.get(s.name)
    const now = fs.readFileSync(s.path)
    t.true(
      old.every((b, k) => b === 0 || now[k] === b),
      `${s.name} unchanged`,
    )
  }

  t.is(log.firstIndex(), 1001)
  t.is((await log.entry(1001)).data.toString(), `i1001t1${pad}`)
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.is(again.firstIndex(), 1001)
  t.deepEqual(again.lastPurgedLogId(), { index: 1000, term: 1 })
  t.is((await again.entries(1001, 2001)).length, 1000)
  // Purging everything, past the end, leaves an empty log that continues after the snapshot point.
  await again.purge({ index: 5000, term: 2 })
  t.true(segments(logDir).length <= 2)
  await again.append([ent(5001, 2)])
  await again.close()
  const third = await RaftLog.open(dir, OPTS)
  t.deepEqual(third.lastLogId(), { index: 5001, term: 2 })
  t.is(third.firstIndex(), 5001)
  await third.close()
})

test('reset drops old segments too', async (t) => {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, OPTS)
  for (let i = 1; i <= 1000; i += 100) await log.append(range(i, i + 99, 1, 'r'.repeat(200)))
  const before = segments(path.join(dir, 'log')).length
  await log.reset()
  t.true(segments(path.join(dir, 'log')).length < before)
  t.is(log.lastLogId(), undefined)
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.is(again.lastLogId(), undefined)
  t.deepEqual(await again.entries(0, 2000), [])
  await again.close()
})

test('reads racing a purge, truncation and reset complete with the data of the moment they were called', async (t) => {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, OPTS)
  const pad = 'q'.repeat(300)
  for (let i = 1; i <= 3000; i += 500) await log.append(range(i, i + 499, 1, pad))
  const reads = []
  for (let i = 1; i <= 2900; i += 97) reads.push([i, log.entries(i, i + 50), log.entry(i)])
  const purge = log.purge(2500)
  const truncate = log.truncateFrom(2800)
  for (const [i, range, one] of reads) {
    const got = await range
    t.is(got.length, 50, `range at ${i}`)
    t.true(got.every((e, k) => e.index === i + k && e.data.toString() === `i${i + k}t1${pad}`))
    t.is((await one).data.toString(), `i${i}t1${pad}`)
  }
  await Promise.all([purge, truncate])
  t.is(log.firstIndex(), 2501)
  t.is(log.lastIndex(), 2799)
  const late = log.entries(2501, 2600)
  const reset = log.reset()
  t.is((await late).length, 99)
  await reset
  await log.close()

  // Those ranges fall in one or two BATCH records each and are read record by record. A range
  // over more records is read as one scan through the segments, which a purge or reset must not
  // drop from under it: here each entry is a record of its own (one-entry appends), and wide
  // ranges are in flight when a purge, then a truncation and a reset, drop nearly every segment.
  // Entries of about 1 KB put some fifty segments under a scan: a drop that did not wait for the
  // scans would come while they are still going.
  const wideDir = tmpDir(t)
  const wideLog = path.join(wideDir, 'log')
  const wide = await RaftLog.open(wideDir, OPTS)
  const widePad = 'w'.repeat(1000)
  const data = (i) => `i${i}t1${widePad}`
  const appendEach = (from, to) =>
    Promise.all(Array.from({ length: to - from + 1 }, (_, k) => wide.append([ent(from + k, 1, data(from + k))])))
  const scan = (lo, hi) => [lo, hi, wide.entries(lo, hi)]
  const check = async ([lo, hi, read], at) => {
    const got = await read.catch((e) => e)
    if (got instanceof Error) return t.fail(`${at}: range ${lo}-${hi} failed: ${got.code} ${got.message}`)
    t.is(got.length, hi - lo, `${at}: range ${lo}-${hi}`)
    t.true(
      got.every((e, k) => e.index === lo + k && e.data.toString() === data(lo + k)),
      `${at}: range ${lo}-${hi}`,
    )
  }
  await appendEach(1, 3000) // awaited: a read of entries not yet durable waits, and would see the purge
  const held = segments(wideLog).length
  const scans = [scan(1, 3000), scan(1000, 2999), scan(2990, 3001)]
  const widePurge = wide.purge(2999)
  await Promise.all(scans.map((s) => check(s, 'racing a purge')))
  await widePurge
  t.is(wide.firstIndex(), 3000)
  t.true(segments(wideLog).length <= 2, `the purge dropped ${held - segments(wideLog).length} of ${held} segments`)
  await appendEach(3001, 6000)
  const moreScans = [scan(3000, 6001), scan(4000, 5500)]
  const wideTruncate = wide.truncateFrom(5000)
  const wideReset = wide.reset()
  await Promise.all(moreScans.map((s) => check(s, 'racing a truncation and a reset')))
  await Promise.all([wideTruncate, wideReset])
  t.is(wide.lastLogId(), undefined)
  t.true(segments(wideLog).length <= 2, 'the reset dropped the segments')
  await wide.close()
})

test('the index holds across its chunk boundaries: 20,000 entries, many terms, purge, truncate, conflict', async (t) => {
  const dir = tmpDir(t)
  const opts = { segmentBytes: 1 << 20 }
  const log = await RaftLog.open(dir, opts)
  const termOf = (i) => 1 + Math.floor(i / 777)
  const model = new Map()
  for (let i = 1; i <= 20_000; i += 1000) {
    const batch = Array.from({ length: 1000 }, (_, k) => ent(i + k, termOf(i + k)))
    await log.append(batch)
    for (const e of batch) model.set(e.index, e)
  }
  await log.purge(4097) // just past a chunk boundary
  for (let i = 1; i <= 4097; i++) model.delete(i)
  await log.truncateFrom(12_289) // one past a boundary
  for (let i = 12_289; i <= 20_000; i++) model.delete(i)
  const conflict = Array.from({ length: 5000 }, (_, k) => ent(8192 + k, 100, `c${8192 + k}`)) // spans a boundary
  await log.append(conflict)
  for (let i = 8192; i <= 12_288; i++) model.delete(i)
  for (const e of conflict) model.set(e.index, e)
  const want = [...model.values()].map((e) => [e.index, e.term, e.data])

  const check = async (l, at) => {
    t.is(l.firstIndex(), 4098, at)
    t.is(l.lastIndex(), 13_191, at)
    t.deepEqual(l.lastLogId(), { index: 13_191, term: 100 }, at)
    const got = (await l.entries(0, 20_000)).map((e) => [e.index, e.term, e.data.toString()])
    t.deepEqual(got, want, at)
    for (const i of [4097, 4098, 8191, 8192, 12_287, 12_288, 13_191, 13_192]) {
      const m = model.get(i)
      const e = await l.entry(i)
      t.deepEqual(e && [e.index, e.term, e.data.toString()], m && [m.index, m.term, m.data], `${at}: entry ${i}`)
      if (i !== 4097) t.is(l.term(i), m?.term, `${at}: term ${i}`)
    }
    t.is(l.term(4097), termOf(4097), `${at}: purged id's term`)
    let budget = 2000
    const limited = want.filter(([i]) => i >= 8000).filter(([, , d], k) => (budget -= d.length) >= 0 || k === 0)
    t.deepEqual(
      (await l.entries(8000, 9000, { maxBytes: 2000 })).map((e) => e.index),
      limited.map(([i]) => i),
      `${at}: limited range`,
    )
  }
  await check(log, 'live')
  await log.close()
  const again = await RaftLog.open(dir, opts)
  await check(again, 'after reopen')
  await again.close()
})

test('indexes and terms up to 2^53 - 1 round trip', async (t) => {
  const dir = tmpDir(t)
  const top = Number.MAX_SAFE_INTEGER
  const log = await RaftLog.open(dir, OPTS)
  await log.append([ent(top - 2, top - 1), ent(top - 1, top), ent(top, top)])
  await t.throwsAsync(log.append([ent(top + 1, top)]), { code: 'ERR_INVALID_ARG' })
  await log.saveHardState({ term: top, vote: top, commit: top })
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.deepEqual(again.lastLogId(), { index: top, term: top })
  t.is(again.firstIndex(), top - 2)
  t.deepEqual(
    (await again.entries(top - 2, top)).map((e) => [e.index, e.term]),
    [
      [top - 2, top - 1],
      [top - 1, top],
    ],
  )
  t.deepEqual(await again.hardState(), { term: top, vote: top, commit: top })
  await again.purge(top - 1)
  t.deepEqual(
    (await again.entries(0, top)).map((e) => e.index),
    [],
  )
  t.is((await again.entry(top)).index, top)
  await again.close()
})

test('hard state lives in its own log: purge and reset never drop it, and it stays small', async (t) => {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, OPTS)
  await log.saveHardState({ term: 1, vote: 'a', commit: 0 })
  for (let i = 1; i <= 3000; i += 500) await log.append(range(i, i + 499, 1, 'h'.repeat(100)))
  await log.purge(2999)
  await log.reset()
  for (let k = 0; k < 20_000; k += 500)
    await Promise.all(Array.from({ length: 500 }, (_, j) => log.saveHardState({ term: 2, vote: 'b', commit: k + j })))
  t.deepEqual(await log.hardState(), { term: 2, vote: 'b', commit: 19_999 })
  const hardBytes = segments(path.join(dir, 'hard-state')).reduce((a, s) => a + s.size, 0)
  t.true(hardBytes <= 5 * 64 * 1024, `${hardBytes} bytes of hard-state segments`)
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.deepEqual(await again.hardState(), { term: 2, vote: 'b', commit: 19_999 })
  await again.close()
})
