// Flush policies of Directory writers: when the durability barrier runs, and what survives a
// simulated power loss under each. Barriers are counted on MemoryDirectory.
import test from 'ava'

import { MemoryDirectory, SturdyError } from '../dist/index.mjs'

/** A writer on a fresh MemoryDirectory whose file name is already durable. */
async function writer(flushPolicy, seed = 1) {
  const dir = new MemoryDirectory({ seed })
  const w = await dir.appendFile('log', flushPolicy === undefined ? {} : { flushPolicy })
  await dir.syncParentDir('log')
  return { dir, w, syncs: () => dir.stats.syncs }
}

async function appendAll(w, n) {
  for (let i = 0; i < n; i++) await w.append(`${i};`)
}

test("'per-append' (the default): one barrier per append, and every resolved append survives", async (t) => {
  for (const policy of [undefined, 'per-append']) {
    const { dir, w, syncs } = await writer(policy)
    const before = syncs()
    await appendAll(w, 5)
    t.is(syncs() - before, 5)
    dir.crash({ keep: 'none' })
    t.is((await dir.readFile('log')).toString(), '0;1;2;3;4;')
  }
})

test('{ everyN }: a barrier on every N-th append; close makes the tail durable', async (t) => {
  const { dir, w, syncs } = await writer({ everyN: 3 })
  const before = syncs()
  await appendAll(w, 7)
  t.is(syncs() - before, 2)
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('log')).toString(), '0;1;2;3;4;5;', 'the first 6 were made durable')

  const again = await writer({ everyN: 3 })
  await appendAll(again.w, 7)
  const n = again.syncs()
  await again.w.close()
  t.is(again.syncs() - n, 1)
  again.dir.crash({ keep: 'none' })
  t.is((await again.dir.readFile('log')).toString(), '0;1;2;3;4;5;6;')
})

test("'manual': barriers only on sync(); close leaves the rest to you", async (t) => {
  const { dir, w, syncs } = await writer('manual')
  const before = syncs()
  await appendAll(w, 4)
  t.is(syncs(), before)
  await w.sync()
  t.is(syncs() - before, 1)
  await w.append('tail;')
  await w.close()
  t.is(syncs() - before, 1)
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('log')).toString(), '0;1;2;3;')
})

test('{ intervalMs }: a barrier follows the appends without another call', async (t) => {
  const { dir, w, syncs } = await writer({ intervalMs: 5 })
  const before = syncs()
  await appendAll(w, 3)
  // Wait (without asserting how long) for the timer's barrier.
  for (let i = 0; i < 1000 && syncs() === before; i++) await new Promise((r) => setTimeout(r, 10))
  t.true(syncs() > before)
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('log')).toString(), '0;1;2;')
  await t.throwsAsync(w.append('x'), { instanceOf: SturdyError, code: 'ERR_IO' })
})

test('{ intervalMs }: sync() and close() make the appends durable at once', async (t) => {
  const { dir, w } = await writer({ intervalMs: 60_000 })
  await appendAll(w, 2)
  await w.sync()
  await w.append('2;')
  await w.close()
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('log')).toString(), '0;1;2;')
})

test('a failed barrier poisons the writer: later calls reject with ERR_POISONED', async (t) => {
  const { dir, w } = await writer('manual', 3)
  await w.append('a')
  dir.crashAfter(1) // the next storage operation: the barrier below
  await t.throwsAsync(w.sync(), { instanceOf: SturdyError, code: 'ERR_IO' })
  await t.throwsAsync(w.append('b'), { instanceOf: SturdyError, code: 'ERR_POISONED' })
  await t.throwsAsync(w.sync(), { instanceOf: SturdyError, code: 'ERR_POISONED' })
  await t.throwsAsync(w.close(), { instanceOf: SturdyError, code: 'ERR_POISONED' })
})

test('createFile over an existing file: the truncation is made durable by close', async (t) => {
  const dir = new MemoryDirectory({ seed: 4 })
  await dir.atomicWriteDurable('f', 'a long old content')
  const w = await dir.createFile('f', { flushPolicy: { everyN: 10 } })
  await w.append('new')
  await w.close()
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('f')).toString(), 'new')
})
