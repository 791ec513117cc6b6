// Model-based property test: random sequences of appends, conflicting appends, truncations,
// purges (within and past the log), resets, hard-state saves, bad input and reopens — some
// issued without waiting, as a pipelining Raft engine would — agree with a plain in-memory
// model after every step and after every reopen. Small segments make purges drop segments, so
// reopening replays logs whose oldest records are gone.
import test from 'ava'
import fc from 'fast-check'

import { RaftLog } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

const OPTS = { segmentBytes: 4096 }
const RUNS = Number(process.env.STURDY_RAFT_RUNS ?? 150)
/** Entries of ~100 bytes, so a few dozen fill a segment. */
const PAD = 'x'.repeat(80)

/** The obvious implementation: an array of entries and the last purged id. */
class Model {
  entries = []
  purged = undefined
  hard = undefined

  get lastIndex() {
    return this.entries.length ? this.entries.at(-1).index : (this.purged?.index ?? 0)
  }
  get firstIndex() {
    return this.entries.length ? this.entries[0].index : this.lastIndex + 1
  }
  get lastLogId() {
    const last = this.entries.at(-1)
    return last ? { index: last.index, term: last.term } : this.purged
  }
  termAt(index) {
    const e = this.entries.find((x) => x.index === index)
    return e ? e.term : this.purged?.index === index ? this.purged.term : undefined
  }

  /** Apply an operation; false if it is invalid (and then nothing changes). */
  append(list) {
    const start = list[0].index
    for (let k = 1; k < list.length; k++) if (list[k].index !== start + k || list[k].term < list[k - 1].term) return false
    if (this.entries.length) {
      if (start < this.firstIndex || start > this.lastIndex + 1) return false
    } else if (this.purged && start !== this.purged.index + 1) return false
    const prevTerm = this.termAt(start - 1)
    if (prevTerm !== undefined && list[0].term < prevTerm) return false
    this.entries = [...this.entries.filter((e) => e.index < start), ...list]
    return true
  }
  truncateFrom(index) {
    if (this.purged && index <= this.purged.index) return false
    this.entries = this.entries.filter((e) => e.index < index)
    return true
  }
  purge(index, term) {
    if (this.purged && index <= this.purged.index) return true
    const held = this.entries.find((e) => e.index === index)
    if (held) {
      if (term !== undefined && term !== held.term) return false
      term = held.term
    } else if (this.entries.length && index < this.firstIndex) {
      return true
    } else if (term === undefined || (this.lastLogId && term < this.lastLogId.term)) {
      return false
    }
    this.entries = this.entries.filter((e) => e.index > index)
    this.purged = { index, term }
    return true
  }
  reset() {
    this.entries = []
    this.purged = undefined
    return true
  }
}

