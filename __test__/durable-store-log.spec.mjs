import path from 'node:path'

import test from 'ava'

import { LogDurableStore, SturdyError } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'
import { tmpDir, assertRefusesBadKeysAndBlobs } from './helpers.mjs'

const AWKWARD = ['', '.', '..', 'a/b', 'a_b', 'A', 'a', '\0', '\ud800', '\udfff\ud800', '\ud83d\ude00', 'x'.repeat(1000)]
const value = (i, v = 0) => Buffer.from(`${v}:${i}`)

async function snapshot(store) {
  const out = new Map()
  for await (const [k, v] of store.loadAll()) {
    if (out.has(k)) throw new Error(`loadAll yielded ${JSON.stringify(k)} twice`)
    out.set(k, v.toString())
  }
  return out
}

/** A map's entries sorted by key (ava compares Maps in insertion order). */
const sorted = (map) => [...map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))

test('persist, delete and reopen: latest values and tombstones survive', async (t) => {
  const dir = path.join(tmpDir(t), 'store')
  const store = await LogDurableStore.open(dir)
  for (const [i, k] of AWKWARD.entries()) await store.persist(k, value(i))
  await Promise.all(AWKWARD.map((k, i) => store.persist(k, value(i, 1))))
  await store.delete('a/b')
  await store.delete('never there')
  t.is(await store.load('a/b'), undefined)
  t.deepEqual(await store.load('A'), value(5, 1))
  await store.close()
  await t.throwsAsync(store.load('A'), { instanceOf: SturdyError, code: 'ERR_CLOSED' })

  const again = await LogDurableStore.open(dir)
  const expected = AWKWARD.filter((k) => k !== 'a/b')
  t.deepEqual(await again.keys(), [...expected].sort())
  const all = await snapshot(again)
  t.deepEqual([...all.keys()].sort(), [...expected].sort())
  for (const k of expected) t.is(all.get(k), value(AWKWARD.indexOf(k), 1).toString())
  t.deepEqual(await again.load('x'.repeat(1000)), value(11, 1))
  await again.close()
})

test('compaction under concurrent writes loses nothing, and frees old segments', async (t) => {
  const dir = path.join(tmpDir(t), 'store')
  const options = { segmentBytes: 8192, compactMinGarbageBytes: 16384, compactGarbageRatio: 1 }
  const store = await LogDurableStore.open(dir, options)
  const errors = []
  store.on('error', (e) => errors.push(e))
  const model = new Map()
  let compactions = 0
  for (let round = 0; round < 40; round++) {
    const ops = []
    for (let i = 0; i < 40; i++) {
      const k = `key-${(round * 7 + i) % 60}`
      if ((round + i) % 11 === 0) {
        model.delete(k)
        ops.push(store.delete(k))
      } else {
        const v = value(i, round)
        model.set(k, v.toString())
        ops.push(store.persist(k, v))
      }
    }
    if (round % 10 === 5) ops.push(store.compact().then(() => compactions++))
    await Promise.all(ops)
    if (round % 8 === 0) {
      const seen = await snapshot(store) // a scan running alongside compaction
      t.deepEqual(sorted(seen), sorted(model), `round ${round}: loadAll`)
    }
  }
  await store.compact()
  t.true(compactions > 0)
  t.true(store.garbageBytes < 3 * 8192, `garbage after compaction: ${store.garbageBytes}`)
  t.deepEqual(errors, [])
  t.deepEqual(sorted(await snapshot(store)), sorted(model))
  await store.close()

  const again = await LogDurableStore.open(dir, options)
  t.deepEqual(await again.keys(), [...model.keys()].sort())
  t.deepEqual(sorted(await snapshot(again)), sorted(model))
  await again.close()
})

