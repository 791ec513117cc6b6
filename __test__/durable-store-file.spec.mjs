import test from 'ava'

import { FileDurableStore, FsDirectory, LogDurableStore, MemoryDirectory, SturdyError } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'
import { tmpDir, assertRefusesBadKeysAndBlobs } from './helpers.mjs'

const AWKWARD = [
  '', '.', '..', ' ', 'a/b', 'a_b', 'a\\b', 'A', 'a', 'Ab', 'aB', 'CON', 'con', 'k', 'h', '_0041', 'x.', '\0',
  '\u00e9', 'e\u0301', '\ud800', '\udfff\ud800', '\ud83d\ude00', 'x'.repeat(200), 'x'.repeat(1000), 'X'.repeat(1000),
  'x'.repeat(1000) + 'y', '/'.repeat(300),
]

function randomKeys(n, seed) {
  let x = seed >>> 0 || 1
  const next = () => ((x ^= x << 13), (x >>>= 0), (x ^= x >>> 17), (x ^= x << 5), (x >>>= 0))
  const keys = new Set()
  while (keys.size < n) {
    const len = next() % 5 === 0 ? next() % 400 : next() % 24
    let s = ''
    for (let j = 0; j < len; j++) {
      const r = next() % 3
      s += String.fromCharCode(r === 0 ? next() % 0x10000 : r === 1 ? 0x20 + (next() % 0x5f) : 0xd800 + (next() % 0x800))
    }
    keys.add(s)
  }
  return [...keys]
}

const value = (key, v = 0) => Buffer.from(`${v}:${encodeURIComponent(key.replace(/[\ud800-\udfff]/g, '?'))}`)

async function roundTrip(t, dir, keys) {
  const store = await FileDurableStore.open(dir)
  for (let i = 0; i < keys.length; i += 200) await Promise.all(keys.slice(i, i + 200).map((k) => store.persist(k, value(k))))
  await store.close()
  const again = await FileDurableStore.open(dir)
  t.deepEqual(await again.keys(), [...keys].sort(), 'keys() after reopen')
  let bad = 0
  let n = 0
  for await (const [k, v] of again.loadAll()) {
    n++
    if (!v.equals(value(k))) bad++
  }
  t.is(n, keys.length, 'loadAll yields every key once')
  t.is(bad, 0, 'loadAll values')
  for (const k of AWKWARD.filter((k) => keys.includes(k))) t.deepEqual(await again.load(k), value(k), JSON.stringify(k).slice(0, 40))
  await again.close()
}

test('awkward keys round-trip through a reopen on the file system', async (t) => {
  await roundTrip(t, await FsDirectory.open(tmpDir(t)), [...new Set([...AWKWARD, ...randomKeys(300, 3)])])
})

test('10,000 random Unicode keys round-trip through a reopen (MemoryDirectory)', async (t) => {
  await roundTrip(t, new MemoryDirectory({ seed: 1 }), [...new Set([...AWKWARD, ...randomKeys(10_000, 11)])])
})

test('persist, load, delete, keys sorted; deletes are durable', async (t) => {
  const dir = new MemoryDirectory({ seed: 2 })
  const store = await FileDurableStore.open(dir)
  await store.persist('b', Buffer.from('1'))
  await store.persist('a', new Uint8Array([2]))
  await store.persist('b', Buffer.from('3'))
  t.deepEqual(await store.keys(), ['a', 'b'])
  t.deepEqual(await store.load('b'), Buffer.from('3'))
  t.is(await store.load('zz'), undefined)
  await store.delete('a')
  await store.delete('never')
  t.deepEqual(await store.keys(), ['b'])
  dir.crash()
  const again = await FileDurableStore.open(dir)
  t.deepEqual(await again.keys(), ['b'])
  t.deepEqual(await again.load('b'), Buffer.from('3'))
  await again.close()
  await t.throwsAsync(again.persist('x', Buffer.from('y')), { instanceOf: SturdyError, code: 'ERR_CLOSED' })
})

