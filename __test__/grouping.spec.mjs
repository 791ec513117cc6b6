// How appends become groups: one group per event-loop turn, except that a turn as large as the
// last group goes to an idle disk in two halves (the first is written while the second is staged).
import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { FRAME_HEADER, assertRecords, tmpDir, watchInFlight } from './helpers.mjs'

const RECORD = 100

/** Append `count` records in one turn and wait for all (the disk is idle again afterwards). */
async function turn(wal, count, tag, written) {
  const records = Array.from({ length: count }, (_, i) => `${tag}${i}`.padEnd(RECORD, '.'))
  const lsns = await Promise.all(records.map((r) => wal.append(r)))
  lsns.forEach((lsn, i) => written.push({ lsn, data: records[i] }))
}

test.serial('a large turn goes to an idle disk in two halves, and is not split while the disk is busy', async (t) => {
  const seen = watchInFlight(t)
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const written = []
  /** The groups (in records) that a turn of `count` appends made. */
  const groupsOf = async (count, tag) => {
    const from = seen.sizes.length
    await turn(wal, count, tag, written)
    return seen.sizes.slice(from).map((bytes) => bytes / (FRAME_HEADER + RECORD))
  }
  // Nothing to go by yet: the whole turn is one group.
  t.deepEqual(await groupsOf(600, 'a'), [600])
  // Half of the last group goes as soon as it is staged; the rest gathers while the disk is
  // busy with it, so it is not split again but goes at the end of the turn.
  t.deepEqual(await groupsOf(600, 'b'), [300, 300])
  // Turns smaller than half the last group are not split.
  t.deepEqual(await groupsOf(100, 'c'), [100])
  // Nor are turns after a group too small to be worth splitting (under 256 records).
  t.deepEqual(await groupsOf(300, 'd'), [300])
  t.deepEqual(await groupsOf(300, 'e'), [150, 150])
  await wal.close()
  // Every record, in append order, with the LSN its append answered.
  const reopened = await Wal.open(dir)
  await assertRecords(t, reopened, written)
  await reopened.close()
})
