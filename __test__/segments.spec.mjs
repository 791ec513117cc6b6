// Segment rotation, and truncateFrom / truncateBefore across segments and reopen.
import fs from 'node:fs'

import test from 'ava'

import path from 'node:path'

import {
  Wal,
  SMALL,
  tmpDir,
  bytes,
  readAll,
  assertRecords,
  rejectsWith,
  segments,
  locate,
  segName,
  segmentHeader,
  SEGMENT_HEADER,
} from './helpers.mjs'

const MAX = SMALL.maxRecordBytes

/** Sizes that exercise rotation: tiny, mid, and right at (and near) maxRecordBytes. */
function sizeOf(i) {
  const pattern = [0, 1, 17, MAX, 200, MAX - 1, 3000, 16, 1000, MAX - 8, 2047, 64, 3500, 5, MAX - 100]
  return pattern[i % pattern.length]
}

/** Build a multi-segment log by mixing awaited appends, concurrent appends and batches. */
async function buildLog(wal, n, seed = 1) {
  const expected = []
  let i = 0
  while (i < n) {
    if (i % 10 < 5) {
      const d = bytes(sizeOf(i), seed * 100000 + i)
      expected.push({ lsn: await wal.append(d), data: d })
      i++
    } else if (i % 10 < 8) {
      const ds = [0, 1, 2].map((k) => bytes(sizeOf(i + k), seed * 100000 + i + k))
      const lsns = await Promise.all(ds.map((d) => wal.append(d)))
      ds.forEach((d, k) => expected.push({ lsn: lsns[k], data: d }))
      i += 3
    } else {
      const ds = [0, 1].map((k) => bytes(sizeOf(i + k), seed * 100000 + i + k))
      const lsns = await wal.appendBatch(ds)
      ds.forEach((d, k) => expected.push({ lsn: lsns[k], data: d }))
      i += 2
    }
  }
  return expected
}

test('many segment rotations with records up to maxRecordBytes survive reopen', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 300)
  for (let i = 1; i < expected.length; i++) t.true(expected[i].lsn > expected[i - 1].lsn)
  await assertRecords(t, wal, expected, 'live:')
  const next = wal.nextLsn
  await wal.close()

  const segs = segments(dir)
  t.true(segs.length > 100, `${segs.length} segments`)
  // Segment files are named by base LSN, one segment capacity apart.
  for (let i = 1; i < segs.length; i++) t.is(segs[i].base - segs[i - 1].base, SMALL.segmentBytes)
  // Every record lies inside the segment its LSN names.
  for (const e of expected) {
    const { pos } = locate(dir, e.lsn)
    t.true(pos >= SEGMENT_HEADER && pos + 8 + e.data.length <= SMALL.segmentBytes, `record ${e.lsn} fits its segment`)
  }

  wal = await Wal.open(dir, SMALL)
  t.is(wal.nextLsn, next)
  t.is(wal.recovery.records, expected.length)
  t.is(wal.recovery.tornBytes, 0)
  t.true(wal.recovery.segments > 100)
  await assertRecords(t, wal, expected, 'reopened:')

  // entries() crosses segment boundaries from any starting point, with any chunk size.
  const mid = expected[Math.floor(expected.length / 2)]
  const fromMid = await readAll(wal, { from: mid.lsn })
  t.deepEqual(
    fromMid.map((e) => e.lsn),
    expected.filter((e) => e.lsn >= mid.lsn).map((e) => e.lsn),
  )
  const seg5 = segments(dir)[5].base
  t.deepEqual(
    (await readAll(wal, { from: seg5 })).map((e) => e.lsn),
    expected.filter((e) => e.lsn >= seg5).map((e) => e.lsn),
    'from a segment base (inside its header)',
  )
  for (const chunkBytes of [1, 500, 5000]) {
    const got = await readAll(wal, { chunkBytes })
    t.is(got.length, expected.length, `chunkBytes ${chunkBytes}`)
    t.true(
      got.every((e, i) => e.lsn === expected[i].lsn && e.data.equals(expected[i].data)),
      `chunkBytes ${chunkBytes} contents`,
    )
  }

  // Appends continue after reopen and rotate further.
  const more = await buildLog(wal, 60, 2)
  t.true(more[0].lsn >= next)
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, [...expected, ...more], 'reopened twice:')
  await wal.close()
})

