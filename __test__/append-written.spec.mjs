// Wal.appendWritten: records a caller lays out itself, straight into the staging buffer (what
// RaftLog uses). They share the group of the turn's other appends; a writer that throws or a
// length over the limit adds nothing, and the appends around it are unharmed.
import test from 'ava'

import { Wal, SturdyError } from '../dist/index.mjs'

import { tmpDir } from './helpers.mjs'

/** A writer of `payloads` that throws when it reaches record `failAt`. */
function writerOf(payloads, failAt = -1) {
  return {
    lengths: payloads.map((p) => p.length),
    write(k, buf, at) {
      if (k === failAt) throw new Error('writer failed')
      buf.set(payloads[k], at)
    },
  }
}

async function contents(wal) {
  const out = []
  for await (const { lsn, data } of wal.entries()) out.push([lsn, data.toString()])
  return out
}

test('written records land in order with the turn\'s other appends, at the LSNs returned', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const payloads = ['one', '', 'three', 'x'.repeat(70_000)].map((s) => Buffer.from(s))
  const before = wal.append('before')
  const written = wal.appendWritten(writerOf(payloads))
  const after = wal.append('after')
  const lsns = [await before, ...(await written), await after]
  const expected = ['before', ...payloads.map(String), 'after']
  t.deepEqual(await contents(wal), lsns.map((lsn, i) => [lsn, expected[i]]))
  await wal.close()
  const again = await Wal.open(dir)
  t.deepEqual(await contents(again), lsns.map((lsn, i) => [lsn, expected[i]]))
  await again.close()
})

test('a writer that throws, or a record over maxRecordBytes, rejects and adds nothing', async (t) => {
  const wal = await Wal.open(tmpDir(t), { maxRecordBytes: 1000 })
  const before = wal.append('before')
  const thrown = await t.throwsAsync(wal.appendWritten(writerOf([Buffer.from('a'), Buffer.from('b')], 1)))
  t.is(thrown.message, 'writer failed')
  const tooLarge = await t.throwsAsync(wal.appendWritten(writerOf([Buffer.from('a'), Buffer.alloc(1001)])), { instanceOf: SturdyError })
  t.is(tooLarge.code, 'ERR_RECORD_TOO_LARGE')
  const bad = await t.throwsAsync(wal.appendWritten({ lengths: [1.5], write() {} }), { instanceOf: SturdyError })
  t.is(bad.code, 'ERR_INVALID_ARG')
  const lsns = [await before, await wal.append('after')]
  t.deepEqual(await contents(wal), [[lsns[0], 'before'], [lsns[1], 'after']])
  await wal.close()
})

test('a staging buffer that cannot be allocated leaves the records staged before it intact', async (t) => {
  const { Group, BufferPool } = await import('../dist/group.js')
  const pool = new BufferPool()
  const group = new Group(pool, 0)
  group.add(Buffer.from('first'), 5)
  // The next buffer cannot be had (as when a record needs more than one Buffer may hold).
  pool.take = () => {
    throw new RangeError('no memory')
  }
  t.throws(() => group.add(Buffer.alloc(70_000), 70_000), { instanceOf: RangeError })
  group.add(Buffer.from('second'), 6)
  group.seal()
  const staged = Buffer.concat(group.chunks)
  t.is(staged.length, 8 + 5 + 8 + 6)
  t.is(staged.subarray(8, 13).toString(), 'first')
  t.is(staged.subarray(21).toString(), 'second')
})
