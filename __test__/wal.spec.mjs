// Core behaviour: round trips, reopen, entries(), the synchronous API, empty records, buffer
// reuse, and appends pending at close.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

import test from 'ava'

import {
  Wal,
  SturdyError,
  tmpDir,
  freshPath,
  bytes,
  readAll,
  assertRecords,
  rejectsWith,
  segments,
  locate,
  crc32c,
  MARKER_TAG,
  FRAME_HEADER,
  SEGMENT_HEADER,
} from './helpers.mjs'

const require = createRequire(import.meta.url)

test('the CommonJS build exports the same classes as the ESM entry', (t) => {
  const cjs = require('../dist/index.js')
  t.is(typeof cjs.Wal, 'function')
  t.is(typeof cjs.Wal.open, 'function')
  t.is(typeof cjs.SturdyError, 'function')
  t.is(cjs.Wal, Wal)
  t.is(cjs.SturdyError, SturdyError)
  const e = new cjs.SturdyError('ERR_IO', 'x', { errno: 5 })
  t.true(e instanceof Error)
  t.is(e.code, 'ERR_IO')
  t.is(e.errno, 5)
  t.is(e.name, 'SturdyError')
})

test('the CommonJS build opens, appends and reads a log', async (t) => {
  const { Wal: CjsWal } = require('../dist/index.js')
  const dir = tmpDir(t)
  const wal = await CjsWal.open(dir)
  const lsn = await wal.append('from require')
  t.is((await wal.read(lsn)).toString(), 'from require')
  await wal.close()
})

test('a new log is empty and reports a clean recovery', async (t) => {
  const dir = freshPath(t, 'a/b/c') // parents are created
  const wal = await Wal.open(dir)
  t.true(fs.statSync(dir).isDirectory())
  t.true(fs.existsSync(path.join(dir, 'LOCK')))
  t.is(wal.firstLsn, wal.nextLsn)
  t.deepEqual(wal.recovery, { tornBytes: 0, droppedBytes: 0, segments: 1, records: 0 })
  t.deepEqual(await readAll(wal), [])
  t.false(wal.closed)
  await wal.close()
  t.true(wal.closed)
})

test('bytes and strings round-trip, also after reopen, with stable LSNs', async (t) => {
  const dir = tmpDir(t)
  const inputs = [
    'hello',
    Buffer.from([0, 1, 2, 255, 254]),
    'héllo wörld ✓ — 日本語テキスト — 😀🚀 (astral plane)',
    new Uint8Array([9, 8, 7]),
    bytes(4000, 7),
    '\u0000embedded\u0000nul\u0000',
    'x'.repeat(70000),
    Buffer.from('0123456789abcdef'), // 16 bytes: the same frame size as a commit marker
    '🙂'.repeat(1000),
    'lone surrogate \ud800 here', // stored as UTF-8 (U+FFFD), like Buffer.from
  ]
  const expectedBytes = inputs.map((d) => (typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d)))

  let wal = await Wal.open(dir)
  const lsns = []
  for (const d of inputs) lsns.push(await wal.append(d))
  for (let i = 1; i < lsns.length; i++) t.true(lsns[i] > lsns[i - 1], 'LSNs increase')
  t.true(wal.nextLsn > lsns[lsns.length - 1])

  const expected = lsns.map((lsn, i) => ({ lsn, data: expectedBytes[i] }))
  await assertRecords(t, wal, expected, 'before reopen:')
  t.is((await wal.read(lsns[2])).toString('utf8'), inputs[2])
  t.is(wal.readSync(lsns[8]).toString('utf8'), inputs[8])
  t.is((await wal.read(lsns[9])).toString('utf8'), 'lone surrogate \ufffd here')
  const next = wal.nextLsn
  const first = wal.firstLsn
  t.is(first, lsns[0])
  await wal.close()

  wal = await Wal.open(dir)
  t.is(wal.nextLsn, next)
  t.is(wal.firstLsn, first)
  t.is(wal.recovery.records, inputs.length)
  t.is(wal.recovery.tornBytes, 0)
  t.is(wal.recovery.droppedBytes, 0)
  t.is(wal.recovery.cutAt, undefined)
  await assertRecords(t, wal, expected, 'after reopen:')

  // Appends after reopen continue above everything already there.
  const more = await wal.append('after reopen')
  t.true(more >= next)
  await wal.close()
  wal = await Wal.open(dir)
  await assertRecords(t, wal, [...expected, { lsn: more, data: 'after reopen' }], 'after second reopen:')
  await wal.close()
})