test('a batch larger than a segment spreads over several segments', async (t) => {
  const dir = tmpDir(t)
  const opts = { segmentBytes: 8192, maxRecordBytes: 8192 - 96 }
  let wal = await Wal.open(dir, opts)
  const ds = Array.from({ length: 60 }, (_, i) => bytes([7000, 10, 4000, 8096, 0][i % 5], i + 1))
  const lsns = await wal.appendBatch(ds)
  const expected = lsns.map((lsn, i) => ({ lsn, data: ds[i] }))
  for (let i = 1; i < lsns.length; i++) t.true(lsns[i] > lsns[i - 1])
  await assertRecords(t, wal, expected, 'live:')
  await wal.close()
  t.true(segments(dir).length > 20)
  wal = await Wal.open(dir, opts)
  await assertRecords(t, wal, expected, 'reopened:')
  await wal.close()
})

test('reopening with a different segmentBytes keeps old segments readable', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const a = await buildLog(wal, 40, 3)
  await wal.close()
  const opts = { segmentBytes: 16384, maxRecordBytes: 10000 }
  wal = await Wal.open(dir, opts)
  const big = bytes(10000, 9)
  const b = [{ lsn: await wal.append(big), data: big }, ...(await buildLog(wal, 40, 4))]
  await wal.close()
  wal = await Wal.open(dir, opts)
  await assertRecords(t, wal, [...a, ...b], 'mixed capacities:')
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, [...a, ...b], 'reopened with the old options:')
  await wal.close()
})

test('segment files never grow past segmentBytes', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, SMALL)
  // A record that fills the segment exactly, then another write: its commit marker must not
  // be written past the end of the full segment.
  await wal.append(bytes(MAX, 1))
  await wal.append('next')
  await buildLog(wal, 100, 5)
  await wal.close()
  const over = segments(dir).filter((s) => s.size > SMALL.segmentBytes)
  t.deepEqual(
    over.map((s) => `${s.name}: ${s.size} bytes`),
    [],
    'segments larger than their capacity',
  )
})

test('the default maxRecordBytes of segments just over 4 GiB is the usual 16 MiB', async (t) => {
  const dir = tmpDir(t)
  // 2^32 + 1000 bytes: a cast to 32 bits before taking the minimum once made the default 904.
  const wal = await Wal.open(dir, { segmentBytes: 2 ** 32 + 1000 })
  t.is(wal.maxRecordBytes, 16 << 20)
  const lsn = await wal.append(bytes(4096, 3))
  t.deepEqual(Buffer.from(await wal.read(lsn)), Buffer.from(bytes(4096, 3)))
  await rejectsWith(t, wal.append(bytes((16 << 20) + 1, 4)), 'ERR_RECORD_TOO_LARGE')
  await wal.close()
})

test('LSNs beyond 2^32 work end to end (a log whose oldest segment starts at 2^40)', async (t) => {
  // What a long-lived log looks like after truncateBefore dropped its early segments.
  const dir = tmpDir(t)
  const base = 2 ** 40
  fs.writeFileSync(path.join(dir, segName(base)), segmentHeader(base, SMALL.segmentBytes))
  let wal = await Wal.open(dir, SMALL)
  t.is(wal.nextLsn, base + SEGMENT_HEADER)
  const expected = await buildLog(wal, 60, 11)
  t.true(expected[0].lsn > base)
  t.true(expected.every((e) => Number.isSafeInteger(e.lsn)))
  await assertRecords(t, wal, expected, 'live:')
  const concurrent = await Promise.all(Array.from({ length: 300 }, (_, i) => wal.append(`c${i}`)))
  concurrent.forEach((lsn, i) => expected.push({ lsn, data: `c${i}` }))
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, expected, 'reopened:')
  const first = await wal.truncateBefore(expected[30].lsn)
  t.true(first > expected[0].lsn && first <= expected[30].lsn)
  await wal.truncateFrom(expected[50].lsn)
  const kept = expected.filter((e) => e.lsn >= first && e.lsn < expected[50].lsn)
  await assertRecords(t, wal, kept, 'truncated:')
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, kept, 'truncated, reopened:')
  await wal.close()
})

// truncateFrom

test('truncateFrom drops the record and everything after it, durably', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir)
  const expected = []
  for (let i = 0; i < 10; i++) {
    const d = `record ${i}`
    expected.push({ lsn: await wal.append(d), data: d })
  }
  const cut = expected[6].lsn
  await wal.truncateFrom(cut)
  t.is(wal.nextLsn, cut)
  const kept = expected.slice(0, 6)
  await assertRecords(t, wal, kept, 'after truncateFrom:')
  for (const e of expected.slice(6)) await rejectsWith(t, wal.read(e.lsn), 'ERR_NOT_FOUND')

  // New appends never take the LSN of a surviving record.
  const n1 = await wal.append('new 1')
  const n2 = await wal.append('new 2')
  t.true(n1 >= cut)
  t.true(n2 > n1)
  t.false(kept.some((e) => e.lsn === n1 || e.lsn === n2))
  const after = [...kept, { lsn: n1, data: 'new 1' }, { lsn: n2, data: 'new 2' }]
  await assertRecords(t, wal, after, 'after new appends:')
  await wal.close()

  wal = await Wal.open(dir)
  t.is(wal.recovery.records, 8)
  t.is(wal.recovery.tornBytes, 0)
  await assertRecords(t, wal, after, 'reopened:')
  const n3 = await wal.append('new 3')
  t.true(n3 > n2)
  await wal.close()
  wal = await Wal.open(dir)
  await assertRecords(t, wal, [...after, { lsn: n3, data: 'new 3' }], 'reopened twice:')
  await wal.close()
})