test('simulated power loss (during writes and compaction): every key has its old or its new value', async (t) => {
  const keys = Array.from({ length: 12 }, (_, i) => (i === 0 ? '' : i === 1 ? 'a/b' : `k${i}`))
  for (let seed = 1; seed <= 120; seed++) {
    const disk = new SimulatedDisk({ seed })
    const options = { disk, segmentBytes: 4096, maxRecordBytes: 2048, compactMinGarbageBytes: 2048, compactGarbageRatio: 0.5 }
    const store = await LogDurableStore.open('store', options)
    store.on('error', () => {}) // a compaction the power cut short
    // Old values, plus enough garbage that compaction starts during the next phase.
    for (let r = 0; r < 3; r++) await Promise.all(keys.map((k, i) => store.persist(k, value(i, r))))
    const old = new Map(keys.map((k, i) => [k, value(i, 2).toString()]))
    disk.crashAfter(1 + (seed % 25))
    const acked = new Map()
    const next = new Map()
    await Promise.allSettled(
      keys.map(async (k, i) => {
        for (let r = 3; r < 6; r++) {
          const del = (i + r + seed) % 7 === 0
          next.set(k, [...(next.get(k) ?? []), del ? undefined : value(i, r).toString()])
          if (del) await store.delete(k)
          else await store.persist(k, value(i, r))
          acked.set(k, del ? undefined : value(i, r).toString())
        }
      }),
    )
    disk.crash()
    await store.close().catch(() => {})
    const again = await LogDurableStore.open('store', options)
    const got = await snapshot(again)
    for (const k of keys) {
      const v = got.get(k)
      // Acknowledged: that value or a later attempt. Otherwise: the old value or an attempt.
      const attempts = next.get(k) ?? []
      const allowed = acked.has(k) ? attempts.slice(attempts.indexOf(acked.get(k))) : [old.get(k), ...attempts]
      t.true(allowed.includes(v), `seed ${seed} key ${JSON.stringify(k)}: got ${v}, allowed ${JSON.stringify(allowed)}`)
    }
    t.deepEqual(await again.keys(), [...got.keys()].sort(), `seed ${seed}: keys()`)
    // Appends go on after recovery.
    await again.persist('after', Buffer.from('x'))
    await again.close()
  }
})

test('bad input is ERR_INVALID_ARG and leaves stored data untouched', async (t) => {
  const disk = new SimulatedDisk({ seed: 1 })
  const store = await LogDurableStore.open('s', { disk })
  await store.persist('k', Buffer.from('v'))
  const bad = { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }
  await assertRefusesBadKeysAndBlobs(t, store)
  await t.throwsAsync(LogDurableStore.open('t', { disk, compactGarbageRatio: -1 }), bad)
  await t.throwsAsync(LogDurableStore.open('t', { disk, durableKeys: [1] }), bad)
  t.deepEqual(await store.keys(), ['k'])
  t.deepEqual(await store.load('k'), Buffer.from('v'))
  await store.close()
  const again = await LogDurableStore.open('s', { disk })
  t.deepEqual(await snapshot(again), new Map([['k', 'v']]))
  await again.close()
})

test('durableKeys and writeBehindMs work on the log store too', async (t) => {
  const disk = new SimulatedDisk({ seed: 2 })
  const store = await LogDurableStore.open('s', { disk, durableKeys: ['d*'], writeBehindMs: 10 })
  await store.persist('d1', Buffer.from('1'))
  await store.persist('m1', Buffer.from('2'))
  t.deepEqual(await store.keys(), ['d1', 'm1'])
  await store.close()
  const again = await LogDurableStore.open('s', { disk })
  t.deepEqual(await again.keys(), ['d1'])
  await again.close()
})

test('an abandoned loadAll() does not block compaction or close, and a scan that compaction overtakes yields every key once', async (t) => {
  const dir = path.join(tmpDir(t), 'store')
  const options = { segmentBytes: 8192, compactMinGarbageBytes: 0, compactGarbageRatio: 0 }
  const store = await LogDurableStore.open(dir, options)
  for (let i = 0; i < 60; i++) await store.persist(`key-${i}`, Buffer.alloc(200, i))
  for (let i = 0; i < 60; i++) await store.persist(`key-${i}`, Buffer.alloc(200, i + 1)) // garbage below

  const abandoned = store.loadAll()[Symbol.asyncIterator]()
  t.false((await abandoned.next()).done) // started, then never finished nor returned

  const scan = store.loadAll()[Symbol.asyncIterator]()
  const seen = new Map()
  for (let i = 0; i < 5; i++) {
    const { value } = await scan.next()
    seen.set(value[0], (seen.get(value[0]) ?? 0) + 1)
  }
  await store.compact() // rewrites every live record above the scan and drops the old segments
  for (let r = await scan.next(); !r.done; r = await scan.next()) seen.set(r.value[0], (seen.get(r.value[0]) ?? 0) + 1)
  t.is(seen.size, 60, 'every key')
  t.true([...seen.values()].every((n) => n === 1), 'once each')
  await store.close() // would wait for ever on the abandoned scan before
  t.pass()
})