test('the record bytes sit in the segment file at the LSN, framed as documented', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const payloads = [Buffer.from('first'), Buffer.alloc(0), bytes(300, 3)]
  const lsns = []
  for (const p of payloads) lsns.push(await wal.append(p))
  await wal.close()

  const segs = segments(dir)
  t.true(segs.length >= 1)
  const header = fs.readFileSync(segs[0].path).subarray(0, SEGMENT_HEADER)
  t.is(header.subarray(0, 8).toString('latin1'), 'STURDYWL')
  t.is(segs[0].name, '00000000000000000000.wal')

  for (let i = 0; i < lsns.length; i++) {
    const { path: file, pos } = locate(dir, lsns[i])
    const buf = fs.readFileSync(file)
    const len = buf.readUInt32LE(pos + 4)
    t.is(len, payloads[i].length)
    const payload = buf.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + len)
    t.true(payload.equals(payloads[i]))
    t.is(buf.readUInt32LE(pos), crc32c(buf.subarray(pos + 4, pos + FRAME_HEADER + len)), 'crc32c over len + payload')
    // Each awaited append was its own write, so a commit marker frame precedes the record.
    t.is(buf.readUInt32LE(pos - 24 + 4), MARKER_TAG)
  }
})

test('empty records are allowed and read back as empty', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir)
  const a = await wal.append(new Uint8Array(0))
  const b = await wal.append('')
  const [c, d, e] = await wal.appendBatch(['', Buffer.alloc(0), 'x'])
  t.deepEqual(await wal.appendBatch([]), [], 'an empty batch resolves with no LSNs')
  const f = wal.appendSync('')
  const all = [a, b, c, d, e, f]
  t.is(new Set(all).size, all.length, 'distinct LSNs even for empty records')
  for (let i = 1; i < all.length; i++) t.true(all[i] > all[i - 1])
  for (const lsn of [a, b, c, d, f]) {
    const got = await wal.read(lsn)
    t.true(Buffer.isBuffer(got))
    t.is(got.length, 0)
  }
  t.is(wal.readSync(b).length, 0)
  t.is((await wal.read(e)).toString(), 'x')
  await wal.close()

  wal = await Wal.open(dir)
  const entries = await readAll(wal)
  t.deepEqual(
    entries.map((x) => [x.lsn, x.data.toString()]),
    [
      [a, ''],
      [b, ''],
      [c, ''],
      [d, ''],
      [e, 'x'],
      [f, ''],
    ],
  )
  t.is(wal.recovery.records, 6)
  await wal.close()
})

test('views into larger buffers store only their own bytes', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const big = bytes(1000, 5)
  const view = big.subarray(100, 150)
  const u8 = new Uint8Array(big.buffer, big.byteOffset + 500, 20)
  const [l1, l2] = await Promise.all([wal.append(view), wal.append(u8)])
  t.true((await wal.read(l1)).equals(big.subarray(100, 150)))
  t.true((await wal.read(l2)).equals(big.subarray(500, 520)))
  await wal.close()
})