const op = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('append'), n: fc.integer({ min: 1, max: 6 }), bump: fc.integer({ min: 0, max: 1 }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('conflict'),
      back: fc.integer({ min: 0, max: 12 }),
      n: fc.integer({ min: 1, max: 6 }),
      bump: fc.integer({ min: 0, max: 2 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate'), back: fc.integer({ min: -2, max: 14 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('purge'),
      back: fc.integer({ min: -4, max: 14 }),
      withTerm: fc.boolean(),
      bump: fc.integer({ min: 0, max: 1 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('raw'),
      index: fc.integer({ min: 0, max: 60 }),
      term: fc.integer({ min: 0, max: 6 }),
      n: fc.integer({ min: 1, max: 3 }),
      gap: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset') }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('hard'),
      term: fc.nat(9),
      vote: fc.option(fc.oneof(fc.nat(5), fc.constantFrom('a', 'b'))),
      commit: fc.nat(99),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('reopen') }) },
)
// Each op is issued either on its own (awaited) or in a pipeline with the ops after it.
const schedule = fc.array(fc.tuple(op, fc.boolean()), { minLength: 1, maxLength: 80, size: 'large' })

/** Turn a generated op into a concrete call against the model's current state. */
function concretize(model, o, id) {
  const lastTerm = model.lastLogId?.term ?? 0
  const entries = (start, n, term) => Array.from({ length: n }, (_, k) => ({ index: start + k, term, data: `op${id}:${start + k}:${PAD}` }))
  switch (o.kind) {
    case 'append':
      return { kind: 'append', list: entries(model.entries.length || model.purged ? model.lastIndex + 1 : 1, o.n, lastTerm + o.bump) }
    case 'conflict': {
      const start = Math.max(model.firstIndex, model.lastIndex - o.back)
      return { kind: 'append', list: entries(start, o.n, lastTerm + o.bump) }
    }
    case 'raw': {
      const list = entries(o.index, o.n, o.term)
      if (o.gap && list.length > 1) list[1].index++
      return { kind: 'append', list }
    }
    case 'truncate':
      return { kind: 'truncate', index: Math.max(0, model.lastIndex + 1 - o.back) }
    case 'purge': {
      const index = Math.max(0, model.lastIndex - o.back)
      return { kind: 'purge', index, term: o.withTerm ? (model.termAt(index) ?? lastTerm) + o.bump : undefined }
    }
    default:
      return o
  }
}

/** Issue `c` on the log and the model together; returns the log's promise and the model's verdict. */
function issue(log, model, c) {
  switch (c.kind) {
    case 'append':
      return [log.append(c.list), model.append(c.list)]
    case 'truncate':
      return [log.truncateFrom(c.index), model.truncateFrom(c.index)]
    case 'purge':
      return [log.purge(c.term === undefined ? c.index : { index: c.index, term: c.term }), model.purge(c.index, c.term)]
    case 'reset':
      return [log.reset(), model.reset()]
    case 'hard': {
      model.hard = { term: c.term, vote: c.vote, commit: c.commit }
      return [log.saveHardState(model.hard), true]
    }
  }
  throw new Error(`unknown op ${c.kind}`)
}

async function agree(log, model, where) {
  const fail = (what, got, want) => {
    throw new Error(`${where}: ${what} is ${JSON.stringify(got)}, model says ${JSON.stringify(want)}`)
  }
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
  if (log.firstIndex() !== model.firstIndex) fail('firstIndex', log.firstIndex(), model.firstIndex)
  if (log.lastIndex() !== model.lastIndex) fail('lastIndex', log.lastIndex(), model.lastIndex)
  if (!same(log.lastLogId(), model.lastLogId)) fail('lastLogId', log.lastLogId(), model.lastLogId)
  if (!same(log.lastPurgedLogId(), model.purged)) fail('lastPurgedLogId', log.lastPurgedLogId(), model.purged)
  if (!same(await log.hardState(), model.hard)) fail('hardState', await log.hardState(), model.hard)
  const got = (await log.entries(0, model.lastIndex + 5)).map((e) => [e.index, e.term, e.data.toString()])
  const want = model.entries.map((e) => [e.index, e.term, e.data])
  if (!same(got, want)) fail('entries', got, want)
  for (const i of [model.firstIndex - 1, model.firstIndex, model.lastIndex, model.lastIndex + 1].filter((i) => i >= 0)) {
    const e = await log.entry(i)
    const m = model.entries.find((x) => x.index === i)
    if (!same(e && [e.index, e.term, e.data.toString()], m && [m.index, m.term, m.data])) fail(`entry(${i})`, e, m)
    if (log.term(i) !== model.termAt(i)) fail(`term(${i})`, log.term(i), model.termAt(i))
  }
}

test(`RaftLog agrees with an in-memory model over ${RUNS} random schedules`, async (t) => {
  let seed = 0
  // How often a reopen replayed a log whose first segment had been dropped by a purge or reset.
  let replaysAfterDrop = 0
  await fc.assert(
    fc.asyncProperty(schedule, async (ops) => {
      const disk = new SimulatedDisk({ seed: ++seed })
      const model = new Model()
      let log = await RaftLog.open('raft', { ...OPTS, disk })
      try {
        let pending = []
        const settle = async (where) => {
          const results = await Promise.allSettled(pending.map(([p]) => p))
          results.forEach((r, k) => {
            const [, valid, c] = pending[k]
            if (valid && r.status === 'rejected')
              throw new Error(`${where}: ${JSON.stringify(c)} failed: ${r.reason.code} ${r.reason.message}`)
            if (!valid && (r.status !== 'rejected' || r.reason.code !== 'ERR_INVALID_ARG')) {
              throw new Error(`${where}: ${JSON.stringify(c)} should be ERR_INVALID_ARG, got ${r.status} ${r.reason?.code}`)
            }
          })
          pending = []
          await agree(log, model, where)
        }
        for (const [id, [o, pipelined]] of ops.entries()) {
          const where = `op ${id} ${o.kind}`
          if (o.kind === 'reopen') {
            await settle(where)
            await log.close()
            log = await RaftLog.open('raft', { ...OPTS, disk })
            if (disk.files('raft/log')[0]?.name !== '00000000000000000000.wal') replaysAfterDrop++
            await agree(log, model, `${where} (reopened)`)
            continue
          }
          const c = concretize(model, o, id)
          const [promise, valid] = issue(log, model, c)
          pending.push([promise, valid, c])
          if (!pipelined) await settle(where)
        }
        await settle('end')
        await log.close()
        log = await RaftLog.open('raft', { ...OPTS, disk })
        await agree(log, model, 'final reopen')
      } finally {
        await log.close()
      }
    }),
    { numRuns: RUNS, includeErrorInReport: true },
  )
  t.log(`${replaysAfterDrop} reopens replayed a log whose oldest segments were dropped`)
  t.true(replaysAfterDrop > 0)
})
