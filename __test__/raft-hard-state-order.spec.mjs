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
