// Crash recovery: torn tails cut at every byte, garbage after the tail, and bit flips that are
// corruption (strict refuses, truncate cuts and reports).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import test from 'ava'

import {
  Wal as RealWal,
  SturdyError,
  SMALL,
  tmpDir,
  bytes,
  readAll,
  assertRecords,
  rejectsWith,
  openFails,
  segments,
  locate,
  flipBit,
  SEGMENT_HEADER,
  FRAME_HEADER,
  MARKER_LEN,
} from './helpers.mjs'

// These tests cut and damage segment files at exact byte positions and check where files end,
// so they run without preallocation (zero-filled space past the end); the simulated-disk
// schedules and property tests cover preallocated segments.
const plain = (options = {}) => ({ preallocate: false, ...options })
const Wal = {
  open: (dir, options) => RealWal.open(dir, plain(options)),
  openSync: (dir, options) => RealWal.openSync(dir, plain(options)),
}

/** Run `fn(dir)` on a throwaway copy of the closed log in `src`; the copy is removed after. */
async function onCopy(src, fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-copy-'))
  try {
    fs.cpSync(src, dir, { recursive: true })
    return await fn(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** `{ name: bytes }` of every segment file, to check a failed open changed nothing. */
function snapshot(dir) {
  return Object.fromEntries(segments(dir).map((s) => [s.name, fs.readFileSync(s.path).toString('base64')]))
}

/** Whether `wal` holds exactly `expected`; returns a description of the first difference. */
async function differs(wal, expected) {
  const got = await readAll(wal)
  if (got.length !== expected.length) return `${got.length} records, expected ${expected.length}`
  for (let i = 0; i < got.length; i++) {
    if (got[i].lsn !== expected[i].lsn) return `record ${i} at LSN ${got[i].lsn}, expected ${expected[i].lsn}`
    if (!got[i].data.equals(Buffer.from(expected[i].data))) return `record ${i} (LSN ${got[i].lsn}) has the wrong bytes`
  }
  for (const e of expected) {
    const d = await wal.read(e.lsn)
    if (!d.equals(Buffer.from(e.data))) return `read(${e.lsn}) has the wrong bytes`
  }
  return null
}

/** Records appended one awaited call at a time: each is its own write behind its own marker. */
async function appendEach(wal, datas) {
  const out = []
  for (const d of datas) out.push({ lsn: await wal.append(d), data: d })
  return out
}

/**
 * After a recovery that cut the log: appends continue above the survivors, and the log (with
 * the new record) survives a strict reopen with no further cuts. Returns a problem or null.
 */
async function appendAndReopen(dir, wal, survivors, options = {}) {
  const prevMax = survivors.length ? survivors[survivors.length - 1].lsn : -1
  const lsn = await wal.append('appended after recovery')
  await wal.close()
  if (!(lsn > prevMax)) return `new LSN ${lsn} not above surviving ${prevMax}`
  let again
  try {
    again = await Wal.open(dir, { ...options, recovery: 'strict' })
  } catch (e) {
    return `strict reopen after recovery + append failed: ${e.code} ${e.message}`
  }
  try {
    const r = again.recovery
    if (r.tornBytes !== 0 || r.droppedBytes !== 0) return `second reopen cut again: ${JSON.stringify(r)}`
    return await differs(again, [...survivors, { lsn, data: 'appended after recovery' }])
  } finally {
    await again.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Torn tails

/**
 * Close the log in `src`, then cut the file holding `lastLsn` to every length in
 * [from, fileEnd] and check recovery. `validEnd(L)` is the position where valid data ends
 * after cutting to length L.
 */
async function cutEveryByte(t, src, { earlier, last, lastLsn, from, options = {}, step = 1 }) {
  const { name, pos, size } = locate(src, lastLsn)
  const end = pos + FRAME_HEADER + last.length
  // The clean close sealed the log just past it where the segment had room; every cut below
  // takes the seal away, as a crash would have left none.
  t.true(size === end || size === end + MARKER_LEN, `the last record (and the seal) end the file: ${size} bytes, the record ends at ${end}`)
  const problems = []
  let tried = 0
  const lengths = []
  for (let L = from; L <= end; L += step) lengths.push(L)
  if (lengths[lengths.length - 1] !== end) lengths.push(end)
  for (const L of lengths) {
    tried++
    await onCopy(src, async (dir) => {
      fs.truncateSync(path.join(dir, name), L)
      let wal
      try {
        wal = await Wal.open(dir, options)
      } catch (e) {
        problems.push(`L=${L}: open failed: ${e.code} ${e.message}`)
        return
      }
      try {
        const complete = L === end
        const survivors = complete ? [...earlier, { lsn: lastLsn, data: last }] : earlier
        const markerStart = pos - MARKER_LEN
        // The marker of the last write survives when the cut is at or after the record.
        const validEnd = L >= pos ? pos : markerStart
        const expectTorn = complete ? 0 : L - validEnd
        const r = wal.recovery
        if (r.tornBytes !== expectTorn) problems.push(`L=${L}: tornBytes ${r.tornBytes}, expected ${expectTorn}`)
        if (r.droppedBytes !== 0 || r.cutAt !== undefined) problems.push(`L=${L}: reported damage ${JSON.stringify(r)}`)
        if (r.records !== survivors.length) problems.push(`L=${L}: recovery.records ${r.records}, expected ${survivors.length}`)
        const diff = await differs(wal, survivors)
        if (diff) problems.push(`L=${L}: ${diff}`)
        if (!complete) {
          try {
            await wal.read(lastLsn)
            problems.push(`L=${L}: the torn record is still readable`)
          } catch (e) {
            if (e.code !== 'ERR_NOT_FOUND') problems.push(`L=${L}: read(torn) gave ${e.code}`)
          }
          if (wal.nextLsn > lastLsn) problems.push(`L=${L}: nextLsn ${wal.nextLsn} is past the torn record ${lastLsn}`)
        }
        const after = await appendAndReopen(dir, wal, survivors, options)
        if (after) problems.push(`L=${L}: ${after}`)
      } finally {
        await wal.close()
      }
    })
  }
  t.true(tried >= Math.min(lengths.length, 20))
  t.deepEqual(problems.slice(0, 20), [], `${problems.length} of ${tried} cut lengths went wrong`)
}

test('the last record cut at every byte offset is a torn tail', async (t) => {
  const src = tmpDir(t)
  const wal = await Wal.open(src)
  const earlier = await appendEach(
    wal,
    Array.from({ length: 30 }, (_, i) => (i % 4 === 0 ? `string ${i} ✓` : bytes(20 + i * 5, i))),
  )
  const last = bytes(200, 77)
  const lastLsn = await wal.append(last)
  await wal.close()
  const { pos } = locate(src, lastLsn)
  // From the start of the last write (its commit marker) to the end of the record.
  await cutEveryByte(t, src, { earlier, last, lastLsn, from: pos - MARKER_LEN })
})

test('a torn first record of a new segment (cut at every byte) is a torn tail', async (t) => {
  const src = tmpDir(t)
  const wal = await Wal.open(src, SMALL)
  const earlier = []
  const lastSize = 150
  // Fill segments until the next record cannot fit in the current one.
  for (let i = 0; ; i++) {
    const d = bytes(100 + (i % 7) * 37, i)
    const lsn = await wal.append(d)
    earlier.push({ lsn, data: d })
    const endPos = (lsn % SMALL.segmentBytes) + FRAME_HEADER + d.length
    if (i > 40 && endPos + MARKER_LEN + FRAME_HEADER + lastSize > SMALL.segmentBytes) break
  }
  const last = bytes(lastSize, 999)
  const lastLsn = await wal.append(last)
  await wal.close()
  t.is(lastLsn % SMALL.segmentBytes, SEGMENT_HEADER + MARKER_LEN, 'the last record opens a new segment')
  // From the end of the segment header: the new segment's commit marker, then the record.
  await cutEveryByte(t, src, { earlier, last, lastLsn, from: SEGMENT_HEADER, options: SMALL })
})

test('a torn record of maxRecordBytes (sampled cut offsets) is a torn tail', async (t) => {
  const src = tmpDir(t)
  const wal = await Wal.open(src, SMALL)
  const earlier = await appendEach(
    wal,
    Array.from({ length: 12 }, (_, i) => bytes(500 + i, i)),
  )
  const last = bytes(SMALL.maxRecordBytes, 5)
  const lastLsn = await wal.append(last)
  await wal.close()
  await cutEveryByte(t, src, { earlier, last, lastLsn, from: SEGMENT_HEADER, options: SMALL, step: 29 })
})

test('a torn batch keeps only whole records from before the cut', async (t) => {
  const src = tmpDir(t)
  let wal = await Wal.open(src)
  const earlier = await appendEach(wal, ['one', 'two', 'three'])
  const batch = [bytes(40, 1), bytes(0, 2), bytes(33, 3)]
  const lsns = await wal.appendBatch(batch)
  await wal.close()
  const { name, pos: firstPos, size } = locate(src, lsns[0])
  const problems = []
  for (let L = firstPos - MARKER_LEN; L < size; L++) {
    await onCopy(src, async (dir) => {
      fs.truncateSync(path.join(dir, name), L)
      wal = await Wal.open(dir)
      try {
        const got = await readAll(wal)
        const head = got.slice(0, earlier.length)
        if (head.length !== 3 || head.some((e, i) => e.lsn !== earlier[i].lsn || e.data.toString() !== earlier[i].data)) {
          problems.push(`L=${L}: earlier records damaged`)
        }
        const rest = got.slice(earlier.length)
        // Whatever survives of the batch is a prefix of it, each record whole and wholly inside L.
        rest.forEach((e, i) => {
          if (e.lsn !== lsns[i] || !e.data.equals(batch[i])) problems.push(`L=${L}: batch record ${i} wrong`)
          if (e.lsn - lsns[0] + firstPos + FRAME_HEADER + e.data.length > L) problems.push(`L=${L}: record ${i} extends past the cut`)
        })
        if (wal.recovery.tornBytes !== L - (wal.nextLsn - (lsns[0] - firstPos))) {
          problems.push(`L=${L}: tornBytes ${wal.recovery.tornBytes} does not match the cut`)
        }
        const after = await appendAndReopen(dir, wal, got)
        if (after) problems.push(`L=${L}: ${after}`)
      } finally {
        await wal.close()
      }
    })
  }
  t.deepEqual(problems.slice(0, 20), [], `${problems.length} problems`)
})

for (const [kind, make] of [
  ['zeros', (n) => Buffer.alloc(n)],
  ['0xff bytes', (n) => Buffer.alloc(n, 0xff)],
  ['random garbage', (n) => bytes(n, n + 17)],
]) {
  test(`${kind} after the last record are cut as a torn tail`, async (t) => {
    const src = tmpDir(t)
    const wal = await Wal.open(src)
    const expected = await appendEach(wal, ['alpha', bytes(100, 1), '', 'omega'])
    await wal.close()
    const { name } = locate(src, expected[expected.length - 1].lsn)
    for (const n of [1, 7, 8, 23, 24, 100, 5000]) {
      await onCopy(src, async (dir) => {
        fs.appendFileSync(path.join(dir, name), make(n))
        let w = await Wal.open(dir)
        t.is(w.recovery.tornBytes, n, `${n} bytes of ${kind}`)
        t.is(w.recovery.droppedBytes, 0)
        t.is(await differs(w, expected), null)
        t.is(await appendAndReopen(dir, w, expected), null)
        await w.close()
        // 'truncate' mode treats it the same way.
        fs.appendFileSync(path.join(dir, name), make(n))
        w = await Wal.open(dir, { recovery: 'truncate' })
        t.is(w.recovery.tornBytes, n)
        t.is(w.recovery.cutAt, undefined)
        await w.close()
      })
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Corruption: one flipped bit before the last write

/** A single-segment log of records each written (and acknowledged) on its own. */
async function singleSegmentLog(t) {
  const src = tmpDir(t)
  const wal = await Wal.open(src)
  const recs = await appendEach(
    wal,
    Array.from({ length: 12 }, (_, i) => bytes(40, i + 1)),
  )
  await wal.close()
  return { src, recs }
}

/**
 * Flip each bit in [start, end) of `file` (in a copy of `src`) and check that strict open fails
 * with ERR_CORRUPT at `offset`, and that truncate open keeps `kept` and reports the cut at
 * `cutLsn`. `filter(bit)` picks the bits to try.
 */
async function flipEachBit(t, { src, fileName, start, end, offset, kept, cutLsn, expectDropped, options = {}, every = 1 }) {
  const problems = []
  let tried = 0
  for (let bit = start * 8; bit < end * 8; bit += every) {
    tried++
    await onCopy(src, async (dir) => {
      const file = path.join(dir, fileName)
      flipBit(file, bit >> 3, bit & 7)
      const before = snapshot(dir)
      try {
        const w = await Wal.open(dir, options)
        problems.push(`bit ${bit}: strict open succeeded (records: ${w.recovery.records}, tornBytes: ${w.recovery.tornBytes})`)
        await w.close()
        return
      } catch (e) {
        if (!(e instanceof SturdyError) || e.code !== 'ERR_CORRUPT') problems.push(`bit ${bit}: ${e.code} ${e.message}`)
        else {
          if (e.segment !== fileName) problems.push(`bit ${bit}: segment ${e.segment}, expected ${fileName}`)
          if (offset !== undefined && e.offset !== offset) problems.push(`bit ${bit}: offset ${e.offset}, expected ${offset}`)
          if (typeof e.offset !== 'number') problems.push(`bit ${bit}: no offset`)
        }
      }
      if (JSON.stringify(snapshot(dir)) !== JSON.stringify(before)) problems.push(`bit ${bit}: the failed strict open changed the files`)

      const w = await Wal.open(dir, { ...options, recovery: 'truncate' })
      try {
        const r = w.recovery
        if (r.cutAt !== cutLsn) problems.push(`bit ${bit}: cutAt ${r.cutAt}, expected ${cutLsn}`)
        if (typeof r.cutReason !== 'string' || r.cutReason.length === 0) problems.push(`bit ${bit}: no cutReason`)
        if (expectDropped !== undefined && r.droppedBytes !== expectDropped) problems.push(`bit ${bit}: droppedBytes ${r.droppedBytes}, expected ${expectDropped}`)
        if (!(r.droppedBytes > 0)) problems.push(`bit ${bit}: droppedBytes ${r.droppedBytes}`)
        if (r.records !== kept.length) problems.push(`bit ${bit}: recovery.records ${r.records}, expected ${kept.length}`)
        if (w.nextLsn !== cutLsn) problems.push(`bit ${bit}: nextLsn ${w.nextLsn}, expected ${cutLsn}`)
        const diff = await differs(w, kept)
        if (diff) problems.push(`bit ${bit}: ${diff}`)
        const after = await appendAndReopen(dir, w, kept, options)
        if (after) problems.push(`bit ${bit}: ${after}`)
      } finally {
        await w.close()
      }
    })
  }
  t.true(tried > 0)
  t.deepEqual(problems.slice(0, 20), [], `${problems.length} problems over ${tried} flipped bits`)
}

test('a flipped bit in the frame header or payload of a middle record is corruption', async (t) => {
  const { src, recs } = await singleSegmentLog(t)
  const k = 5
  const { name, pos, size } = locate(src, recs[k].lsn)
  await flipEachBit(t, {
    src,
    fileName: name,
    start: pos,
    end: pos + FRAME_HEADER + recs[k].data.length,
    offset: pos,
    kept: recs.slice(0, k),
    cutLsn: recs[k].lsn,
    expectDropped: size - pos,
  })
})

test('a flipped bit in the commit marker before a middle record is corruption', async (t) => {
  const { src, recs } = await singleSegmentLog(t)
  const k = 7
  const { name, pos, size } = locate(src, recs[k].lsn)
  await flipEachBit(t, {
    src,
    fileName: name,
    start: pos - MARKER_LEN,
    end: pos,
    offset: pos - MARKER_LEN,
    kept: recs.slice(0, k),
    cutLsn: recs[k].lsn - MARKER_LEN,
    expectDropped: size - (pos - MARKER_LEN),
  })
})

test('a flipped bit in the first record of a log is corruption', async (t) => {
  const { src, recs } = await singleSegmentLog(t)
  const { name, pos, size } = locate(src, recs[0].lsn)
  await flipEachBit(t, {
    src,
    fileName: name,
    start: pos,
    end: pos + FRAME_HEADER + 40,
    offset: pos,
    kept: [],
    cutLsn: recs[0].lsn,
    expectDropped: size - pos,
    every: 3,
  })
})

test('a flipped bit in the first commit marker of the log is corruption, not a torn tail', async (t) => {
  // Eleven acknowledged writes follow the damaged marker: dropping them silently is data loss.
  const { src, recs } = await singleSegmentLog(t)
  const { name, pos } = locate(src, recs[0].lsn)
  t.is(pos - MARKER_LEN, SEGMENT_HEADER)
  await onCopy(src, async (dir) => {
    flipBit(path.join(dir, name), SEGMENT_HEADER + 10, 3) // inside the marker's LSN field
    const err = await openFails(t, dir, plain({}), 'ERR_CORRUPT')
    if (err) {
      t.is(err.segment, name)
      t.is(err.offset, SEGMENT_HEADER)
    }
    const w = await Wal.open(dir, { recovery: 'truncate' })
    t.is(w.recovery.cutAt, SEGMENT_HEADER, 'truncate mode reports the cut')
    t.true(w.recovery.droppedBytes > 0)
    await w.close()
  })
})

/** A multi-segment log of separately written records; returns the records and segment files. */
async function multiSegmentLog(t) {
  const src = tmpDir(t)
  const wal = await Wal.open(src, SMALL)
  const recs = await appendEach(
    wal,
    Array.from({ length: 70 }, (_, i) => bytes(150 + ((i * 53) % 400), i + 1)),
  )
  await wal.close()
  const segs = segments(src).filter((s) => s.size > SEGMENT_HEADER)
  t.true(segs.length >= 5, `${segs.length} segments`)
  return { src, recs, segs }
}

test('a flipped bit in a middle record of a sealed segment is corruption', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const seg = segs[1]
  const inSeg = recs.filter((e) => e.lsn >= seg.base && e.lsn < seg.base + SMALL.segmentBytes)
  const k = recs.indexOf(inSeg[Math.floor(inSeg.length / 2)])
  const pos = recs[k].lsn - seg.base
  const laterBytes = segs.slice(2).reduce((a, s) => a + s.size - SEGMENT_HEADER, 0)
  await flipEachBit(t, {
    src,
    fileName: seg.name,
    start: pos,
    end: pos + FRAME_HEADER + recs[k].data.length,
    offset: pos,
    kept: recs.slice(0, k),
    cutLsn: recs[k].lsn,
    expectDropped: seg.size - pos + laterBytes,
    options: SMALL,
    every: 9,
  })
})

test('a flipped bit in the last record of a sealed segment is corruption', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const seg = segs[2]
  const inSeg = recs.filter((e) => e.lsn >= seg.base && e.lsn < seg.base + SMALL.segmentBytes)
  const k = recs.indexOf(inSeg[inSeg.length - 1])
  const pos = recs[k].lsn - seg.base
  await flipEachBit(t, {
    src,
    fileName: seg.name,
    start: pos,
    end: pos + FRAME_HEADER + recs[k].data.length,
    offset: pos,
    kept: recs.slice(0, k),
    cutLsn: recs[k].lsn,
    options: SMALL,
    every: 13,
  })
})

test('a failed strict open leaves the files alone and releases the directory', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const dir = src
  const pos = recs[3].lsn - segs[0].base
  flipBit(path.join(dir, segs[0].name), pos + FRAME_HEADER + 2)
  const before = snapshot(dir)
  await rejectsWith(t, Wal.open(dir, SMALL), 'ERR_CORRUPT')
  t.throws(() => Wal.openSync(dir, SMALL), { instanceOf: SturdyError, code: 'ERR_CORRUPT' })
  t.deepEqual(snapshot(dir), before)
  const w = await Wal.open(dir, { ...SMALL, recovery: 'truncate' }) // not ERR_LOCKED
  t.is(w.recovery.cutAt, recs[3].lsn)
  t.is(segments(dir).filter((s) => s.size > SEGMENT_HEADER).length, 1, 'later segments removed')
  await assertRecords(t, w, recs.slice(0, 3))
  await w.close()
})

// ---------------------------------------------------------------------------------------------
// Segment headers

test('a flipped bit in a segment header is corruption', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  for (const which of [0, 1, segs.length - 1]) {
    const seg = segs[which]
    const problems = []
    // Magic, version, header length, base LSN, capacity and their checksum.
    for (let bit = 0; bit < 36 * 8; bit += 3) {
      await onCopy(src, async (dir) => {
        flipBit(path.join(dir, seg.name), bit >> 3, bit & 7)
        try {
          const w = await Wal.open(dir, SMALL)
          problems.push(`bit ${bit}: opened with ${w.recovery.records} records`)
          await w.close()
        } catch (e) {
          if (e.code !== 'ERR_CORRUPT' || e.segment !== seg.name || typeof e.offset !== 'number') {
            problems.push(`bit ${bit}: ${e.code} segment=${e.segment} offset=${e.offset}`)
          }
        }
      })
    }
    t.deepEqual(problems.slice(0, 10), [], `segment ${which} (${seg.name}): ${problems.length} problems`)
  }
  t.true(recs.length > 0)
})

test('truncate mode drops a segment with a damaged header and everything after it', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const seg = segs[2]
  flipBit(path.join(src, seg.name), 20, 1) // base LSN field
  const w = await Wal.open(src, { ...SMALL, recovery: 'truncate' })
  const kept = recs.filter((e) => e.lsn < seg.base)
  t.is(w.recovery.records, kept.length)
  t.is(w.recovery.cutAt, segs[1].base + segs[1].size, 'cut where the previous segment ends')
  t.regex(w.recovery.cutReason, /./)
  await assertRecords(t, w, kept)
  t.false(
    segments(src).some((s) => s.base > seg.base),
    'segments after the damaged one are removed',
  )
  t.is(await appendAndReopen(src, w, kept, SMALL), null)
})

test('truncate mode counts whole dropped segments in droppedBytes', async (t) => {
  const { src, segs } = await multiSegmentLog(t)
  const seg = segs[2]
  const dropped = segs.slice(2).reduce((a, s) => a + s.size - SEGMENT_HEADER, 0)
  flipBit(path.join(src, seg.name), 0, 0) // magic
  const w = await Wal.open(src, { ...SMALL, recovery: 'truncate' })
  t.true(dropped > 3 * 3000)
  t.is(w.recovery.droppedBytes, dropped, '"bytes dropped after the cut, valid records included"')
  await w.close()
})

test('truncate mode with the first segment header damaged starts an empty log that works', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  flipBit(path.join(src, segs[0].name), 4, 2)
  const err = await openFails(t, src, plain(SMALL), 'ERR_CORRUPT', 'strict:')
  t.is(err?.segment, segs[0].name)
  const w = await Wal.open(src, { ...SMALL, recovery: 'truncate' })
  t.is(w.recovery.records, 0)
  t.is(typeof w.recovery.cutAt, 'number')
  t.true(w.recovery.droppedBytes > 0)
  t.is(w.firstLsn, w.nextLsn)
  t.deepEqual(await readAll(w), [])
  for (const e of recs.slice(0, 3)) await rejectsWith(t, w.read(e.lsn), 'ERR_NOT_FOUND')
  t.is(await appendAndReopen(src, w, [], SMALL), null)
})

test('a missing segment file in the middle is corruption', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  fs.rmSync(segs[2].path)
  const err = await openFails(t, src, plain(SMALL), 'ERR_CORRUPT')
  t.is(err?.segment, segs[3].name)
  const w = await Wal.open(src, { ...SMALL, recovery: 'truncate' })
  const kept = recs.filter((e) => e.lsn < segs[2].base)
  t.is(w.recovery.records, kept.length)
  t.is(w.recovery.cutAt, segs[1].base + segs[1].size)
  await assertRecords(t, w, kept)
  t.false(segments(src).some((s) => s.base > segs[2].base), 'segments after the gap are removed')
  t.is(await appendAndReopen(src, w, kept, SMALL), null)
})

test('leftover temporary segments are removed and unrelated files are ignored', async (t) => {
  const dir = tmpDir(t)
  let w = await Wal.open(dir, SMALL)
  const recs = await appendEach(w, ['a', 'b', 'c'])
  await w.close()
  const tmp = path.join(dir, `${'0'.repeat(15)}81920.wal.tmp`)
  fs.writeFileSync(tmp, bytes(100, 1))
  const others = { 'notes.txt': 'hello', '123.wal': 'not a segment name', [`${'0'.repeat(19)}x.wal`]: 'nor this' }
  for (const [n, c] of Object.entries(others)) fs.writeFileSync(path.join(dir, n), c)
  w = await Wal.open(dir, SMALL)
  t.false(fs.existsSync(tmp), 'the leftover .tmp is gone')
  for (const [n, c] of Object.entries(others)) t.is(fs.readFileSync(path.join(dir, n), 'utf8'), c, `${n} untouched`)
  t.is(w.recovery.tornBytes, 0)
  await assertRecords(t, w, recs)
  await w.close()
})

// ---------------------------------------------------------------------------------------------
// First frame of a segment

test('a damaged commit marker at the start of the last segment is corruption, not a torn tail', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const seg = segs[segs.length - 1]
  const inLast = recs.filter((e) => e.lsn >= seg.base)
  t.true(inLast.length >= 2, 'several acknowledged writes in the last segment')
  flipBit(path.join(src, seg.name), SEGMENT_HEADER + 2, 5) // the marker's checksum
  const err = await openFails(t, src, plain(SMALL), 'ERR_CORRUPT')
  if (err) {
    t.is(err.segment, seg.name)
    t.is(err.offset, SEGMENT_HEADER)
  }
})

test('after truncate-mode recovery cuts at a damaged segment start, appends survive a strict reopen', async (t) => {
  const { src, recs, segs } = await multiSegmentLog(t)
  const seg = segs[2]
  flipBit(path.join(src, seg.name), SEGMENT_HEADER + 12, 0) // first frame: the commit marker
  const w = await Wal.open(src, { ...SMALL, recovery: 'truncate' })
  const kept = recs.filter((e) => e.lsn < seg.base)
  t.is(w.recovery.records, kept.length)
  t.is(typeof w.recovery.cutAt, 'number')
  await assertRecords(t, w, kept, 'after truncate recovery:')
  t.is(await appendAndReopen(src, w, kept, SMALL), null)
})

// ---------------------------------------------------------------------------------------------
// Clean logs

test('a cleanly closed log reopens with nothing to recover, in either mode', async (t) => {
  const { src, recs } = await multiSegmentLog(t)
  for (const recovery of ['strict', 'truncate']) {
    const w = await Wal.open(src, { ...SMALL, recovery })
    t.is(w.recovery.tornBytes, 0)
    t.is(w.recovery.droppedBytes, 0)
    t.is(w.recovery.cutAt, undefined)
    t.is(w.recovery.cutReason, undefined)
    t.is(w.recovery.records, recs.length)
    await assertRecords(t, w, recs, recovery)
    await w.close()
  }
})

test('preallocated segments: a clean close reports no torn bytes and loses nothing', async (t) => {
  const dir = tmpDir(t)
  const opts = { segmentBytes: 65536, maxRecordBytes: 8192, preallocate: true }
  let wal = await Wal.open(dir, opts)
  const recs = await appendEach(
    wal,
    Array.from({ length: 40 }, (_, i) => bytes(3000 + i, i)),
  )
  await wal.close()
  t.true(segments(dir).length >= 2)
  wal = await Wal.open(dir, opts)
  t.is(await differs(wal, recs), null)
  t.is(wal.recovery.records, recs.length)
  t.is(wal.recovery.tornBytes, 0, 'preallocated zeros are not an interrupted write')
  await wal.close()
})

test('preallocated segments: a torn tail is still cut and appends continue; under the seal of a clean close the same damage is corruption', async (t) => {
  const dir = tmpDir(t)
  const opts = { segmentBytes: 65536, maxRecordBytes: 8192, preallocate: true }
  let wal = await Wal.open(dir, opts)
  const recs = await appendEach(
    wal,
    Array.from({ length: 30 }, (_, i) => bytes(3000 + i, i)),
  )
  const last = bytes(500, 1)
  const lastLsn = await wal.append(last)
  await wal.close()
  const { path: file, pos } = locate(dir, lastLsn)
  const zero = (from, to) => {
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.alloc(to - from), 0, to - from, from)
    fs.closeSync(fd)
  }
  const recordEnd = pos + 8 + last.length
  // Zeros over the middle of the record: with the seal of the clean close still after it, that
  // is damage (the seal vouches the record was durable)...
  zero(pos + 200, recordEnd)
  await rejectsWith(t, Wal.open(dir, opts), 'ERR_CORRUPT')
  // ...and without it, as after a crash, a torn tail (the rest of the file is zeros, as after
  // preallocation).
  zero(recordEnd, recordEnd + MARKER_LEN)
  wal = await Wal.open(dir, opts)
  t.true(wal.recovery.tornBytes > 0)
  t.is(wal.recovery.cutAt, undefined)
  t.is(await differs(wal, recs), null)
  await rejectsWith(t, wal.read(lastLsn), 'ERR_NOT_FOUND')
  const more = await wal.append('after')
  t.true(more > recs[recs.length - 1].lsn)
  await wal.close()
  wal = await Wal.open(dir, opts)
  t.is(await differs(wal, [...recs, { lsn: more, data: 'after' }]), null)
  await wal.close()
})
