// Checkpoints on both Directory backends: the file format, retention, fallback past damaged
// checkpoints, a crash inside every step of a write, and recover()/checkpoint() with a real Wal.
import path from 'node:path'

import test from 'ava'

import { Checkpoints, FsDirectory, MemoryDirectory, SturdyError, Wal, checkpoint, recover } from '../dist/index.mjs'
import { crc32c, tmpDir, SMALL } from './helpers.mjs'

const BACKENDS = [
  { name: 'fs', open: (t) => FsDirectory.open(path.join(tmpDir(t), 'cps')) },
  { name: 'memory', open: async () => new MemoryDirectory({ seed: 2 }) },
]

function both(title, fn) {
  for (const backend of BACKENDS) test(`${backend.name}: ${title}`, async (t) => fn(t, await backend.open(t)))
}

const name = (lsn) => `checkpoint-${String(lsn).padStart(20, '0')}.ckpt`

/** Rewrite a stored file through the Directory API (the same on both backends). */
async function damage(dir, file, mutate) {
  const bytes = Buffer.from(await dir.readFile(file))
  await dir.atomicWriteDurable(file, mutate(bytes))
}

both('write then latest returns the snapshot; an empty directory has none', async (t, dir) => {
  const cps = new Checkpoints(dir)
  t.is(await cps.latest(), undefined)
  await cps.write(100, 'state at 100')
  await cps.write(250, Buffer.from('state at 250'))
  const latest = await cps.latest()
  t.is(latest.lsn, 250)
  t.is(latest.data.toString(), 'state at 250')
  t.deepEqual(await cps.list(), [100, 250])
})

both('the file format: magic, version, LSN, length, CRC32C of snapshot and header', async (t, dir) => {
  const cps = new Checkpoints(dir)
  const data = Buffer.from('snapshot bytes')
  await cps.write(0x123456789a, data)
  const file = await dir.readFile(name(0x123456789a))
  t.is(file.length, 40 + data.length)
  t.is(file.subarray(0, 8).toString('latin1'), 'STURDYCK')
  t.is(file.readUInt32LE(8), 1)
  t.is(file.readUInt32LE(12), 40)
  t.is(file.readBigUInt64LE(16), 0x123456789an)
  t.is(file.readBigUInt64LE(24), BigInt(data.length))
  t.is(file.readUInt32LE(32), crc32c(data))
  t.is(file.readUInt32LE(36), crc32c(file.subarray(0, 36)))
  t.true(file.subarray(40).equals(data))
})

both('keeps the newest `keep` and removes leftovers of interrupted writes', async (t, dir) => {
  const cps = new Checkpoints(dir, { keep: 3 })
  await dir.atomicWrite(`${name(1)}.tmp-0123456789abcdef`, 'left by a crash')
  await dir.atomicWrite('unrelated.txt', 'kept')
  for (const lsn of [10, 20, 30, 40, 50]) await cps.write(lsn, `s${lsn}`)
  t.deepEqual(await cps.list(), [30, 40, 50])
  t.deepEqual(await dir.listDir(''), [name(30), name(40), name(50), 'unrelated.txt'])
  await cps.write(50, 'replaced')
  t.is((await cps.latest()).data.toString(), 'replaced')
  // Below existing checkpoints: the log was cut back, so the newer ones are discarded history.
  await cps.write(35, 'after the log was cut back to 35')
  t.deepEqual(await cps.list(), [30, 35])
})

const DAMAGE = {
  'a flipped snapshot bit': (b) => ((b[b.length - 1] ^= 1), b),
  'a flipped header bit': (b) => ((b[20] ^= 0x10), b),
  'a cut tail': (b) => b.subarray(0, b.length - 3),
  'a cut header': (b) => b.subarray(0, 30),
  'zero bytes': () => Buffer.alloc(0),
  'zeros': (b) => Buffer.alloc(b.length),
  'extra bytes': (b) => Buffer.concat([b, Buffer.from('junk')]),
  'a wrong magic': (b) => (b.write('XXXXXXXX', 0, 'latin1'), b),
}

for (const [what, mutate] of Object.entries(DAMAGE)) {
  both(`a newest checkpoint with ${what} is passed over for the older one`, async (t, dir) => {
    const cps = new Checkpoints(dir, { keep: 3 })
    await cps.write(100, 'older')
    await cps.write(200, 'middle')
    await cps.write(300, 'newest')
    await damage(dir, name(300), mutate)
    const latest = await cps.latest()
    t.is(latest.lsn, 200)
    t.is(latest.data.toString(), 'middle')
    await damage(dir, name(200), mutate)
    t.is((await cps.latest()).lsn, 100)
    await damage(dir, name(100), mutate)
    t.is(await cps.latest(), undefined)
  })
}

