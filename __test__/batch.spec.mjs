// Large appendBatch calls go to the disk in slices as they are staged. These specs check what
// that must not change: LSNs and order across slices, all-or-nothing validation, appends around
// the batch keeping call order, and a crash in the middle keeping a prefix of the batch.
import test from 'ava'

import { Wal, SturdyError } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { tmpDir, rng } from './helpers.mjs'

/** `n` records of 100 bytes, each naming its index. */
function records(n, tag = 'r') {
  return Array.from({ length: n }, (_, i) => Buffer.from(`${tag}${i}:`.padEnd(100, '.')))
}

/** Check that the log holds exactly `expected`, record `i` at `lsns[i]`. */
async function holdsExactly(t, wal, lsns, expected) {
  let i = 0
  for await (const { lsn, data } of wal.entries()) {
    if (lsn !== lsns[i] || !data.equals(expected[i])) {
      t.fail(`record ${i}: LSN ${lsn}, expected ${lsns[i]}; ${data.length} bytes, expected ${expected[i]?.length}`)
      return
    }
    i++
  }
  t.is(i, expected.length)
}

test('a batch of 30 MB spans several slices: increasing LSNs, every record in order', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const recs = records(300_000)
  const before = wal.append('before')
  const lsns = await wal.appendBatch(recs)
  const after = wal.append('after')
  t.is(lsns.length, recs.length)
  // Records are 108 bytes framed; a slice written in a later commit starts after its commit marker.
  for (let i = 1; i < lsns.length; i++) if (lsns[i] < lsns[i - 1] + 108) t.fail(`LSN ${i} is ${lsns[i]}, after ${lsns[i - 1]}`)
  for (let i = 0; i < lsns.length; i += 997) t.true((await wal.read(lsns[i])).equals(recs[i]), `record ${i} at its LSN`)
  t.true((await before) < lsns[0], 'an append made before the batch comes before it')
  t.true((await after) > lsns.at(-1), 'an append made after the batch comes after it')
  let i = -1
  for await (const { data } of wal.entries()) {
    if (i >= 0 && i < recs.length && !data.equals(recs[i])) t.fail(`record ${i} differs`)
    i++
  }
  t.is(i, recs.length + 1, 'before, the batch, after')
  await wal.close()
})

test('a bad record at the end of a large batch rejects the whole batch before anything is written', async (t) => {
  const wal = await Wal.open(tmpDir(t), { maxRecordBytes: 1000 })
  const next = wal.nextLsn
  const recs = records(200_000)
  recs.push(Buffer.alloc(1001))
  const e = await t.throwsAsync(wal.appendBatch(recs))
  t.true(e instanceof SturdyError)
  t.is(e.code, 'ERR_RECORD_TOO_LARGE')
  await wal.sync()
  t.is(wal.nextLsn, next, 'nothing was written')
  await wal.close()
})

test('a crash while a large batch is being written keeps a prefix of it, in order', async (t) => {
  const seeds = Number(process.env.STURDY_BATCH_SEEDS ?? 12)
  const shapes = new Set()
  for (let seed = 1; seed <= seeds; seed++) {
    const r = rng(seed)
    const disk = new SimulatedDisk({ seed })
    const wal = await Wal.open('log', { disk, segmentBytes: 4 << 20 })
    const recs = records(150_000, `s${seed}-`)
    disk.crashAfter(r.int(1, 40))
    const acked = await wal.appendBatch(recs).then(
      () => true,
      () => false,
    )
    await wal.close().catch(() => {})
    if (disk.stats.crashes === 0) disk.crash()
    const again = await Wal.open('log', { disk, segmentBytes: 4 << 20 })
    let n = 0
    for await (const { data } of again.entries()) {
      if (!data.equals(recs[n])) {
        t.fail(`seed ${seed}: record ${n} is not the batch's record ${n}`)
        break
      }
      n++
    }
    if (acked) t.is(n, recs.length, `seed ${seed}: an acknowledged batch is whole`)
    shapes.add(n === 0 ? 'none' : n === recs.length ? 'all' : 'prefix')
    await again.close()
  }
  t.log(`outcomes: ${[...shapes].join(', ')}`)
  t.true(shapes.has('prefix'), 'some crash fell between slices')
})

