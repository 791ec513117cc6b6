// RaftLog.installSnapshot: a follower taking a leader's snapshot (Raft §7). Entries after the
// snapshot's last id stay only if the log holds that id as it is; otherwise the whole log goes.
// Checked live, after a reopen, and under a crash at every storage operation of the install.
import path from 'node:path'

import test from 'ava'

import { RaftLog, SturdyError } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'
import { tmpDir } from './helpers.mjs'

const ent = (index, term) => ({ index, term, data: `i${index}t${term}` })

async function state(log) {
  const entries = log.lastIndex() >= log.firstIndex() ? await log.entries(log.firstIndex(), log.lastIndex() + 1) : []
  return { first: log.firstIndex(), last: log.lastLogId(), purged: log.lastPurgedLogId(), entries: entries.map((e) => [e.index, e.term]) }
}

const CASES = [
  // The paper's Figure 8: S5 holds 1@1, 2@3; the leader's snapshot ends at 3@2, or at 2@2.
  { name: 'past the end, below the last term', log: [ent(1, 1), ent(2, 3)], snap: { index: 3, term: 2 }, keeps: [] },
  { name: 'a conflicting term, entries after it', log: [ent(1, 1), ent(2, 3), ent(3, 3)], snap: { index: 2, term: 2 }, keeps: [] },
  { name: 'the id held as it is', log: [ent(1, 1), ent(2, 2), ent(3, 3)], snap: { index: 2, term: 2 }, keeps: [[3, 3]] },
  { name: 'past the end, at the last term', log: [ent(1, 1), ent(2, 2)], snap: { index: 5, term: 2 }, keeps: [] },
]

for (const c of CASES) {
  test(`installSnapshot: ${c.name}`, async (t) => {
    const dir = path.join(tmpDir(t), 'raft')
    const log = await RaftLog.open(dir)
    await log.append(c.log)
    await log.installSnapshot(c.snap)
    const after = await state(log)
    t.deepEqual(after.entries, c.keeps)
    t.is(after.first, c.snap.index + 1)
    t.deepEqual(after.purged, c.snap)
    t.deepEqual(after.last, c.keeps.length > 0 ? { index: c.keeps.at(-1)[0], term: c.keeps.at(-1)[1] } : c.snap)
    // The log goes on after the snapshot, and all of it survives a reopen.
    const next = (c.keeps.at(-1)?.[0] ?? c.snap.index) + 1
    await log.append([ent(next, 4)])
    const live = await state(log)
    await log.close()
    const again = await RaftLog.open(dir)
    t.deepEqual(await state(again), live)
    // At or below the purged id: nothing changes.
    await again.installSnapshot({ index: c.snap.index, term: 9 })
    t.deepEqual(await state(again), live)
    await again.close()
  })
}

test('installSnapshot refuses bad ids with ERR_INVALID_ARG; purge still refuses a conflicting one', async (t) => {
  const log = await RaftLog.open(path.join(tmpDir(t), 'raft'))
  t.teardown(() => log.close())
  await log.append([ent(1, 1), ent(2, 3)])
  for (const bad of [undefined, null, 3, { index: 3 }, { index: -1, term: 1 }, { index: 1.5, term: 1 }, { index: 3, term: 'x' }]) {
    await t.throwsAsync(log.installSnapshot(bad), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  }
  await t.throwsAsync(log.purge({ index: 3, term: 2 }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.deepEqual((await state(log)).entries, [[1, 1], [2, 3]])
})

test('a crash at any storage operation of an install keeps the log as it was or as installed', async (t) => {
  const before = { entries: [[1, 1], [2, 3], [3, 3]], purged: undefined }
  const installed = { entries: [], purged: { index: 2, term: 2 } }
  const seen = new Set()
  for (let crashAt = 1; crashAt <= 12; crashAt++) {
    const disk = new SimulatedDisk({ seed: crashAt })
    const log = await RaftLog.open('raft', { disk })
    await log.append([ent(1, 1), ent(2, 3), ent(3, 3)])
    await log.flush()
    disk.crashAfter(crashAt)
    const done = await log.installSnapshot({ index: 2, term: 2 }).then(
      () => true,
      () => false,
    )
    disk.crash()
    const again = await RaftLog.open('raft', { disk })
    const { entries, purged } = await state(again)
    await again.close()
    const got = { entries, purged }
    if (done) t.deepEqual(got, installed, `crash after ${crashAt} ops, install acknowledged`)
    else t.true(JSON.stringify(got) === JSON.stringify(before) || JSON.stringify(got) === JSON.stringify(installed), `crash after ${crashAt}: ${JSON.stringify(got)}`)
    seen.add(JSON.stringify(got) === JSON.stringify(installed) ? 'installed' : 'before')
  }
  t.deepEqual([...seen].sort(), ['before', 'installed'], 'both outcomes were reached')
})