both('a checkpoint renamed to another LSN is refused (the header names its LSN)', async (t, dir) => {
  const cps = new Checkpoints(dir)
  await cps.write(100, 'a')
  await cps.write(200, 'b')
  await dir.atomicRename(name(100), name(900))
  t.is((await cps.latest()).lsn, 200)
})

both('bad input is refused and changes nothing', async (t, dir) => {
  const cps = new Checkpoints(dir)
  await cps.write(5, 'good')
  for (const lsn of [-1, 1.5, NaN, '7', 2 ** 53]) {
    await t.throwsAsync(cps.write(lsn, 'x'), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  }
  for (const data of [null, 42, {}]) await t.throwsAsync(cps.write(6, data), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.deepEqual(await dir.listDir(''), [name(5)])
  for (const keep of [0, -1, 1.5, 'all']) t.throws(() => new Checkpoints(dir, { keep }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.throws(() => new Checkpoints(dir, { path: '../elsewhere' }), { instanceOf: SturdyError, code: 'ERR_INVALID_PATH' })
  t.throws(() => new Checkpoints({}), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
})

both('concurrent writes run one after another', async (t, dir) => {
  const cps = new Checkpoints(dir, { keep: 2 })
  await Promise.all([1, 2, 3, 4].map((lsn) => cps.write(lsn, `s${lsn}`)))
  t.deepEqual(await cps.list(), [3, 4])
  t.is((await cps.latest()).data.toString(), 's4')
})

both('checkpoints in a sub-directory', async (t, dir) => {
  const cps = new Checkpoints(dir, { path: 'state/checkpoints', keep: 1 })
  await cps.write(1, 'one')
  await cps.write(2, 'two')
  t.deepEqual(await dir.listDir('state/checkpoints'), [name(2)])
  t.is((await new Checkpoints(dir, { path: 'state/checkpoints' }).latest()).data.toString(), 'two')
})

test('memory: a crash inside any step of a checkpoint write leaves the previous or the new one', async (t) => {
  const setup = async (seed) => {
    const dir = new MemoryDirectory({ seed })
    const cps = new Checkpoints(dir, { keep: 1 })
    await cps.write(100, 'previous')
    return { dir, cps }
  }
  const probe = await setup(0)
  const before = probe.dir.stats.ops
  await probe.cps.write(200, 'new')
  const steps = probe.dir.stats.ops - before
  const seen = {}
  for (let seed = 1; seed <= 30; seed++) {
    for (let step = 1; step <= steps; step++) {
      const { dir, cps } = await setup(seed)
      dir.crashAfter(step)
      await t.throwsAsync(cps.write(200, 'new'), { instanceOf: SturdyError, code: 'ERR_IO' })
      const latest = await new Checkpoints(dir, { keep: 1 }).latest()
      const got = latest && `${latest.lsn}:${latest.data}`
      if (got !== '100:previous' && got !== '200:new') return t.fail(`seed ${seed} step ${step}: latest is ${got}`)
      seen[got] = (seen[got] ?? 0) + 1
    }
  }
  t.log(`${steps} steps per write`, seen)
  t.true(seen['100:previous'] > 0 && seen['200:new'] > 0)
})

// recover() and checkpoint() over a real Wal on disk.

const sum = {
  init: (snap) => (snap ? JSON.parse(snap.toString()) : { total: 0, count: 0 }),
  apply: (s, { data }) => ({ total: s.total + Number(data.toString()), count: s.count + 1 }),
}

test('recover replays the whole log without checkpoints, and after the snapshot with one', async (t) => {
  const root = tmpDir(t)
  const wal = await Wal.open(path.join(root, 'wal'), SMALL)
  const cps = new Checkpoints(await FsDirectory.open(path.join(root, 'cps')))
  t.like(await recover({ wal, checkpoints: cps, ...sum }), { state: { total: 0, count: 0 }, replayed: 0, lsn: wal.nextLsn })
  let last
  for (let i = 1; i <= 10; i++) last = await wal.append(String(i))
  const whole = await recover({ wal, ...sum })
  t.deepEqual(whole.state, { total: 55, count: 10 })
  t.is(whole.lsn, last)
  t.is(whole.snapshotLsn, undefined)

  await checkpoint({ wal, checkpoints: cps, lsn: whole.lsn, data: JSON.stringify(whole.state) })
  for (let i = 11; i <= 12; i++) last = await wal.append(String(i))
  const after = await recover({ wal, checkpoints: cps, ...sum })
  t.deepEqual(after.state, { total: 78, count: 12 })
  t.is(after.replayed, 2, 'only the records after the snapshot')
  t.is(after.snapshotLsn, whole.lsn)
  t.is(after.lsn, last)
  await wal.close()
})

test('recover takes wal.nextLsn as a checkpoint LSN too, and async init/apply', async (t) => {
  const root = tmpDir(t)
  const wal = await Wal.open(path.join(root, 'wal'))
  const cps = new Checkpoints(new MemoryDirectory())
  for (const n of [1, 2, 3]) await wal.append(String(n))
  await cps.write(wal.nextLsn, JSON.stringify({ total: 6, count: 3 }))
  await wal.append('4')
  const r = await recover({
    wal,
    checkpoints: cps,
    init: async (snap) => sum.init(snap),
    apply: async (s, e) => {
      s.total += Number(e.data.toString()) // in place: returning nothing keeps `s`
      s.count++
    },
  })
  t.deepEqual(r.state, { total: 10, count: 4 })
  await wal.close()
})

test('checkpoint() drops only segments that no kept checkpoint needs, so a damaged newest one still recovers', async (t) => {
  const root = tmpDir(t)
  const wal = await Wal.open(path.join(root, 'wal'), SMALL)
  const dir = await FsDirectory.open(path.join(root, 'cps'))
  const cps = new Checkpoints(dir, { keep: 2 })
  let state = { total: 0, count: 0 }
  let lsn = 0
  let initialFirst
  const big = (n) => String(n).padStart(1500, '0') // about two records per 4 KiB segment
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 6; i++) {
      const n = round * 6 + i + 1
      lsn = await wal.append(big(n))
      initialFirst ??= wal.firstLsn
      state = sum.apply(state, { data: Buffer.from(big(n)) })
    }
    const first = await checkpoint({ wal, checkpoints: cps, lsn, data: JSON.stringify(state) })
    t.is(first, wal.firstLsn)
  }
  const kept = await cps.list()
  t.is(kept.length, 2)
  t.true(wal.firstLsn > initialFirst, 'segments were dropped')
  t.true(wal.firstLsn <= kept[0], 'the log was cut below the oldest kept checkpoint')
  t.deepEqual((await recover({ wal, checkpoints: cps, ...sum })).state, state)

  await damage(dir, name(kept[1]), (b) => ((b[b.length - 1] ^= 0xff), b))
  const fallback = await recover({ wal, checkpoints: cps, ...sum })
  t.is(fallback.snapshotLsn, kept[0])
  t.deepEqual(fallback.damagedCheckpoints.map((d) => d.lsn), [kept[1]])
  t.deepEqual(fallback.state, state, 'every record is still there to replay from the older checkpoint')
  await wal.close()
})

test('recover refuses a checkpoint that covers more than the log holds', async (t) => {
  const wal = await Wal.open(path.join(tmpDir(t), 'wal'))
  await wal.append('1')
  const cps = new Checkpoints(new MemoryDirectory())
  await cps.write(wal.nextLsn + 1000, '{}')
  await t.throwsAsync(recover({ wal, checkpoints: cps, ...sum }), { instanceOf: SturdyError, code: 'ERR_CORRUPT' })
  await t.throwsAsync(recover({ wal, checkpoints: cps }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  await wal.close()
})

test('a checkpoint below existing ones (the log was cut back) replaces them', async (t) => {
  const { MemoryDirectory: Mem, Checkpoints: Cps } = await import('../dist/index.mjs')
  const cps = new Cps(new Mem(), { keep: 1 })
  await cps.write(500, Buffer.from('state at 500, history later discarded'))
  await cps.write(400, Buffer.from('state at 400 of the new history'))
  t.deepEqual(await cps.list(), [400])
  const latest = await cps.latest()
  t.is(latest.lsn, 400)
  t.is(latest.data.toString(), 'state at 400 of the new history')
})

both('pruning keeps `keep` checkpoints that verify: a damaged one neither counts nor stays', async (t, dir) => {
  const cps = new Checkpoints(dir, { keep: 2 })
  await cps.write(100, 'a')
  await cps.write(200, 'b')
  await damage(dir, name(200), (b) => ((b[b.length - 1] ^= 1), b))
  await cps.write(300, 'c')
  // Newest first: 300 (valid), 200 (damaged: dropped), 100 (valid: the second kept).
  t.deepEqual(await cps.list(), [100, 300])
  await damage(dir, name(300), (b) => b.subarray(0, 10))
  t.is((await cps.latest()).data.toString(), 'a', 'the fallback is still there')
})

/** A checkpoint directory keeping `keep`, and a log of small segments holding 40 records. */
async function logWith40Records(t, keep) {
  const dir = await FsDirectory.open(path.join(tmpDir(t), 'cps'))
  const wal = await Wal.open(path.join(tmpDir(t), 'wal'), SMALL)
  const cps = new Checkpoints(dir, { keep })
  const lsns = []
  for (let i = 0; i < 40; i++) lsns.push(await wal.append(`record ${i}`.padEnd(300, '.')))
  return { dir, wal, cps, lsns }
}

test('checkpoint() drops log segments only below the oldest checkpoint that verifies', async (t) => {
  const { dir, wal, cps, lsns } = await logWith40Records(t, 2)
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[9], data: '10 records' })
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[19], data: '20 records' })
  await damage(dir, name(lsns[19]), (b) => Buffer.alloc(b.length))
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[29], data: '30 records' })
  t.deepEqual(await cps.list(), [lsns[9], lsns[29]])
  t.true(wal.firstLsn <= lsns[10], 'every record after the oldest valid checkpoint is still in the log')
  await damage(dir, name(lsns[29]), (b) => Buffer.alloc(b.length))
  const { lsn, replayed, snapshotLsn } = await recover({ wal, checkpoints: cps, init: (s) => (s ? s.toString() : ''), apply: () => {} })
  t.is(snapshotLsn, lsns[9])
  t.is(replayed, 30)
  t.is(lsn, lsns[39])
  await wal.close()
})

