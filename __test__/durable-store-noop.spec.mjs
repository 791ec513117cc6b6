import test from 'ava'

import { NoopDurableStore, SturdyError } from '../dist/index.mjs'

test('NoopDurableStore keeps nothing', async (t) => {
  const store = new NoopDurableStore()
  await store.persist('k', Buffer.from('v'))
  t.is(await store.load('k'), undefined)
  t.deepEqual(await store.keys(), [])
  const all = []
  for await (const e of store.loadAll()) all.push(e)
  t.deepEqual(all, [])
  await store.close()
  await t.throwsAsync(store.persist('k', Buffer.from('v')), { instanceOf: SturdyError, code: 'ERR_CLOSED' })
})

test('NoopDurableStore checks its arguments', async (t) => {
  const store = new NoopDurableStore()
  const bad = { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }
  await t.throwsAsync(store.persist(1, Buffer.from('v')), bad)
  await t.throwsAsync(store.persist('k', 'v'), bad)
  await t.throwsAsync(store.delete(null), bad)
  await t.throwsAsync(store.load({}), bad)
})