// Serial: it makes Buffer.allocUnsafe fail for the whole worker while it runs. The batch mixes
// strings and bytes, so it is staged in JavaScript buffers (one all of bytes or all of strings
// this large is staged by the native side, in memory of its own).
test.serial('a batch that cannot be staged in memory is ERR_NO_MEMORY and writes none of its slices', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const kept = await wal.append('before')
  const allocUnsafe = Buffer.allocUnsafe
  let calls = 0
  // The third staging buffer cannot be had: by then two 6 MiB slices were staged.
  Buffer.allocUnsafe = (size) => {
    if (size >= 6 << 20 && ++calls === 3) throw new RangeError('Array buffer allocation failed')
    return allocUnsafe.call(Buffer, size)
  }
  try {
    await t.throwsAsync(wal.appendBatch(['a'.repeat(6 << 20), 'b'.repeat(6 << 20), Buffer.alloc(6 << 20, 'c')]), { instanceOf: SturdyError, code: 'ERR_NO_MEMORY' })
  } finally {
    Buffer.allocUnsafe = allocUnsafe
  }
  const after = await wal.append('after')
  await wal.close()
  const reopened = await Wal.open(dir)
  const stored = []
  for await (const { lsn, data } of reopened.entries()) stored.push([lsn, data.length > 16 ? data.length : data.toString()])
  await reopened.close()
  t.deepEqual(stored, [[kept, 'before'], [after, 'after']])
})

test('a large batch of views into shared buffers stores each view\'s own bytes', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const shared = Buffer.from(Array.from({ length: 1 << 16 }, (_, i) => i % 251))
  const recs = []
  for (let i = 0; i < 120_000; i++) {
    const at = (i * 37) % 60_000
    const len = i % 10 === 0 ? 0 : 50 + (i % 90)
    // Buffers and plain Uint8Arrays, at offsets into one shared ArrayBuffer.
    recs.push(i % 2 ? shared.subarray(at, at + len) : new Uint8Array(shared.buffer, shared.byteOffset + at, len))
  }
  const lsns = await wal.appendBatch(recs)
  await holdsExactly(t, wal, lsns, recs)
  await wal.close()
})

test('a getter that changes a record already read: the record is stored as measured, the rest intact', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const recs = records(100_000)
  // A buffer of its own (not a slice of Node's shared pool), so its memory can be detached.
  const first = (recs[0] = Buffer.alloc(100, 1))
  const expected = recs.map((r) => Buffer.from(r))
  expected[0] = Buffer.alloc(0)
  // Reading element 50,000 detaches record 0's memory (its length becomes 0). Each element must
  // be read once: a record measured at one length and copied at another would be stored torn.
  Object.defineProperty(recs, 50_000, {
    get() {
      if (first.length > 0) structuredClone(first.buffer, { transfer: [first.buffer] })
      return expected[50_000]
    },
  })
  const lsns = await wal.appendBatch(recs)
  t.is(first.length, 0)
  await holdsExactly(t, wal, lsns, expected)
  await wal.close()
})

test('a large batch on a closed log rejects with ERR_CLOSED', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  await wal.close()
  const p = wal.appendBatch(records(100_000))
  t.true(p instanceof Promise, 'rejects rather than throws')
  await t.throwsAsync(p, { instanceOf: SturdyError, code: 'ERR_CLOSED' })
})

test('a large batch counts against maxPendingBytes until durable, and appends held behind it follow', async (t) => {
  const wal = await Wal.open(tmpDir(t), { maxPendingBytes: 1 << 20 })
  const batch = wal.appendBatch(records(100_000))
  // These wait for the batch's bytes to leave flight, then go in order.
  const later = Array.from({ length: 50 }, (_, i) => wal.append(Buffer.alloc(64 << 10, i)))
  const lsns = await batch
  const after = await Promise.all(later)
  t.true(after[0] > lsns.at(-1))
  for (let i = 1; i < after.length; i++) t.true(after[i] > after[i - 1])
  await wal.close()
})