test('truncateFrom into an earlier segment removes later segment files', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 120)
  const before = segments(dir).length
  t.true(before > 30)
  const target = expected[40]
  const targetSeg = locate(dir, target.lsn).base
  await wal.truncateFrom(target.lsn)
  t.is(wal.nextLsn, target.lsn)
  t.false(
    segments(dir).some((s) => s.base > targetSeg + SMALL.segmentBytes),
    'segment files after the cut are removed (a freshly prepared next segment may remain)',
  )
  const kept = expected.slice(0, 40)
  await assertRecords(t, wal, kept, 'after truncateFrom:')
  await wal.close()

  wal = await Wal.open(dir, SMALL)
  t.is(wal.nextLsn, target.lsn)
  await assertRecords(t, wal, kept, 'reopened:')
  const more = await buildLog(wal, 60, 7)
  t.true(more[0].lsn >= target.lsn)
  t.true(segments(dir).length > 20, 'rotation resumes')
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, [...kept, ...more], 'reopened after appends:')
  await wal.close()
})

test('truncateFrom at the first record of a segment, and at firstLsn, survives reopen', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 50)
  // The first record of the third segment.
  const base = segments(dir)[2].base
  const k = expected.findIndex((e) => e.lsn >= base)
  await wal.truncateFrom(expected[k].lsn)
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, expected.slice(0, k), 'cut at a segment start:')
  const x = await wal.append('x')
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, [...expected.slice(0, k), { lsn: x, data: 'x' }], 'appended after cut:')

  // Now drop everything.
  const first = wal.firstLsn
  await wal.truncateFrom(first)
  t.is(wal.nextLsn, first)
  t.is(wal.firstLsn, wal.nextLsn)
  t.deepEqual(await readAll(wal), [])
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  t.is(wal.firstLsn, wal.nextLsn)
  t.is(wal.recovery.records, 0)
  const y = await wal.append('y')
  t.true(y >= first)
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  await assertRecords(t, wal, [{ lsn: y, data: 'y' }], 'emptied then appended:')
  await wal.close()
})

test('truncateFrom(nextLsn) is a no-op; other non-record positions are rejected', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const a = await wal.append('aaaa')
  const b = await wal.append('bbbb')
  const next = wal.nextLsn
  await wal.truncateFrom(next)
  t.is(wal.nextLsn, next)
  for (const bad of [a + 1, b + 3, next + 1, next + 1000, 0, a - 24 /* commit marker */]) {
    const err = await t.throwsAsync(wal.truncateFrom(bad))
    t.is(err.name, 'SturdyError', `truncateFrom(${bad})`)
    t.true(['ERR_INVALID_ARG', 'ERR_NOT_FOUND'].includes(err.code), `truncateFrom(${bad}): ${err.code}`)
  }
  t.is(wal.nextLsn, next)
  await assertRecords(t, wal, [
    { lsn: a, data: 'aaaa' },
    { lsn: b, data: 'bbbb' },
  ])
  await wal.close()
})

// truncateBefore

