// A real automerge-repo Repo on SturdyStorageAdapter: create and change documents, shut the
// Repo down, open a new Repo on the same directory, and the documents are intact.
//
// Run by the root `ava` (it matches __test__/**/*.spec.mjs); @automerge/automerge-repo comes from
// this directory's own package: `npm ci --prefix __test__/automerge --no-audit --no-fund` first.
import path from 'node:path'

import test from 'ava'

import { SturdyStorageAdapter } from '../../dist/automerge.mjs'
import { tmpDir } from '../helpers.mjs'

let Repo
try {
  ;({ Repo } = await import('@automerge/automerge-repo'))
} catch (e) {
  throw new Error(
    `@automerge/automerge-repo is not installed for __test__/automerge: run \`npm ci --prefix __test__/automerge --no-audit --no-fund\` (${e.message})`,
  )
}

const stores = {
  'FileDurableStore': (dir) => SturdyStorageAdapter.open(dir),
  'LogDurableStore': (dir) => SturdyStorageAdapter.openLog(dir),
}

/** How long the Repo throttles a document's saves (automerge-repo's default is 100 ms). */
const SAVE_DEBOUNCE_MS = 20
/** Longer than a throttled save can stay pending. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5 * SAVE_DEBOUNCE_MS))

/** Open an adapter and a Repo on `dir` (no network: everything comes from storage). */
async function openRepo(open, dir) {
  const storage = await open(dir)
  const repo = new Repo({ storage, network: [], saveDebounceRate: SAVE_DEBOUNCE_MS })
  return { repo, storage }
}

async function closeRepo({ repo, storage }) {
  await repo.shutdown() // flushes every document to the adapter
  // shutdown() does not cancel the Repo's throttled saves; let them run (they find nothing new
  // to save) before closing the store, or they reject with ERR_CLOSED as unhandled rejections.
  await settle()
  await storage.close()
}

for (const [name, open] of Object.entries(stores)) {
  test(`${name}: documents survive a Repo shutdown and a new Repo on the same directory`, async (t) => {
    const dir = path.join(tmpDir(t), 'automerge')
    const first = await openRepo(open, dir)
    const storageId = await first.repo.storageId()
    t.truthy(storageId)

    // A few documents, one of them changed many times (incremental chunks, then compaction
    // into a snapshot, which removes the incremental chunks with removeRange).
    const todo = first.repo.create({ title: 'todo', items: [] })
    for (let i = 0; i < 200; i++) {
      todo.change((d) => {
        d.items.push({ n: i, text: `item ${i} ${'·'.repeat(i % 7)}` })
      })
      if (i % 20 === 0) await first.repo.flush()
    }
    todo.change((d) => {
      d.items.splice(10, 5)
      d.title = 'todo (edited)'
    })
    const counter = first.repo.create({ count: 0, bytes: new Uint8Array([1, 2, 3]) })
    for (let i = 0; i < 25; i++) counter.change((d) => (d.count += 1))
    const gone = first.repo.create({ doomed: true })
    await first.repo.flush()
    const goneKeys = (await first.storage.loadRange([gone.documentId])).map((chunk) => chunk.key)
    t.true(goneKeys.length > 0)
    first.repo.delete(gone.url)

    const expected = {
      [todo.url]: structuredClone(todo.doc()),
      [counter.url]: structuredClone(counter.doc()),
    }
    const heads = { [todo.url]: todo.heads(), [counter.url]: counter.heads() }
    t.is(expected[todo.url].items.length, 195)
    t.is(expected[counter.url].count, 25)
    await closeRepo(first)

    // A new adapter and Repo on the same directory: everything is read back from disk.
    const second = await openRepo(open, dir)
    t.is(await second.repo.storageId(), storageId, 'the storage id is kept')
    for (const [url, doc] of Object.entries(expected)) {
      const handle = await second.repo.find(url)
      t.deepEqual(structuredClone(handle.doc()), doc)
      t.deepEqual(handle.heads(), heads[url])
    }
    // The deleted document's chunks are gone from storage. Not all of its keys: automerge-repo
    // 2.5.6's delete() empties the document, which schedules a throttled save that runs after the
    // chunks are removed and writes an empty snapshot back (key [id, 'snapshot', sha256('')]).
    // Nor with repo.find: an unavailable handle left in the Repo's cache makes shutdown() throw.
    const left = await second.storage.loadRange([gone.documentId])
    for (const { key } of left) t.false(goneKeys.some((k) => k.join('/') === key.join('/')), `${key} survived the delete`)
    // The todo document was saved 12 times; automerge-repo compacted its incremental chunks into
    // one snapshot (save, then remove of the old chunks) along the way.
    const todoChunks = (await second.storage.loadRange([todo.documentId])).map((chunk) => chunk.key[1])
    t.log('todo chunks', todoChunks.join(' '))
    t.is(todoChunks.filter((type) => type === 'snapshot').length, 1)
    t.true(todoChunks.length < 12, `${todoChunks.length} chunks`)

    // Change again in the second Repo; a third one sees both sessions' changes.
    const again = await second.repo.find(todo.url)
    again.change((d) => d.items.push({ n: 999, text: 'after reopen' }))
    await closeRepo(second)

    const third = await openRepo(open, dir)
    const last = await third.repo.find(todo.url)
    t.is(last.doc().items.length, 196)
    t.is(last.doc().items.at(-1).text, 'after reopen')
    t.is(last.doc().title, 'todo (edited)')
    t.is((await third.repo.find(counter.url)).doc().count, 25)
    await closeRepo(third)
  })
}

