// Simulated power loss under a RaftLog: seeded schedules of appends, conflicting appends,
// truncations, purges (which drop segments), resets and hard-state saves — several issued in
// one turn, as a pipelining Raft engine would — cut by a crash in the middle of a random storage
// operation (sometimes while the log is being opened and cleaned up). After every crash the
// recovered log must equal the state reached by applying every issued operation up to one at
// least as late as the last acknowledged one: each operation entirely or not at all, in order —
// never part of a conflicting append. Some appends carry entries near the largest the log takes:
// those are written as one ENTRY record per entry across several segments, so a crash can fall
// between an append's records. A failing seed is printed with the command that replays it.
import test from 'ava'

import { RaftLog } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { rng, SEGMENT_OVERHEAD } from './helpers.mjs'

const SCHEDULES = Number(process.env.STURDY_SCHEDULES ?? 1000)
const FIRST_SEED = Number(process.env.STURDY_SEED ?? 1)
const OPTS = { segmentBytes: 4096 }
const ROUNDS = 3
/** Bytes before an entry's data in its record (src/raft-record.ts). */
const ENTRY_HEADER = 22
/** The largest entry data a log opened with OPTS takes (its default maxEntryBytes). */
const MAX_DATA = OPTS.segmentBytes - SEGMENT_OVERHEAD - ENTRY_HEADER


/** The log as plain data: entries and the last purged id. Operations here are always valid. */
class Model {
  constructor(entries = [], purged = undefined) {
    this.entries = entries
    this.purged = purged
  }
  clone() {
    return new Model([...this.entries], this.purged)
  }
  get lastIndex() {
    return this.entries.length ? this.entries.at(-1).index : (this.purged?.index ?? 0)
  }
  get firstIndex() {
    return this.entries.length ? this.entries[0].index : this.lastIndex + 1
  }
  get lastTerm() {
    return this.entries.at(-1)?.term ?? this.purged?.term ?? 0
  }
  apply(op) {
    switch (op.kind) {
      case 'append':
        this.entries = [...this.entries.filter((e) => e.index < op.list[0].index), ...op.list]
        break
      case 'truncate':
        this.entries = this.entries.filter((e) => e.index < op.index)
        break
      case 'purge':
        this.entries = this.entries.filter((e) => e.index > op.index)
        this.purged = { index: op.index, term: op.term }
        break
      case 'reset':
        this.entries = []
        this.purged = undefined
        break
    }
  }
  view() {
    return { entries: this.entries.map((e) => [e.index, e.term, e.data]), purged: this.purged ?? null }
  }
}

/** A random valid operation against the state `m` will be in once everything issued applies. */
function randomOp(r, m, id) {
  // Small entries fit one BATCH record however many there are. Large ones (half MAX_DATA up to
  // exactly MAX_DATA) do not fit one with another, so an append of two or more is written as an
  // ENTRY record per entry, spanning segments: there a crash can cut an append between its
  // records, and recovery must drop the ones that were written.
  const large = r.next() < 0.3
  const size = () => (r.next() < 0.25 ? MAX_DATA : r.int(MAX_DATA >> 1, MAX_DATA))
  const data = (i) => (large ? `${id}:${i}:`.padEnd(size(), 'x') : `${id}:${i}:${'x'.repeat(r.int(0, 300))}`)
  const list = (start, n, term) => Array.from({ length: n }, (_, k) => ({ index: start + k, term, data: data(start + k) }))
  const p = r.next()
  const held = m.entries.length > 0
  if (p < 0.45 || (!held && p < 0.85)) {
    const n = r.int(1, 8)
    return { kind: 'append', list: list(m.lastIndex + 1, n, m.lastTerm + r.int(0, 2)), records: large ? n : 1 }
  }
  if (held && p < 0.62) {
    // Conflicting: replaces a suffix (maybe all of it) with entries of a newer term.
    const n = r.int(1, 8)
    return { kind: 'append', list: list(r.int(m.firstIndex, m.lastIndex + 1), n, m.lastTerm + 1), records: large ? n : 1, conflict: true }
  }
  if (held && p < 0.7) return { kind: 'truncate', index: r.int(m.firstIndex, m.lastIndex + 1) }
  if (held && p < 0.85) {
    const index = r.int(m.firstIndex, m.lastIndex + 1)
    return { kind: 'purge', index, term: m.entries.find((e) => e.index === index).term }
  }
  if (p < 0.9) return { kind: 'purge', index: m.lastIndex + r.int(1, 5), term: m.lastTerm + r.int(0, 2), pastEnd: true }
  if (p < 0.93) return { kind: 'reset' }
  return { kind: 'hard', state: { term: m.lastTerm + r.int(0, 3), vote: r.int(0, 5), commit: r.int(0, 1000) } }
}