test('recover() refuses, rather than silently missing records, when the only checkpoints the trimmed log relies on are damaged', async (t) => {
  const { dir, wal, cps, lsns } = await logWith40Records(t, 1)
  const opts = { wal, checkpoints: cps, init: (s) => (s ? s.toString() : ''), apply: () => {} }
  t.is((await recover(opts)).replayed, 40, 'nothing trimmed, no checkpoint: the whole log')
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[29], data: '30 records' })
  t.true(wal.firstLsn > lsns[0], 'the log was trimmed for the checkpoint')
  t.is((await recover(opts)).replayed, 10)
  await damage(dir, name(lsns[29]), (b) => Buffer.alloc(b.length))
  const e = await t.throwsAsync(recover(opts), { instanceOf: SturdyError, code: 'ERR_CORRUPT' })
  t.regex(e.message, /is damaged, and the log has dropped records up to LSN \d+, past its beginning/)
  await wal.close()
})

test('checkpoint() refuses bad input and a stale snapshot before touching anything', async (t) => {
  const { dir, wal, cps, lsns } = await logWith40Records(t, 1)
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[20], data: 'at 20' })
  const first = wal.firstLsn
  const bad = { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }
  await t.throwsAsync(checkpoint(undefined), bad)
  await t.throwsAsync(checkpoint({ checkpoints: cps, lsn: lsns[30], data: 'no wal' }), bad)
  await t.throwsAsync(checkpoint({ wal, lsn: lsns[30], data: 'no checkpoints' }), bad)
  await t.throwsAsync(checkpoint({ wal, checkpoints: cps, lsn: wal.nextLsn + 100_000, data: 'past the end' }), bad)
  await t.throwsAsync(checkpoint({ wal, checkpoints: cps, lsn: 'x', data: 'not an lsn' }), bad)
  // Older than the kept one: a snapshot that finished late. Issued together, the newer first.
  const [newer, older] = await Promise.allSettled([
    checkpoint({ wal, checkpoints: cps, lsn: lsns[25], data: 'at 25' }),
    checkpoint({ wal, checkpoints: cps, lsn: lsns[22], data: 'at 22' }),
  ])
  t.is(newer.status, 'fulfilled')
  t.is(older.reason?.code, 'ERR_INVALID_ARG')
  t.deepEqual(await cps.list(), [lsns[25]])
  t.true(wal.firstLsn >= first)
  // Below what the log already dropped: the snapshot would miss records.
  await t.throwsAsync(checkpoint({ wal, checkpoints: cps, lsn: lsns[0], data: 'at 0' }), bad)
  t.deepEqual(await cps.list(), [lsns[25]])
  const { state, replayed } = await recover({ wal, checkpoints: cps, init: (s) => s.toString(), apply: () => {} })
  t.is(state, 'at 25')
  t.is(replayed, 14)
  await t.throwsAsync(recover({ checkpoints: cps, init: () => 0, apply: () => {} }), bad)
  void dir
  await wal.close()
})