test('truncateBefore deletes old segments, moves firstLsn, keeps LSNs, survives reopen', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 150)
  const segsBefore = segments(dir)
  t.true(segsBefore.length > 40)

  const target = expected[80]
  const targetSeg = locate(dir, target.lsn).base
  const first = await wal.truncateBefore(target.lsn)
  t.is(wal.firstLsn, first)
  t.true(first <= target.lsn, 'the record at lsn is kept')
  t.true(first > expected[0].lsn, 'firstLsn moved up')
  t.true(first >= targetSeg && first < targetSeg + SMALL.segmentBytes, 'firstLsn is in the segment holding lsn')

  // Whole segments below the target's segment are gone; nothing at or after it is.
  const names = new Set(segments(dir).map((s) => s.name))
  for (const s of segsBefore) {
    if (s.base < targetSeg) t.false(names.has(s.name), `${s.name} deleted`)
    else if (s.size > SEGMENT_HEADER) t.true(names.has(s.name), `${s.name} kept`)
  }
  const kept = expected.filter((e) => e.lsn >= first)
  const gone = expected.filter((e) => e.lsn < first)
  t.true(gone.length > 0)
  await assertRecords(t, wal, kept, 'after truncateBefore:')
  for (const e of gone) await rejectsWith(t, wal.read(e.lsn), 'ERR_NOT_FOUND', `read(${e.lsn})`)
  t.throws(() => wal.readSync(gone[0].lsn), { code: 'ERR_NOT_FOUND' })
  t.deepEqual(
    (await readAll(wal, { from: 0 })).map((e) => e.lsn),
    kept.map((e) => e.lsn),
    'entries({from: 0}) starts at firstLsn',
  )
  await wal.close()

  wal = await Wal.open(dir, SMALL)
  t.is(wal.firstLsn, first)
  t.is(wal.recovery.records, kept.length)
  await assertRecords(t, wal, kept, 'reopened:')
  for (const e of gone.slice(-3)) await rejectsWith(t, wal.read(e.lsn), 'ERR_NOT_FOUND')
  const more = await buildLog(wal, 30, 9)
  t.true(more[0].lsn > kept[kept.length - 1].lsn)
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  t.is(wal.firstLsn, first)
  await assertRecords(t, wal, [...kept, ...more], 'reopened after appends:')
  await wal.close()
})

test('truncateBefore never deletes the active segment and is idempotent', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 40)
  t.is(await wal.truncateBefore(0), expected[0].lsn, 'nothing below 0')
  t.is(await wal.truncateBefore(expected[0].lsn), expected[0].lsn)
  const last = expected[expected.length - 1]
  const first = await wal.truncateBefore(wal.nextLsn)
  t.true(first <= last.lsn, 'the newest record survives')
  await assertRecords(
    t,
    wal,
    expected.filter((e) => e.lsn >= first),
    'after truncateBefore(nextLsn):',
  )
  t.is(await wal.truncateBefore(wal.nextLsn), first, 'again: no change')
  t.true(fs.existsSync(locate(dir, last.lsn).path))
  await wal.close()
})

test('truncateBefore drops a segment once all of its records are below lsn', async (t) => {
  // Documented: "drop whole segments whose records are all < lsn".
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 40)
  const seg0 = segments(dir)[0]
  const inSeg0 = expected.filter((e) => e.lsn < seg0.base + SMALL.segmentBytes)
  const lastOfSeg0 = inSeg0[inSeg0.length - 1]
  const first = await wal.truncateBefore(lastOfSeg0.lsn + 1)
  t.false(fs.existsSync(seg0.path), `${seg0.name} (all records < ${lastOfSeg0.lsn + 1}) is deleted`)
  t.is(first, expected[inSeg0.length].lsn)
  await wal.close()
})

test('truncateFrom and truncateBefore together, then reopen', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, SMALL)
  const expected = await buildLog(wal, 100)
  const first = await wal.truncateBefore(expected[30].lsn)
  await wal.truncateFrom(expected[70].lsn)
  const kept = expected.filter((e) => e.lsn >= first && e.lsn < expected[70].lsn)
  await assertRecords(t, wal, kept, 'live:')
  await wal.close()
  wal = await Wal.open(dir, SMALL)
  t.is(wal.firstLsn, first)
  t.is(wal.nextLsn, expected[70].lsn)
  await assertRecords(t, wal, kept, 'reopened:')
  await wal.close()
  t.false(fs.existsSync(`${dir}/${segName(0)}`))
})

// Serial: it counts the process's descriptors, which concurrent tests would open too.
test.serial('a log of many segments keeps a bounded number of files open, and reopens', async (t) => {
  if (!fs.existsSync('/proc/self/fd')) return t.pass('no /proc/self/fd to count descriptors with')
  const open = () => fs.readdirSync('/proc/self/fd').length
  const dir = tmpDir(t)
  for (const directWrites of [false, true]) {
    const before = open()
    const wal = await Wal.open(dir, { segmentBytes: 4096, directWrites })
    for (let i = 0; i < 150; i++) await wal.appendBatch([Buffer.alloc(1500, i), Buffer.alloc(1500, i)])
    let n = 0
    for await (const _ of wal.entries()) n++
    t.true(fs.readdirSync(dir).length > 150 * (directWrites ? 2 : 1), 'one segment per batch')
    // 64 of each kind at most, and a few for the lock and the directory.
    t.true(open() - before <= 2 * 64 + 8, `${open() - before} descriptors open for ${fs.readdirSync(dir).length} segments`)
    await wal.close()
    t.is(n, 300 * (directWrites ? 2 : 1))
  }
})
