// Recovery after a power loss at any point of "append, checkpoint (+ truncateBefore), append,
// checkpoint, append": the Wal on a SimulatedDisk, the checkpoints on a MemoryDirectory, both
// losing power together. For every seed, the crash is placed inside every storage operation of
// either one in turn (and after the end). Each time, recover() must yield a state holding every
// acknowledged record exactly once, in order, and nothing that was never appended; then the
// recovered system must keep working and survive another crash.
import test from 'ava'

import { Checkpoints, MemoryDirectory, Wal, checkpoint, recover } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { rng } from './helpers.mjs'

const SEEDS = Number(process.env.STURDY_RECOVERY_SEEDS ?? 25)
const FIRST_SEED = Number(process.env.STURDY_RECOVERY_SEED ?? 1)
const OPTIONS = { segmentBytes: 4096, maxRecordBytes: 900 }


// The state is the list of record ids applied, in log order; a snapshot is its JSON.
const init = (snap) => (snap ? JSON.parse(snap.toString()) : [])
const apply = (ids, { data }) => {
  ids.push(Number(data.toString().split(':')[0]))
}

class PowerLost extends Error {}

/** The system under test: a log, checkpoints, the state, and what was acknowledged. */
class System {
  constructor(disk, dir, model) {
    this.disk = disk
    this.dir = dir
    this.model = model // { attempted, acked: [], keep } shared across restarts
  }

  async start() {
    this.wal = await Wal.open('log', { ...OPTIONS, disk: this.disk })
    this.cps = new Checkpoints(this.dir, { keep: this.model.keep })
    const { state, lsn } = await recover({ wal: this.wal, checkpoints: this.cps, init, apply })
    this.state = state
    this.lsn = lsn
    return state
  }

  /** A few groups of concurrent appends; the state takes each acknowledged record. */
  async append(r, groups) {
    for (let g = 0; g < groups; g++) {
      const ids = Array.from({ length: r.int(1, 5) }, () => ++this.model.attempted)
      const results = await Promise.allSettled(ids.map((id) => this.wal.append(`${id}:${'x'.repeat(r.int(100, 850))}`)))
      results.forEach((res, i) => {
        if (res.status !== 'fulfilled') return
        this.model.acked.push(ids[i])
        this.state.push(ids[i])
        this.lsn = Math.max(this.lsn, res.value)
      })
      const failed = results.find((res) => res.status === 'rejected')
      if (failed) throw failed.reason
    }
  }

  async checkpoint() {
    const first = this.wal.firstLsn
    const after = await checkpoint({ wal: this.wal, checkpoints: this.cps, lsn: this.lsn, data: JSON.stringify(this.state) })
    if (after > first) this.model.segmentsDropped = true
  }
}

async function workload(sys, r) {
  await sys.start()
  await sys.append(r, 4)
  await sys.checkpoint()
  await sys.append(r, 4)
  await sys.checkpoint()
  await sys.append(r, 2)
}

/** Lose power on both: whichever has not crashed yet in this run crashes now. */
function powerLoss(disk, dir, crashesBefore) {
  if (disk.stats.crashes === crashesBefore.disk) disk.crash()
  if (dir.stats.crashes === crashesBefore.dir) dir.crash()
}

function verify(state, model, where) {
  const seen = new Set()
  for (let i = 0; i < state.length; i++) {
    const id = state[i]
    if (seen.has(id)) throw new Error(`${where}: record ${id} applied twice`)
    seen.add(id)
    if (!(id >= 1 && id <= model.attempted)) throw new Error(`${where}: record ${id} was never appended`)
    if (i > 0 && id < state[i - 1]) throw new Error(`${where}: record ${id} out of order`)
  }
  const missing = model.acked.filter((id) => !seen.has(id))
  if (missing.length) throw new Error(`${where}: acknowledged records lost: ${missing.slice(0, 5).join(', ')}`)
}

/** Odd seeds keep one checkpoint, even seeds two (the log then keeps what the older needs). */
const newModel = (seed) => ({ attempted: 0, acked: [], keep: 1 + (seed % 2) })

const crashesOf = (disk, dir) => ({ disk: disk.stats.crashes, dir: dir.stats.crashes })

/** One schedule: run until the scheduled crash (or the end), recover, go on, crash, recover. */
async function schedule(seed, crashIn, nth, stats) {
  const disk = new SimulatedDisk({ seed: seed * 1000 + nth })
  const dir = new MemoryDirectory({ seed: seed * 1000 + nth })
  const model = newModel(seed)
  const r = rng(seed)
  const before = crashesOf(disk, dir)
  if (crashIn === 'disk') disk.crashAfter(nth)
  if (crashIn === 'dir') dir.crashAfter(nth)
  try {
    await workload(new System(disk, dir, model), r)
  } catch (e) {
    if (e.code !== 'ERR_IO' && e.code !== 'ERR_POISONED') throw e
    stats.interrupted++
  }
  if (model.segmentsDropped) stats.droppedSegments++
  powerLoss(disk, dir, before)

  // Restart: everything acknowledged must be in the recovered state, once.
  const sys = new System(disk, dir, model)
  verify(await sys.start(), model, 'after the first crash')
  if (sys.state.length > model.acked.length) stats.unacknowledgedKept++
  await sys.append(r, 2)
  await sys.checkpoint()
  await sys.append(r, 1)
  const again = crashesOf(disk, dir)
  powerLoss(disk, dir, again)
  verify(await new System(disk, dir, model).start(), model, 'after the second crash')
}

/** How many storage operations the workload takes on each side (the crash points to try). */
async function countOps(seed) {
  const disk = new SimulatedDisk({ seed })
  const dir = new MemoryDirectory({ seed })
  await workload(new System(disk, dir, newModel(seed)), rng(seed))
  return { disk: disk.stats.ops, dir: dir.stats.ops }
}

test(`a crash anywhere in append/checkpoint/truncateBefore/append keeps every acknowledged record exactly once (${SEEDS} seeds)`, async (t) => {
  const stats = { schedules: 0, interrupted: 0, unacknowledgedKept: 0, droppedSegments: 0 }
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    const ops = await countOps(seed)
    const points = [
      ...Array.from({ length: ops.disk }, (_, i) => ['disk', i + 1]),
      ...Array.from({ length: ops.dir }, (_, i) => ['dir', i + 1]),
      ['end', 0],
    ]
    for (const [crashIn, nth] of points) {
      try {
        await schedule(seed, crashIn, nth, stats)
        stats.schedules++
      } catch (e) {
        t.fail(`seed ${seed}, crash in ${crashIn} operation ${nth}: ${e.message}\nreplay: STURDY_RECOVERY_SEED=${seed} STURDY_RECOVERY_SEEDS=1 npx ava __test__/checkpoint-recovery.spec.mjs`)
        return
      }
    }
  }
  t.log(stats)
  t.true(stats.interrupted > 0 && stats.unacknowledgedKept > 0, 'crashes hit mid-operation and in-flight records sometimes survive')
  t.true(stats.droppedSegments > 0, 'checkpoints let the log drop segments')
})