for (const [name, open] of Object.entries(stores)) {
  test(`${name}: a removeRange issued while a save is in flight removes the saved chunk too`, async (t) => {
    const dir = path.join(tmpDir(t), 'store')
    const storage = await open(dir)
    await storage.loadRange(['warm']) // the key index is built
    const saving = storage.save(['d', 'incremental', 'h'], new Uint8Array([1, 2, 3]))
    await storage.removeRange(['d'])
    await saving
    t.deepEqual(await storage.loadRange(['d']), [])
    await storage.close()
    const reopened = await open(dir)
    t.deepEqual(await reopened.loadRange(['d']), [], 'the removed document came back after a reopen')
    await reopened.close()
  })
}

for (const [name, open] of Object.entries(stores)) {
  test(`${name}: loads follow the saves and removals issued before them, and close waits for those`, async (t) => {
    const dir = path.join(tmpDir(t), 'store')
    const storage = await open(dir)
    await storage.save(['d', 'snapshot', 'a'], new Uint8Array([1]))
    // Not awaited: the load that follows must still see each.
    void storage.save(['d', 'snapshot', 'a'], new Uint8Array([2]))
    t.deepEqual([...(await storage.load(['d', 'snapshot', 'a']))], [2])
    void storage.remove(['d', 'snapshot', 'a'])
    t.is(await storage.load(['d', 'snapshot', 'a']), undefined)
    // Issued just before close: it completes, and is there after a reopen.
    const saved = storage.save(['e', 'snapshot', 'b'], new Uint8Array([3]))
    await storage.close()
    await saved
    const reopened = await open(dir)
    t.deepEqual([...(await reopened.load(['e', 'snapshot', 'b']))], [3])
    await reopened.close()
  })

  test(`${name}: a removal whose delete failed is tried again by the next removeRange, and stays removed`, async (t) => {
    const dir = path.join(tmpDir(t), 'store')
    const inner = await open(dir)
    await inner.save(['doc', 'incremental', 'x'], new Uint8Array([9]))
    await inner.close()
    // The same store, with its next delete failing as a directory sync might.
    const adapterOfStore = await open(dir)
    const store = adapterOfStore.store
    const realDelete = store.delete.bind(store)
    let failNext = true
    store.delete = (key) => {
      if (failNext) {
        failNext = false
        return Promise.reject(Object.assign(new Error('injected EIO'), { code: 'ERR_IO' }))
      }
      return realDelete(key)
    }
    await t.throwsAsync(adapterOfStore.removeRange(['doc']), { message: /injected/ })
    await adapterOfStore.removeRange(['doc'])
    t.deepEqual(await adapterOfStore.loadRange(['doc']), [])
    await adapterOfStore.close()
    const reopened = await open(dir)
    t.deepEqual(await reopened.loadRange(['doc']), [], 'the removed chunk came back after a reopen')
    await reopened.close()
  })
}

test('close waits for every delete of a removeRange, even after one of them failed', async (t) => {
  const { SturdyStorageAdapter: Adapter } = await import('../../dist/automerge.mjs')
  const data = new Map()
  const log = []
  let closed = false
  const store = {
    async keys() {
      return [...data.keys()]
    },
    async load(k) {
      return data.get(k)
    },
    async persist(k, v) {
      data.set(k, v)
    },
    async delete(k) {
      if (k.includes('bad')) throw Object.assign(new Error('injected EIO'), { code: 'ERR_IO' })
      await new Promise((r) => setTimeout(r, 50))
      log.push(closed ? `delete ${k} after close` : `delete ${k}`)
      data.delete(k)
    },
    async close() {
      closed = true
      log.push('closed')
    },
  }
  const adapter = new Adapter(store, { ownsStore: true })
  await adapter.save(['doc', 'bad'], new Uint8Array([1]))
  await adapter.save(['doc', 'good'], new Uint8Array([2]))
  const removing = adapter.removeRange(['doc'])
  await adapter.close()
  await t.throwsAsync(removing, { message: /injected/ })
  t.deepEqual(log, ['delete doc/good/', 'closed'])
})