test('callers may reuse their buffer as soon as append returns', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir)
  const buf = Buffer.from('original contents of the buffer')
  const copy = Buffer.from(buf)

  const p1 = wal.append(buf)
  buf.fill(0x41) // mutate right after the call, before the record is durable
  const p2 = wal.append(buf)
  buf.fill(0x42)
  const batchBufs = [Buffer.from('batch one'), Buffer.from('batch two')]
  const p3 = wal.appendBatch(batchBufs)
  batchBufs[0].fill(0)
  batchBufs[1].write('XXXXXXXXX')
  batchBufs.length = 0 // even the array itself
  const syncBuf = Buffer.from('sync original')
  const l4 = wal.appendSync(syncBuf)
  syncBuf.fill(0)

  const [l1, l2, [l3a, l3b]] = await Promise.all([p1, p2, p3])
  t.true((await wal.read(l1)).equals(copy))
  t.true((await wal.read(l2)).equals(Buffer.alloc(copy.length, 0x41)))
  t.is((await wal.read(l3a)).toString(), 'batch one')
  t.is((await wal.read(l3b)).toString(), 'batch two')
  t.is((await wal.read(l4)).toString(), 'sync original')
  await wal.close()

  wal = await Wal.open(dir)
  t.true((await wal.read(l1)).equals(copy))
  t.is((await wal.read(l3b)).toString(), 'batch two')
  t.is((await wal.read(l4)).toString(), 'sync original')
  await wal.close()
})

test('an append issued just before close() resolves and is durable', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir)
  const p = wal.append('last words')
  const pb = wal.appendBatch(['b1', 'b2'])
  const closing = wal.close()
  t.true(wal.closed)
  await rejectsWith(t, wal.append('too late'), 'ERR_CLOSED')
  const lsn = await p
  const [b1, b2] = await pb
  await closing
  t.true(lsn < b1 && b1 < b2)

  wal = await Wal.open(dir)
  t.is((await wal.read(lsn)).toString(), 'last words')
  t.is((await wal.read(b2)).toString(), 'b2')
  t.is(wal.recovery.records, 3)
  await wal.close()
})

test('an append issued just before closeSync() resolves and is durable', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir)
  const p = wal.append('before closeSync')
  wal.closeSync()
  t.true(wal.closed)
  const lsn = await p
  wal = Wal.openSync(dir)
  t.is(wal.readSync(lsn).toString(), 'before closeSync')
  wal.closeSync()
})

test('the synchronous API works end to end', (t) => {
  const dir = tmpDir(t)
  let wal = Wal.openSync(dir)
  const a = wal.appendSync('sync one')
  const b = wal.appendSync(Buffer.from([1, 2, 3]))
  t.true(b > a)
  wal.syncSync()
  t.is(wal.readSync(a).toString(), 'sync one')
  t.deepEqual([...wal.readSync(b)], [1, 2, 3])
  t.is(wal.firstLsn, a)
  const next = wal.nextLsn
  wal.closeSync()
  wal.closeSync() // closing twice is fine

  wal = Wal.openSync(dir)
  t.is(wal.nextLsn, next)
  t.is(wal.readSync(a).toString(), 'sync one')
  t.is(wal.recovery.records, 2)
  wal.closeSync()
})

test('appendSync keeps call order with async appends pending in the same turn', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const p1 = wal.append('async 1')
  const s = wal.appendSync('sync 2')
  const p3 = wal.append('async 3')
  const [l1, l3] = await Promise.all([p1, p3])
  t.true(l1 < s && s < l3)
  const all = await readAll(wal)
  t.deepEqual(
    all.map((e) => e.data.toString()),
    ['async 1', 'sync 2', 'async 3'],
  )
  await wal.close()
})

test('sync() and syncSync() resolve with nothing pending and after appends', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  await t.notThrowsAsync(wal.sync())
  const p = wal.append('x')
  await wal.sync()
  const lsn = await p
  t.true(lsn < wal.nextLsn, 'the append before sync() is durable when sync() resolves')
  wal.syncSync()
  await wal.close()
})

