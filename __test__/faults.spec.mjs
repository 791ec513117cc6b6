// Injected I/O faults through the public API: a failed durability barrier poisons the log, and a
// full disk gives a clear error while the log stays readable and reopens.
import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

async function readAll(wal) {
  const out = []
  for await (const { lsn, data } of wal.entries()) out.push([lsn, data.toString()])
  return out
}

test('a failed barrier poisons the log; reopening recovers exactly the acknowledged records', async (t) => {
  for (let seed = 1; seed <= 30; seed++) {
    const disk = new SimulatedDisk({ seed })
    const wal = await Wal.open('log', { disk, segmentBytes: 4096 })
    const acked = []
    for (let i = 0; i < 10; i++) acked.push([await wal.append(`acked ${i}`), `acked ${i}`])
    disk.failSync(1, 'EIO')
    // A group of concurrent appends whose barrier fails, and more appends queued behind it.
    const failing = Array.from({ length: 5 }, (_, i) => wal.append(`unacknowledged ${i}`))
    const errors = await Promise.allSettled(failing)
    for (const e of errors) {
      t.is(e.status, 'rejected')
      t.is(e.reason.code, 'ERR_POISONED')
      t.is(e.reason.errno, 5)
    }
    // Never retried into success: every later write is refused.
    await t.throwsAsync(wal.append('later'), { code: 'ERR_POISONED' })
    await t.throwsAsync(wal.appendBatch(['a', 'b']), { code: 'ERR_POISONED' })
    await t.throwsAsync(wal.sync(), { code: 'ERR_POISONED' })
    await t.throwsAsync(wal.truncateFrom(acked[3][0]), { code: 'ERR_POISONED' })
    // Reads still work and show only what was acknowledged.
    t.deepEqual(await readAll(wal), acked)
    t.is((await wal.read(acked[9][0])).toString(), 'acked 9')
    await wal.close()

    disk.crash()
    const reopened = await Wal.open('log', { disk, segmentBytes: 4096 })
    const got = await readAll(reopened)
    // The failed group may or may not have reached the platter, but never reported durable;
    // everything acknowledged is there.
    t.deepEqual(got.slice(0, acked.length), acked)
    t.true(got.slice(acked.length).every(([, s], i) => s === `unacknowledged ${i}`), `seed ${seed}`)
    const lsn = await reopened.append('after recovery')
    t.is((await reopened.read(lsn)).toString(), 'after recovery')
    await reopened.close()
  }
})

test('disk full: a clear error, a readable log, and a working reopen', async (t) => {
  const disk = new SimulatedDisk({ seed: 7 })
  const wal = await Wal.open('log', { disk })
  const a = await wal.append('first')
  disk.failWrite(1, 'ENOSPC')
  const e = await t.throwsAsync(wal.append('does not fit'))
  t.is(e.code, 'ERR_IO')
  t.is(e.errno, 28)
  t.regex(e.message, /No space left on device/)
  await t.throwsAsync(wal.append('still full'), { code: 'ERR_POISONED' })
  t.is((await wal.read(a)).toString(), 'first')
  await wal.close()
  const reopened = await Wal.open('log', { disk })
  t.deepEqual(await readAll(reopened), [[a, 'first']])
  const b = await reopened.append('space again')
  t.is((await reopened.read(b)).toString(), 'space again')
  await reopened.close()
})

test('a failed write during segment rotation is reported, not swallowed', async (t) => {
  const disk = new SimulatedDisk({ seed: 3 })
  const wal = await Wal.open('log', { disk, segmentBytes: 4096 })
  const acked = []
  for (let i = 0; i < 5; i++) acked.push([await wal.append('x'.repeat(500)), 'x'.repeat(500)])
  // The next writes fill the segment; fail the creation of the next one.
  disk.failWrite(4, 'EIO')
  let failed
  for (let i = 0; i < 20 && !failed; i++) {
    try {
      acked.push([await wal.append('y'.repeat(500)), 'y'.repeat(500)])
    } catch (e) {
      failed = e
    }
  }
  t.truthy(failed)
  t.true(['ERR_IO', 'ERR_POISONED'].includes(failed.code))
  await wal.close()
  disk.crash()
  const reopened = await Wal.open('log', { disk, segmentBytes: 4096 })
  const got = await readAll(reopened)
  t.deepEqual(got.slice(0, acked.length), acked)
  await reopened.close()
})

test('SimulatedDisk rejects bad arguments with typed errors', (t) => {
  t.throws(() => new SimulatedDisk({ seed: -1 }), { code: 'ERR_INVALID_ARG' })
  const disk = new SimulatedDisk({ seed: 1 })
  t.throws(() => disk.failSync(0), { code: 'ERR_INVALID_ARG' })
  t.throws(() => disk.failWrite(1, 'ENOTANERROR'), { code: 'ERR_INVALID_ARG' })
  t.throws(() => disk.crash({ keep: 'most' }), { code: 'ERR_INVALID_ARG' })
  t.throws(() => disk.crash({ tear: 2 }), { code: 'ERR_INVALID_ARG' })
  t.throws(() => disk.writeFile('log', 'not-a-segment', new Uint8Array(1)), { code: 'ERR_INVALID_ARG' })
})

test('a second open of the same simulated log is locked until the first closes', async (t) => {
  const disk = new SimulatedDisk({ seed: 1 })
  const wal = await Wal.open('log', { disk })
  await t.throwsAsync(Wal.open('log', { disk }), { code: 'ERR_LOCKED' })
  const other = await Wal.open('other', { disk })
  await other.close()
  await wal.close()
  const again = await Wal.open('log', { disk })
  await again.close()
})