test('durableKeys: only matching keys survive a restart', async (t) => {
  const dir = new MemoryDirectory({ seed: 3 })
  const store = await FileDurableStore.open(dir, { durableKeys: ['config', 'counter/*'] })
  for (const k of ['config', 'counter/a', 'counter/', 'cache/x', 'configx']) await store.persist(k, value(k))
  t.deepEqual(await store.keys(), ['cache/x', 'config', 'configx', 'counter/', 'counter/a'])
  t.deepEqual(await store.load('cache/x'), value('cache/x'))
  await store.close()
  const again = await FileDurableStore.open(dir, { durableKeys: ['config', 'counter/*'] })
  t.deepEqual(await again.keys(), ['config', 'counter/', 'counter/a'])
  await again.close()
})

// Both stores: a key stored by an earlier open that `durableKeys` no longer matches.
const BOTH_STORES = [
  ['file', () => {
    const dir = new MemoryDirectory({ seed: 21 })
    return (options) => FileDurableStore.open(dir, options)
  }],
  ['log', () => {
    const disk = new SimulatedDisk()
    return (options) => LogDurableStore.open('s', { disk, ...options })
  }],
]
for (const [name, backend] of BOTH_STORES) {
  test(`${name}: a key no longer durable keeps its stored value until it changes, then never comes back`, async (t) => {
    const open = backend()
    const wide = await open()
    for (const k of ['changed', 'deleted', 'untouched', 'kept']) await wide.persist(k, Buffer.from(`old ${k}`))
    await wide.close()
    const narrow = await open({ durableKeys: ['kept'] })
    t.deepEqual(await narrow.load('untouched'), Buffer.from('old untouched'))
    await narrow.persist('changed', Buffer.from('new'))
    await narrow.delete('deleted')
    // Within this open: the new value, and a delete that holds.
    t.deepEqual(await narrow.load('changed'), Buffer.from('new'))
    t.is(await narrow.load('deleted'), undefined)
    t.deepEqual(await narrow.keys(), ['changed', 'kept', 'untouched'])
    const all = new Map()
    for await (const [k, v] of narrow.loadAll()) all.set(k, v.toString())
    t.is(all.get('changed'), 'new')
    t.false(all.has('deleted'))
    await narrow.close()
    // After a restart: the changed key's memory-only value is gone, and so is its old one.
    const again = await open({ durableKeys: ['kept'] })
    t.deepEqual(await again.keys(), ['kept', 'untouched'])
    t.is(await again.load('changed'), undefined)
    t.is(await again.load('deleted'), undefined)
    await again.close()
  })
}