function issue(log, op) {
  switch (op.kind) {
    case 'append':
      return log.append(op.list)
    case 'truncate':
      return log.truncateFrom(op.index)
    case 'purge':
      return log.purge(op.pastEnd ? { index: op.index, term: op.term } : op.index)
    case 'reset':
      return log.reset()
    case 'hard':
      return log.saveHardState(op.state)
  }
}

async function view(log) {
  const entries = await log.entries(0, log.lastIndex() + 1)
  return { entries: entries.map((e) => [e.index, e.term, e.data.toString()]), purged: log.lastPurgedLogId() ?? null }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
const crashed = (e) => e?.code === 'ERR_IO' || e?.code === 'ERR_POISONED'

/**
 * One round: open (perhaps crashing inside open), run pipelined operations until the scheduled
 * crash, lose power, reopen and check. Returns the recovered model and hard state.
 */
async function round(disk, r, base, hard, seen) {
  // Large appends take many storage operations: a quarter of the rounds get a later crash point,
  // and many of those run to their end, so power is also lost with every operation acknowledged.
  disk.crashAfter(r.int(1, r.next() < 0.25 ? 600 : 120))
  const ops = []
  const settled = []
  let log
  try {
    log = await RaftLog.open('raft', { ...OPTS, disk })
  } catch (e) {
    if (!crashed(e)) throw e
    seen.crashInOpen++
  }
  if (log) {
    const issued = base.clone() // the state once everything issued applies
    try {
      for (let step = 0; step < 30; step++) {
        const batch = []
        for (let k = r.int(1, 5); k > 0; k--) {
          const op = randomOp(r, issued, ops.length)
          if (op.kind !== 'hard') issued.apply(op)
          ops.push(op)
          batch.push(issue(log, op))
        }
        const results = await Promise.allSettled(batch)
        settled.push(...results)
        const failure = results.find((x) => x.status === 'rejected')
        if (failure) {
          if (!crashed(failure.reason)) throw failure.reason
          break
        }
      }
    } catch (e) {
      if (!crashed(e)) throw e
    }
  }
  if (disk.stats.crashes > seen.crashesBefore) seen.midOperation++
  disk.crash()
  seen.crashesBefore = disk.stats.crashes

  const reopened = await RaftLog.open('raft', { ...OPTS, disk })
  try {
    const got = await view(reopened)
    // Every acknowledged operation is in; after it, any number of the unacknowledged ones.
    const logOps = ops.map((op, i) => [op, i]).filter(([op]) => op.kind !== 'hard')
    const m = base.clone()
    let match
    for (let k = 0; k <= logOps.length; k++) {
      if (k > 0) m.apply(logOps[k - 1][0])
      const coversAcked = logOps.every(([, i], j) => j < k || settled[i]?.status !== 'fulfilled')
      if (coversAcked && same(got, m.view())) {
        match = m.clone()
        if (k < logOps.length) seen.lostUnacked++
        break
      }
    }
    // Count the interesting cases: a conflicting append cut short by the crash, and one written
    // as several records.
    if (ops.some((op, i) => op.conflict && settled[i]?.status === 'rejected')) seen.conflictCut++
    if (ops.some((op, i) => op.records > 1 && settled[i]?.status === 'rejected')) seen.multiRecordCut++
    if (!match) {
      throw new Error(
        `recovered ${JSON.stringify(got).slice(0, 300)}... matches no state reachable from the ${logOps.length} issued log operations`,
      )
    }
    // Hard state: the newest acknowledged save, or a later issued one.
    const saves = ops.map((op, i) => [op, i]).filter(([op]) => op.kind === 'hard')
    const acceptable = [hard]
    for (const [op, i] of saves) {
      if (settled[i]?.status === 'fulfilled') acceptable.length = 0
      acceptable.push(op.state)
    }
    const gotHard = await reopened.hardState()
    if (!acceptable.some((h) => same(h, gotHard)))
      throw new Error(`hard state ${JSON.stringify(gotHard)} is not one of ${JSON.stringify(acceptable)}`)
    // The recovered log takes a conflicting append and reads it back.
    const probe = match.entries.length ? match.firstIndex : (match.purged?.index ?? 0) + 1
    const probeTerm = Math.max(match.lastTerm, 0) + 1
    await reopened.append([{ index: probe, term: probeTerm, data: 'probe' }])
    if ((await reopened.entry(probe)).data.toString() !== 'probe') throw new Error('probe append not readable')
    await reopened.truncateFrom(probe)
    if (match.entries.length) await reopened.append(match.entries.map((e) => ({ ...e })))
    if (!same(await view(reopened), match.view())) throw new Error('the recovered log did not take new operations')
    return { model: match, hard: gotHard }
  } finally {
    await reopened.close()
  }
}

test(`every acknowledged RaftLog operation survives ${SCHEDULES} simulated power losses, each all or nothing`, async (t) => {
  const seen = { midOperation: 0, crashInOpen: 0, lostUnacked: 0, conflictCut: 0, multiRecordCut: 0, crashesBefore: 0 }
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SCHEDULES; seed++) {
    const disk = new SimulatedDisk({ seed })
    const r = rng(seed)
    seen.crashesBefore = 0
    try {
      let state = { model: new Model(), hard: undefined }
      for (let k = 0; k < ROUNDS; k++) state = await round(disk, r, state.model, state.hard, seen)
    } catch (e) {
      t.fail(`seed ${seed} failed: ${e.stack}\nreplay: STURDY_SEED=${seed} STURDY_SCHEDULES=1 npx ava __test__/raft-power-loss.spec.mjs`)
      return
    }
  }
  t.log(
    `${SCHEDULES} schedules: ${seen.midOperation} crashes inside an operation, ${seen.crashInOpen} while opening, ` +
      `${seen.lostUnacked} recoveries without some unacknowledged operations, ${seen.conflictCut} with a conflicting append cut short, ` +
      `${seen.multiRecordCut} with an append of several records cut short`,
  )
  t.true(seen.midOperation > 0 && seen.lostUnacked > 0 && seen.conflictCut > 0 && seen.multiRecordCut > 0)
})