test('entries() starts at the first record with LSN >= from', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const lsns = []
  for (let i = 0; i < 20; i++) lsns.push(await wal.append(`rec ${i}`))
  lsns.push(...(await wal.appendBatch(['b0', 'b1', 'b2'])))
  const all = await readAll(wal)
  t.deepEqual(
    all.map((e) => e.lsn),
    lsns,
  )

  t.deepEqual(
    (await readAll(wal, { from: lsns[5] })).map((e) => e.lsn),
    lsns.slice(5),
    'from an exact LSN',
  )
  t.deepEqual(
    (await readAll(wal, { from: lsns[5] + 1 })).map((e) => e.lsn),
    lsns.slice(6),
    'from inside a record',
  )
  t.deepEqual(
    (await readAll(wal, { from: lsns[21] - 1 })).map((e) => e.lsn),
    lsns.slice(21),
    'from inside a batch',
  )
  t.deepEqual((await readAll(wal, { from: 0 })).length, lsns.length, 'from 0')
  t.deepEqual(await readAll(wal, { from: wal.nextLsn }), [], 'from nextLsn')
  t.deepEqual(await readAll(wal, { from: wal.nextLsn + 12345 }), [], 'past the end')
  t.deepEqual(await readAll(wal, { from: Number.MAX_SAFE_INTEGER }), [], 'far past the end')

  // Tiny chunks: one frame at a time, still every record, in order, with the right bytes.
  for (const chunkBytes of [1, 7, 30, 100]) {
    const got = await readAll(wal, { chunkBytes })
    t.deepEqual(
      got.map((e) => [e.lsn, e.data.toString()]),
      all.map((e) => [e.lsn, e.data.toString()]),
      `chunkBytes ${chunkBytes}`,
    )
  }

  // Breaking out of the loop early is fine.
  let n = 0
  for await (const e of wal.entries()) {
    t.is(e.lsn, lsns[n])
    if (++n === 3) break
  }
  t.is(n, 3)
  await wal.close()
})

test('closing twice, in any mix of close and closeSync, is fine', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  await wal.append('x')
  await Promise.all([wal.close(), wal.close()])
  await t.notThrowsAsync(wal.close())
  t.notThrows(() => wal.closeSync())
  const w2 = Wal.openSync(dir)
  w2.closeSync()
  w2.closeSync()
  await t.notThrowsAsync(w2.close())
})

test('closeSync during a close() in progress returns once the log is released', async (t) => {
  const dir = tmpDir(t)
  const wal = Wal.openSync(dir)
  const appends = Array.from({ length: 1000 }, (_, i) => wal.append(Buffer.alloc(1000, i)))
  const closing = wal.close()
  wal.closeSync()
  // Released: another handle may open the log at once, and finds every append.
  const again = Wal.openSync(dir)
  const lsns = await Promise.all(appends)
  t.is(again.nextLsn > lsns.at(-1), true)
  t.deepEqual([...again.readSync(lsns.at(-1))].slice(0, 2), [999 & 255, 999 & 255])
  again.closeSync()
  await closing
})

test('a record given as parts is laid end to end; a part that is not bytes is refused', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const lsn = await wal.append([Buffer.from('head:'), Buffer.from('body'), new Uint8Array(0)])
  t.is((await wal.read(lsn)).toString(), 'head:body')
  await t.throwsAsync(wal.append([Buffer.from('a'), 'b']), { code: 'ERR_INVALID_ARG' })
  await wal.close()
})

test('readMany returns the records at the LSNs given, in that order; a bad or missing LSN rejects', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const lsns = await wal.appendBatch(['zero', 'one', 'two', 'three'])
  const got = await wal.readMany([lsns[2], lsns[0], lsns[3], lsns[2]])
  t.deepEqual(got.map(String), ['two', 'zero', 'three', 'two'])
  t.deepEqual(await wal.readMany([]), [])
  await t.throwsAsync(wal.readMany([lsns[0], lsns[0] + 1]), { code: 'ERR_NOT_FOUND' })
  await t.throwsAsync(wal.readMany([lsns[0], -1]), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(wal.readMany('x'), { code: 'ERR_INVALID_ARG' })
  await wal.close()
  await t.throwsAsync(wal.readMany([lsns[0]]), { code: 'ERR_CLOSED' })
})

test('every close call resolves only once the log is released: a reopen after the second succeeds', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const pending = wal.append('last')
  const first = wal.close()
  await wal.close()
  const reopened = await Wal.open(dir)
  t.is((await readAll(reopened)).length, 1)
  await pending
  await first
  await reopened.close()
})
