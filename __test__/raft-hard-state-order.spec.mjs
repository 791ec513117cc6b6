// saveHardState resolves only once every operation called before it is durable too: after a
// power loss, the saved commit index never points past the last entry.
import test from 'ava'

import { RaftLog } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

test('a saved commit index never gets ahead of the entries it covers', async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new SimulatedDisk({ seed })
    const log = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
    const data = Buffer.alloc(200, 7)
    const entries = Array.from({ length: 30 }, (_, i) => ({ index: i + 1, term: 1, data }))
    const appended = log.append(entries) // not awaited: the save below must still cover it
    await log.saveHardState({ term: 1, vote: 'a', commit: 30 })
    disk.crash()
    await appended.catch(() => {})
    const reopened = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
    const hs = await reopened.hardState()
    t.is(hs?.commit, 30, `seed ${seed}`)
    t.true(reopened.lastIndex() >= hs.commit, `seed ${seed}: commit ${hs.commit} past lastIndex ${reopened.lastIndex()}`)
    await reopened.close()
  }
})

test('a power loss while an append and a commit-raising save are both in flight never leaves the commit past the last entry', async (t) => {
  let crashes = 0
  for (let seed = 1; seed <= 12; seed++) {
    for (let k = 1; k <= 30; k++) {
      const disk = new SimulatedDisk({ seed })
      const log = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
      const data = Buffer.alloc(200, 7)
      const entries = Array.from({ length: 30 }, (_, i) => ({ index: i + 1, term: 1, data }))
      disk.crashAfter(k) // somewhere in the writes below, or after both
      const appended = log.append(entries)
      const saved = log.saveHardState({ term: 1, vote: 'a', commit: 30 })
      await Promise.allSettled([appended, saved])
      if (disk.stats.crashes > 0) crashes++
      else disk.crash()
      await log.close().catch(() => {})
      const reopened = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
      const hs = await reopened.hardState()
      if (hs !== undefined) {
        t.true(reopened.lastIndex() >= hs.commit, `seed ${seed}, crash after ${k} ops: commit ${hs.commit} past lastIndex ${reopened.lastIndex()}`)
      }
      await reopened.close()
    }
  }
  t.log(`${crashes} of 360 runs lost power mid-write`)
  t.true(crashes > 0)
})
