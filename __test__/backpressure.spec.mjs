// The cap on bytes in flight: producers that outrun the disk are held back in groups of at
// most the cap, handed over in order, and nothing is lost, reordered or acknowledged early.
import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { tmpDir, watchInFlight } from './helpers.mjs'

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

// Serial: it swaps the native commit for a counting one.
test.serial('producers that outrun the disk never have more than maxPendingBytes in flight', async (t) => {
  const seen = watchInFlight(t)
  const cap = 1 << 20
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { maxPendingBytes: cap, segmentBytes: 32 << 20 })
  const record = (tag, size) => Buffer.concat([Buffer.from(tag.padEnd(16)), Buffer.alloc(size - 16, 1)])
  const written = []
  // Each producer awaits its own appends, so only the cap can keep the disk's share bounded.
  await Promise.all([
    ...Array.from({ length: 64 }, async (_, p) => {
      for (let i = 0; i < 4; i++) written.push([await wal.append(record(`a${p}.${i}`, 256 << 10)), `a${p}.${i}`])
    }),
    ...Array.from({ length: 16 }, async (_, p) => {
      for (let i = 0; i < 3; i++) {
        const tags = [0, 1, 2, 3].map((k) => `b${p}.${i}.${k}`)
        const lsns = await wal.appendBatch(tags.map((tag) => record(tag, 64 << 10)))
        lsns.forEach((lsn, k) => written.push([lsn, tags[k]]))
      }
    }),
  ])
  t.true(seen.peak <= cap, `peak in flight ${seen.peak} bytes, cap ${cap}`)
  t.true(seen.groups >= (64 * 4 * (256 << 10) + 16 * 3 * 4 * (64 << 10)) / cap, `${seen.groups} groups`)
  await wal.close()
  const reopened = await Wal.open(dir)
  const stored = new Map()
  for await (const { lsn, data } of reopened.entries()) stored.set(lsn, data.subarray(0, 16).toString().trim())
  await reopened.close()
  t.is(stored.size, written.length)
  for (const [lsn, tag] of written) t.is(stored.get(lsn), tag)
})

test.serial('a record larger than maxPendingBytes goes alone, after what was in flight', async (t) => {
  const seen = watchInFlight(t)
  const wal = await Wal.open(tmpDir(t), { maxPendingBytes: 64 << 10 })
  const small = Array.from({ length: 8 }, (_, i) => wal.append(Buffer.alloc(16 << 10, i)))
  const big = wal.append(Buffer.alloc(1 << 20, 9))
  const after = wal.append(Buffer.alloc(16 << 10, 10))
  const lsns = await Promise.all([...small, big, after])
  t.true(lsns.every((l, i) => i === 0 || l > lsns[i - 1]), 'in order')
  t.true(seen.peak <= (1 << 20) + 64, `peak ${seen.peak}: the big record went alone`)
  t.deepEqual([...(await wal.read(lsns[8]))].slice(0, 4), [9, 9, 9, 9])
  await wal.close()
})
