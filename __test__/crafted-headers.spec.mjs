// Segment files whose headers pass their checksum but cannot belong to a log: a capacity below
// the data, past the largest segment, or reaching past the largest LSN. Each is ERR_CORRUPT,
// strict or read-only, with the files left as they were; a truncate-mode open that would have to
// start afresh past the largest LSN refuses too. And a record larger than a recovery read chunk
// is checked in pieces, its damage still found.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import { Wal, fileBytes, tmpDir, segName, segmentHeader, openFails, flipBit } from './helpers.mjs'

/** A closed log of `n` small records in one 64 KiB segment, with no prepared segment after it. */
async function oneSegmentLog(t, n = 60) {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { segmentBytes: 65536 })
  for (let i = 0; i < n; i++) await wal.append(`old-${i}`.padEnd(30, '.'))
  await wal.close()
  for (const f of fs.readdirSync(dir)) if (f !== segName(0) && f !== 'LOCK') fs.rmSync(path.join(dir, f))
  return dir
}

function rewriteHeader(dir, name, base, capacity) {
  const fd = fs.openSync(path.join(dir, name), 'r+')
  fs.writeSync(fd, segmentHeader(base, capacity), 0, 64, 0)
  fs.closeSync(fd)
}

for (const mode of ['strict', 'read-only']) {
  const options = mode === 'strict' ? {} : { readOnly: true }

  test(`${mode}: a header capacity below the segment's data is ERR_CORRUPT, and nothing changes`, async (t) => {
    const dir = await oneSegmentLog(t)
    rewriteHeader(dir, segName(0), 0, 1054) // the data runs to about 2.4 KB
    const before = fileBytes(dir)
    await openFails(t, dir, options, 'ERR_CORRUPT')
    t.deepEqual(fileBytes(dir), before)
  })

  test(`${mode}: a capacity past the largest segment, or a segment reaching past the largest LSN, is ERR_CORRUPT`, async (t) => {
    for (const [base, capacity] of [
      [0, 2 ** 41],
      [0, 2n ** 64n - 1n],
      [2 ** 53 - 4096 * 4, 65536], // base + capacity past 2^53 - 1
    ]) {
      const dir = await oneSegmentLog(t, 3)
      if (base !== 0) {
        // The data's positions are the file's; only the name and header move.
        fs.renameSync(path.join(dir, segName(0)), path.join(dir, segName(base)))
      }
      rewriteHeader(dir, segName(base), base, capacity)
      const before = fileBytes(dir)
      const e = await openFails(t, dir, options, 'ERR_CORRUPT', `base ${base} capacity ${capacity}:`)
      t.regex(e?.message ?? '', /implausible segment capacity|past the largest LSN/)
      t.deepEqual(fileBytes(dir), before)
    }
  })
}

test('truncate mode refuses to start afresh past the largest LSN, and removes nothing', async (t) => {
  const dir = await oneSegmentLog(t, 3)
  // The first header damaged (a fresh start), and a file named near 2^53 whose header is damaged
  // too: every LSN handed out must lie past it, and none can.
  flipBit(path.join(dir, segName(0)), 0)
  const far = 2 ** 53 - 65536
  fs.writeFileSync(path.join(dir, segName(far)), Buffer.alloc(70_000, 7))
  const before = fileBytes(dir)
  await openFails(t, dir, { recovery: 'truncate' }, 'ERR_CORRUPT')
  t.deepEqual(fileBytes(dir), before)
})

test('a record larger than a recovery read chunk is checked in pieces: it reads back, and its damage is found', async (t) => {
  const dir = tmpDir(t)
  const big = Buffer.alloc(6 << 20)
  for (let i = 0; i < big.length; i += 4096) big[i] = i % 251
  let wal = await Wal.open(dir)
  await wal.append('before')
  const lsn = await wal.append(big)
  await wal.append('after')
  await wal.close()
  wal = await Wal.open(dir)
  t.true(Buffer.from(await wal.read(lsn)).equals(big))
  t.is(wal.recovery.records, 3)
  await wal.close()
  // One bit in the middle of the big payload: a valid record after it vouches for it.
  flipBit(path.join(dir, segName(0)), lsn + 8 + (3 << 20), 4)
  const before = fileBytes(dir)
  await openFails(t, dir, {}, 'ERR_CORRUPT')
  t.deepEqual(fileBytes(dir), before)
})