test('a crash anywhere in a conflicting append written as several records keeps all of it or none of it', async (t) => {
  // Entries of exactly MAX_DATA bytes fill a segment: the log takes them, and they fit no BATCH
  // record with another entry, so the conflicting append below is written as an ENTRY record per
  // entry, over five segments (its small entries share one). It replaces entries 4-10: small
  // ones from a BATCH record and large ones from ENTRY records.
  const large = (index, term) => ({ index, term, data: `${index}:${term}:`.padEnd(MAX_DATA, 'x') })
  const small = (index, term) => ({ index, term, data: `${index}:${term}` })
  const held = [[1, 2, 3, 4, 5, 6].map((i) => small(i, 1)), [7, 8, 9, 10].map((i) => large(i, 1))]
  const conflicting = [large(4, 2), small(5, 2), small(6, 2), large(7, 2), large(8, 2), large(9, 2)]
  const before = new Model()
  for (const list of held) before.apply({ kind: 'append', list })
  const after = before.clone()
  after.apply({ kind: 'append', list: conflicting })
  const brief = (v) => v.entries.map(([i, term, d]) => `${i}/t${term}/${d.length}B`).join(' ')
  // MAX_DATA is the limit itself: a byte more is refused (else the test would miss the largest records).
  {
    const log = await RaftLog.open('raft', { ...OPTS, disk: new SimulatedDisk({ seed: 0 }) })
    await t.throwsAsync(log.append([{ index: 1, term: 1, data: 'x'.repeat(MAX_DATA + 1) }]), { code: 'ERR_RECORD_TOO_LARGE' })
    await log.close()
  }

  // Each crash point under each way a power loss treats unsynced writes; every other case also
  // loses power again early in the reopen that cuts the torn append off.
  const plans = [{ keep: 'prefix', tear: 0 }, { keep: 'prefix', tear: 1 }, { keep: 'subset' }, { keep: 'any' }]
  const seen = { before: 0, after: 0, torn: 0, crashInOpen: 0 }
  let completed = false
  for (let at = 1; !completed; at++) {
    for (const [p, plan] of plans.entries()) {
      const where = `crash at operation ${at} of the append, ${JSON.stringify(plan)}`
      const disk = new SimulatedDisk({ seed: at * plans.length + p })
      const log = await RaftLog.open('raft', { ...OPTS, disk })
      for (const list of held) await log.append(list)
      const crashes = disk.stats.crashes
      disk.crashAfter(at, plan)
      const acked = await log.append(conflicting).then(
        () => true,
        (e) => {
          if (!crashed(e)) throw e
          return false
        },
      )
      if (disk.stats.crashes === crashes) completed = true // the append took fewer operations
      disk.crash(plan)
      // Which of its records the crash left whole on disk: some but not all is the case at stake.
      const files = disk.files('raft/log').map((f) => disk.readFile('raft/log', f.name))
      const written = conflicting.filter((e) => files.some((b) => b?.includes(e.data))).length
      if (!acked && written > 0 && written < conflicting.length) seen.torn++
      if (p % 2 === 1) {
        disk.crashAfter(1 + (at % 6), plan)
        try {
          await RaftLog.open('raft', { ...OPTS, disk })
        } catch (e) {
          if (!crashed(e)) throw e
          seen.crashInOpen++
        }
        disk.crash(plan)
      }

      const reopened = await RaftLog.open('raft', { ...OPTS, disk })
      const got = await view(reopened)
      const state = same(got, after.view()) ? after : same(got, before.view()) ? before : undefined
      if (state === undefined || (acked && state === before)) {
        t.fail(
          `${where}: ${written} of ${conflicting.length} records were on disk, the append was ${acked ? '' : 'not '}acknowledged, ` +
            `and the log recovered as\n${brief(got)}\nnot\n${brief(before.view())}\nor\n${brief(after.view())}`,
        )
        await reopened.close()
        return
      }
      seen[state === after ? 'after' : 'before']++
      // The records cut off stay gone once the log writes past them.
      const next = { index: reopened.lastIndex() + 1, term: 3, data: 'next' }
      await reopened.append([next])
      await reopened.close()
      const again = await RaftLog.open('raft', { ...OPTS, disk })
      const want = state.clone()
      want.apply({ kind: 'append', list: [next] })
      t.deepEqual(await view(again), want.view(), `${where}: after a further append and reopen`)
      await again.close()
    }
  }
  t.log(
    `${seen.before + seen.after} crashes: ${seen.before} kept none of the append, ${seen.after} all of it; ` +
      `${seen.torn} left some of its records on disk, ${seen.crashInOpen} lost power again while reopening`,
  )
  t.true(seen.before > 0 && seen.after > 0 && seen.torn > 0 && seen.crashInOpen > 0)
})
