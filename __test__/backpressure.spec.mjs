// The cap on bytes in flight: producers that outrun the disk are held back in one gathering
// group, and nothing is lost, reordered or acknowledged early.
import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { tmpDir } from './helpers.mjs'

test('a tiny maxPendingBytes still commits every append, in order', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { maxPendingBytes: 1024 })
  const pending = []
  // Appends over many turns without awaiting: far more than the cap is in flight.
  for (let turn = 0; turn < 50; turn++) {
    for (let i = 0; i < 40; i++) pending.push(wal.append(`t${turn}-r${i}:` + 'x'.repeat(200)))
    await new Promise((resolve) => setImmediate(resolve))
  }
  const lsns = await Promise.all(pending)
  t.true(lsns.every((l, i) => i === 0 || l > lsns[i - 1]))
  await wal.close()
  const reopened = await Wal.open(dir)
  const got = []
  for await (const { lsn, data } of reopened.entries()) got.push([lsn, data.toString().split(':')[0]])
  await reopened.close()
  t.is(got.length, 2000)
  t.deepEqual(
    got.map(([l]) => l),
    lsns,
  )
  t.is(got[1999][1], 't49-r39')
})

test('maxPendingBytes must be a positive integer', async (t) => {
  const dir = tmpDir(t)
  for (const bad of [0, -1, 1.5, 'big']) {
    await t.throwsAsync(Wal.open(dir, { maxPendingBytes: bad }), { code: 'ERR_INVALID_ARG' })
  }
})