test('recover() refuses a trimmed log whose records after the snapshot are gone, with nothing damaged', async (t) => {
  const { dir, wal, cps, lsns } = await logWith40Records(t, 1)
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[30], data: 'at 30' })
  const trimmed = wal.droppedEnd
  t.true(trimmed > lsns[0])
  const opts = { wal, checkpoints: cps, init: (s) => (s ? s.toString() : 'empty'), apply: () => {} }
  t.is((await recover(opts)).replayed, 9)
  // Replaced by hand with an older snapshot (Checkpoints.write takes a lower LSN as a cut-back
  // log and deletes the newer one): the records between are neither in it nor in the log.
  await cps.write(lsns[5], 'at 5')
  const e = await t.throwsAsync(recover(opts), { instanceOf: SturdyError, code: 'ERR_CORRUPT' })
  t.regex(e.message, new RegExp(`dropped records up to LSN ${trimmed}, past the checkpoint at LSN ${lsns[5]}`))
  // The checkpoints lost altogether.
  for (const name of await dir.listDir('')) await dir.delete(name)
  const gone = await t.throwsAsync(recover(opts), { instanceOf: SturdyError, code: 'ERR_CORRUPT' })
  t.regex(gone.message, /past its beginning, with no checkpoint standing for them/)
  await wal.close()
})