test('a large batch across many segments: every LSN reads back its own record', async (t) => {
  const wal = await Wal.open(tmpDir(t), { segmentBytes: 1 << 20 })
  const recs = Array.from({ length: 100_000 }, (_, i) => Buffer.from(`r${i}:`.padEnd(50 + (i % 100), '.')))
  const lsns = await wal.appendBatch(recs)
  let bad = 0
  for (let i = 0; i < recs.length; i++) if (!wal.readSync(lsns[i]).equals(recs[i])) bad++
  t.is(bad, 0)
  await holdsExactly(t, wal, lsns, recs)
  await wal.close()
})

test('a large batch of strings is stored as their UTF-8, as Buffer.from writes it; a mixed one too', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  // ASCII, two- to four-byte characters, a lone surrogate (written as U+FFFD) and empty strings.
  const samples = ['plain ascii', 'déjà vu', '日本語のテキスト', '🦀 crab 🦀', 'lone \ud800 surrogate', '']
  const strings = Array.from({ length: 150_000 }, (_, i) => `${i}:${samples[i % samples.length]}`.repeat(1 + (i % 5)))
  const mixed = strings.slice(0, 100_000).map((s, i) => (i % 2 ? Buffer.from(s) : s))
  for (const batch of [strings, mixed]) {
    const lsns = await wal.appendBatch(batch)
    let bad = 0
    for (let i = 0; i < batch.length; i++) if (!wal.readSync(lsns[i]).equals(Buffer.from(batch[i]))) bad++
    t.is(bad, 0)
  }
  await wal.close()
})

test('records that only pretend to be Uint8Arrays are refused before anything is written; lying lengths are not believed', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const next = wal.nextLsn
  for (const n of [1000, 300_000]) {
    // A Float64Array dressed as a Uint8Array passes instanceof but is not one.
    const recs = records(n)
    const fake = new Float64Array(4)
    Object.setPrototypeOf(fake, Uint8Array.prototype)
    recs[n - 10] = fake
    await t.throwsAsync(wal.appendBatch(recs), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  }
  await wal.sync()
  t.is(wal.nextLsn, next, 'nothing was written')
  // A subclass whose byteLength lies is measured by its real length, on both paths.
  class Liar extends Uint8Array {
    get byteLength() {
      return 3
    }
  }
  for (const n of [1000, 300_000]) {
    const recs = records(n)
    recs[n - 10] = new Liar([1, 2, 3, 4, 5, 6, 7, 8])
    const lsns = await wal.appendBatch(recs)
    t.deepEqual([...wal.readSync(lsns[n - 10])], [1, 2, 3, 4, 5, 6, 7, 8])
  }
  await wal.close()
})

test('a getter that grows the batch while it is read does not leave part of it written', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  const recs = [Buffer.from('a'), Buffer.from('b')]
  Object.defineProperty(recs, 1, { get: () => (recs.push(Buffer.from('late')), Buffer.from('b')) })
  const lsns = await wal.appendBatch(recs)
  t.is(lsns.length, 2, 'the batch is the records there when it was read')
  let n = 0
  for await (const _ of wal.entries()) n++
  t.is(n, 2)
  await wal.close()
})

test('a record given as parts is read once: getters that change their answer, or a part whose byteLength lies, change nothing already checked', async (t) => {
  const wal = await Wal.open(tmpDir(t))
  /** Parts whose second part is 'bb' when first read and 1 MiB on every later read. */
  const shifty = () => {
    const parts = [Buffer.from('aa'), undefined]
    let reads = 0
    Object.defineProperty(parts, 1, { get: () => (reads++ === 0 ? Buffer.from('bb') : Buffer.alloc(1 << 20, 0x7a)) })
    return parts
  }
  class Liar extends Uint8Array {
    get byteLength() {
      return 1
    }
  }
  const one = await wal.append(shifty())
  const [two, three, four] = await wal.appendBatch([shifty(), ['cc', 'dd'].map((s) => Buffer.from(s)), [new Liar([1, 2, 3]), Buffer.from('e')]])
  const after = await wal.append('after')
  t.is(wal.readSync(one).toString(), 'aabb')
  t.is(wal.readSync(two).toString(), 'aabb')
  t.is(wal.readSync(three).toString(), 'ccdd')
  t.deepEqual([...wal.readSync(four)], [1, 2, 3, 0x65])
  t.is(wal.readSync(after).toString(), 'after')
  await wal.close()
})
