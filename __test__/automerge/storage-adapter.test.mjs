// automerge-repo's storage adapter acceptance suite, run on SturdyStorageAdapter over each
// sturdy store. Run: npx --prefix __test__/automerge vitest run --root __test__/automerge
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { runStorageAdapterTests } from '@automerge/automerge-repo/helpers/tests/storage-adapter-tests.js'
import { describe, expect, it } from 'vitest'

import { SturdyStorageAdapter, encodeStorageKey, decodeStorageKey } from '../../dist/automerge.mjs'
import { FileDurableStore, LogDurableStore, MemoryDirectory, NoopDurableStore } from '../../dist/index.mjs'

/** A setup for runStorageAdapterTests: a fresh temporary directory per test, removed after. */
function onDisk(open) {
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sturdy-automerge-'))
    const adapter = await open(dir)
    return {
      adapter,
      teardown: async () => {
        await adapter.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  }
}

describe('SturdyStorageAdapter on FileDurableStore (FsDirectory)', () => {
  runStorageAdapterTests(onDisk((dir) => SturdyStorageAdapter.open(dir)), 'FileDurableStore')
})

describe('SturdyStorageAdapter on LogDurableStore', () => {
  runStorageAdapterTests(onDisk((dir) => SturdyStorageAdapter.openLog(join(dir, 'log'))), 'LogDurableStore')
})

describe('SturdyStorageAdapter on FileDurableStore (MemoryDirectory)', () => {
  runStorageAdapterTests(async () => {
    const store = await FileDurableStore.open(new MemoryDirectory())
    return { adapter: new SturdyStorageAdapter(store), teardown: () => store.close() }
  }, 'MemoryDirectory')
})

// NoopDurableStore keeps nothing, so it cannot pass the suite (load after save is undefined).

describe('SturdyStorageAdapter on a write-behind LogDurableStore', () => {
  runStorageAdapterTests(
    onDisk((dir) => SturdyStorageAdapter.openLog(join(dir, 'log'), { store: { writeBehindMs: 5 } })),
    'write-behind',
  )
})

describe('storage key mapping', () => {
  const awkward = [
    [],
    [''],
    ['', ''],
    ['a'],
    ['a', 'b'],
    ['a', 'bc'],
    ['ab'],
    ['a/b'],
    ['a', '/b'],
    ['a%2Fb'],
    ['a%', '2Fb'],
    ['%'],
    ['%25'],
    ['/'],
    ['//'],
    ['..', '.'],
    ['\u0000', '\uffff', '\ud800'],
    ['日本', '🙂'],
  ]

  it('is reversible and injective', () => {
    const seen = new Map()
    for (const key of awkward) {
      const encoded = encodeStorageKey(key)
      expect(decodeStorageKey(encoded)).toStrictEqual(key)
      expect(seen.has(encoded), `${JSON.stringify(key)} collides with ${JSON.stringify(seen.get(encoded))}`).toBe(false)
      seen.set(encoded, key)
    }
  })

  it('rejects bad keys with ERR_INVALID_ARG', async () => {
    const adapter = new SturdyStorageAdapter(new NoopDurableStore())
    for (const bad of ['a', null, undefined, 7, [1], ['a', null]]) {
      expect(() => encodeStorageKey(bad)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
      await expect(adapter.load(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      await expect(adapter.save(bad, new Uint8Array(1))).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      await expect(adapter.loadRange(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    }
    await expect(adapter.save(['k'], 'not bytes')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    expect(() => new SturdyStorageAdapter({})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
  })

  it('matches prefixes on whole segments, including empty and escaped ones', async () => {
    const store = await FileDurableStore.open(new MemoryDirectory())
    const adapter = new SturdyStorageAdapter(store)
    for (const [i, key] of awkward.entries()) await adapter.save(key, new Uint8Array([i]))
    const isPrefix = (p, k) => p.length <= k.length && p.every((s, i) => s === k[i])
    for (const prefix of awkward) {
      const expected = awkward.filter((k) => isPrefix(prefix, k))
      const got = await adapter.loadRange(prefix)
      expect(got.map((c) => c.key), JSON.stringify(prefix)).toStrictEqual(expected)
      for (const chunk of got) {
        expect(chunk.data).toStrictEqual(new Uint8Array([awkward.findIndex((k) => JSON.stringify(k) === JSON.stringify(chunk.key))]))
      }
    }
    await adapter.removeRange(['a'])
    expect((await adapter.loadRange([])).map((c) => c.key)).toStrictEqual(awkward.filter((k) => k[0] !== 'a'))
    await store.close()
  })

  it('finds the keys already in the store after reopening, and ignores keys that are not its own', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sturdy-automerge-'))
    try {
      let adapter = await SturdyStorageAdapter.openLog(dir)
      await adapter.save(['doc', 'snapshot', 'h1'], new Uint8Array([1]))
      await adapter.save(['doc', 'incremental', 'h2'], new Uint8Array([2]))
      await adapter.save(['other', 'snapshot', 'h3'], new Uint8Array([3]))
      await adapter.store.persist('not-an-automerge-key', new Uint8Array([4]))
      await adapter.close()
      adapter = await SturdyStorageAdapter.openLog(dir)
      expect(await adapter.loadRange(['doc'])).toStrictEqual([
        { key: ['doc', 'incremental', 'h2'], data: new Uint8Array([2]) },
        { key: ['doc', 'snapshot', 'h1'], data: new Uint8Array([1]) },
      ])
      expect((await adapter.loadRange([])).length).toBe(3)
      await adapter.removeRange(['doc'])
      await adapter.close()
      adapter = await SturdyStorageAdapter.openLog(dir)
      expect((await adapter.loadRange([])).map((c) => c.key)).toStrictEqual([['other', 'snapshot', 'h3']])
      expect(await adapter.store.load('not-an-automerge-key')).toBeDefined()
      await adapter.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('keeps call order for concurrent operations on one key', async () => {
    const adapter = new SturdyStorageAdapter(await FileDurableStore.open(new MemoryDirectory()), { ownsStore: true })
    const key = ['doc', 'snapshot', 'x']
    await Promise.all([adapter.save(key, new Uint8Array([1])), adapter.remove(key), adapter.save(key, new Uint8Array([2]))])
    expect(await adapter.loadRange(['doc'])).toStrictEqual([{ key, data: new Uint8Array([2]) }])
    await Promise.all([adapter.save(key, new Uint8Array([3])), adapter.removeRange(['doc'])])
    expect(await adapter.loadRange(['doc'])).toStrictEqual([])
    expect(await adapter.load(key)).toBeUndefined()
    await adapter.close()
  })
})