test('checkpoints taken at the log end fall back past a damaged newest one across a segment boundary', async (t) => {
  // Each checkpoint at `nextLsn` just before the next record starts a new segment: trimming for
  // the older one drops the whole segment before it, yet nothing after the checkpoint is lost.
  const wal = await Wal.open(path.join(tmpDir(t), 'wal'), SMALL)
  const dir = await FsDirectory.open(path.join(tmpDir(t), 'cps'))
  const cps = new Checkpoints(dir, { keep: 2 })
  const big = (n) => String(n).padStart(1500, '0')
  let total = 0
  const add = async (n) => {
    await wal.append(big(n))
    total += n
  }
  await add(1)
  await add(2)
  const older = wal.nextLsn
  await checkpoint({ wal, checkpoints: cps, lsn: older, data: String(total) })
  await add(3) // a new segment
  await add(4)
  const newer = wal.nextLsn
  await checkpoint({ wal, checkpoints: cps, lsn: newer, data: String(total) })
  t.true(wal.firstLsn > older, 'the segment before the older checkpoint was dropped')
  t.true(wal.droppedEnd <= older)
  await damage(dir, name(newer), (b) => ((b[b.length - 1] ^= 0xff), b))
  const got = await recover({ wal, checkpoints: cps, init: (s) => Number(s), apply: (s, { data }) => s + Number(data.toString()) })
  t.is(got.snapshotLsn, older)
  t.is(got.state, total)
  t.deepEqual(got.damagedCheckpoints.map((d) => d.lsn), [newer])
  await wal.close()
})

test('a checkpoint at a record LSN after one at nextLsn of the same state, or at LSN 0, is taken and recovers', async (t) => {
  const { wal, cps, lsns } = await logWith40Records(t, 2)
  const opts = { wal, checkpoints: cps, init: (s) => (s ? s.toString() : 'none'), apply: () => {} }
  // Nothing dropped yet: a snapshot of nothing at LSN 0 is fine.
  await checkpoint({ wal, checkpoints: cps, lsn: 0, data: 'empty' })
  t.is((await recover(opts)).replayed, 40)
  // The same state labelled two ways: the log end, then its newest record. No record lies between.
  await checkpoint({ wal, checkpoints: cps, lsn: wal.nextLsn, data: 'all 40' })
  await checkpoint({ wal, checkpoints: cps, lsn: lsns[39], data: 'all 40' })
  t.deepEqual(await cps.list(), [0, lsns[39]])
  const { state, replayed } = await recover(opts)
  t.is(state, 'all 40')
  t.is(replayed, 0)
  await wal.close()
})