/** A directory whose directory syncs fail: a rename or delete happens, its barrier does not. */
function failingDirSyncs(dir) {
  const fail = () => Promise.reject(new SturdyError('ERR_IO', 'injected: directory sync failed'))
  return new Proxy(dir, {
    get(target, prop) {
      if (prop === 'syncParentDir') return fail
      if (prop === 'atomicWriteDurable') return (p, data) => target.atomicWrite(p, data).then(fail)
      const v = Reflect.get(target, prop)
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
}

test('a write or delete whose directory sync fails leaves the index as the disk has it', async (t) => {
  const dir = new MemoryDirectory({ seed: 22 })
  const healthy = await FileDurableStore.open(dir)
  await healthy.persist('was', Buffer.from('there'))
  await healthy.close()
  const store = await FileDurableStore.open(failingDirSyncs(dir))
  // The new file is in place, though not durably: it reads back, and a delete must remove it.
  await t.throwsAsync(store.persist('fresh', Buffer.from('v')), { code: 'ERR_IO' })
  t.deepEqual(await store.load('fresh'), Buffer.from('v'))
  t.deepEqual(await store.keys(), ['fresh', 'was'])
  // The unlink happened: the key is gone, not an error to read.
  await t.throwsAsync(store.delete('was'), { code: 'ERR_IO' })
  t.is(await store.load('was'), undefined)
  await t.throwsAsync(store.delete('fresh'), { code: 'ERR_IO' })
  await store.close()
  const again = await FileDurableStore.open(dir)
  t.deepEqual(await again.keys(), [])
  await again.close()
})

test('writeBehindMs: writes are batched, visible at once and durable after flush/close', async (t) => {
  const dir = new MemoryDirectory({ seed: 4 })
  const store = await FileDurableStore.open(dir, { writeBehindMs: 20 })
  await store.persist('a', Buffer.from('1'))
  await store.persist('b', Buffer.from('2'))
  await store.delete('b')
  t.deepEqual(await store.load('a'), Buffer.from('1'))
  t.is(await store.load('b'), undefined)
  t.deepEqual(await store.keys(), ['a'])
  await store.flush()
  dir.crash()
  const again = await FileDurableStore.open(dir, { writeBehindMs: 20 })
  t.deepEqual(await again.keys(), ['a'])
  await again.persist('c', Buffer.from('3'))
  await new Promise((r) => setTimeout(r, 100)) // the timer flushes on its own
  await again.close()
  const third = await FileDurableStore.open(dir)
  t.deepEqual(await third.keys(), ['a', 'c'])
  await third.close()
})

test('writeBehindMs: a failed write is reported through the error event, not the promise', async (t) => {
  const dir = new MemoryDirectory({ seed: 5 })
  const store = await FileDurableStore.open(dir, { writeBehindMs: 5 })
  const failed = new Promise((resolve) => store.once('error', resolve))
  dir.crashAfter(1)
  await store.persist('a', Buffer.from('1')) // resolves: the write has not happened yet
  const e = await failed
  t.true(e instanceof SturdyError)
  t.is(e.code, 'ERR_IO')
  await store.close()
})

test('writeBehindMs without an error listener: close() rejects with the kept error', async (t) => {
  const dir = new MemoryDirectory({ seed: 6 })
  const store = await FileDurableStore.open(dir, { writeBehindMs: 1000 })
  dir.crashAfter(1)
  await store.persist('a', Buffer.from('1'))
  await t.throwsAsync(store.close(), { instanceOf: SturdyError, code: 'ERR_IO' })
})

test('simulated power loss: every key holds its old or its new value, never torn or empty', async (t) => {
  let checked = 0
  for (let seed = 1; seed <= 150; seed++) {
    const dir = new MemoryDirectory({ seed })
    const keys = ['a', 'B', 'a/b', '', 'x'.repeat(500), '\ud800']
    const store = await FileDurableStore.open(dir)
    for (const k of keys) await store.persist(k, value(k, 1))
    dir.crashAfter(1 + (seed % 40))
    const acked = new Map()
    await Promise.allSettled(
      keys.map(async (k, i) => {
        if (i === 2 && seed % 2 === 0) {
          await store.delete(k)
          // A real process dies with the power: nothing is acknowledged after the crash.
          if (dir.stats.crashes === 0) acked.set(k, null)
        } else {
          await store.persist(k, value(k, 2))
          if (dir.stats.crashes === 0) acked.set(k, value(k, 2))
        }
      }),
    )
    dir.crash()
    const again = await FileDurableStore.open(dir)
    for (const [i, k] of keys.entries()) {
      const got = await again.load(k)
      const newValue = i === 2 && seed % 2 === 0 ? undefined : value(k, 2)
      if (acked.has(k)) t.deepEqual(got, newValue, `seed ${seed} key ${i}: acknowledged`)
      else t.true(got === undefined ? newValue === undefined : got.equals(value(k, 1)) || got.equals(value(k, 2)), `seed ${seed} key ${i}`)
      checked++
    }
    const present = []
    for (const k of keys) if ((await again.load(k)) !== undefined) present.push(k)
    t.deepEqual(await again.keys(), present.sort(), `seed ${seed}: keys()`)
    await again.close()
  }
  t.is(checked, 150 * 6)
})

test('bad input is ERR_INVALID_ARG and leaves stored data untouched', async (t) => {
  const dir = new MemoryDirectory({ seed: 8 })
  const store = await FileDurableStore.open(dir)
  await store.persist('k', Buffer.from('v'))
  const bad = { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }
  await assertRefusesBadKeysAndBlobs(t, store)
  await t.throwsAsync(FileDurableStore.open(dir, { durableKeys: 'k*' }), bad)
  await t.throwsAsync(FileDurableStore.open(dir, { writeBehindMs: -1 }), bad)
  await t.throwsAsync(FileDurableStore.open('not a directory'), bad)
  t.deepEqual(await store.keys(), ['k'])
  t.deepEqual(await store.load('k'), Buffer.from('v'))
  await store.close()
})
