// Bad input to RaftLog gets a typed error and leaves the stored log untouched (same entries,
// same bytes on disk, the same after a reopen); closed and poisoned logs refuse writes.
import { constants } from 'node:buffer'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import test from 'ava'

import { RaftLog, SturdyError } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'
import { fileBytes, tmpDir } from './helpers.mjs'

/** Small segments: tests run side by side on a shared disk. */
const OPTS = { segmentBytes: 64 << 10 }

const ent = (index, term, data = `i${index}t${term}`) => ({ index, term, data })
const range = (from, to, term) => Array.from({ length: to - from + 1 }, (_, k) => ent(from + k, term))

async function observe(log) {
  return {
    first: log.firstIndex(),
    last: log.lastIndex(),
    lastLogId: log.lastLogId(),
    purged: log.lastPurgedLogId(),
    hard: await log.hardState(),
    entries: (await log.entries(0, log.lastIndex() + 1)).map((e) => [e.index, e.term, e.data.toString()]),
  }
}

/** A log holding 1..10 in terms 1 and 2, purged to 3, with a hard state. */
async function fixture(t) {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, OPTS)
  await log.append([...range(1, 5, 1), ...range(6, 10, 2)])
  await log.purge(3)
  await log.saveHardState({ term: 2, vote: 1, commit: 8 })
  return { dir, log }
}

const badAppends = [
  ['not an array', { index: 11, term: 2, data: 'x' }],
  ['a null entry', [null]],
  ['a gap inside the batch', [ent(11, 2), ent(13, 2)]],
  ['indexes going backwards inside the batch', [ent(11, 2), ent(10, 2)]],
  ['a repeated index', [ent(11, 2), ent(11, 2)]],
  ['a gap after lastIndex', [ent(12, 2)]],
  ['below firstIndex (purged)', [ent(3, 1)]],
  ['well below firstIndex', [ent(0, 1), ent(1, 1)]],
  ['a fractional index', [ent(10.5, 2)]],
  ['a negative index', [ent(-1, 2)]],
  ['NaN index', [ent(NaN, 2)]],
  ['a string index', [ent('11', 2)]],
  ['an unsafe index', [ent(2 ** 53, 2)]],
  ['a fractional term', [ent(11, 2.5)]],
  ['a negative term', [ent(11, -2)]],
  ['a missing term', [{ index: 11, data: 'x' }]],
  ['terms going backwards inside the batch', [ent(11, 3), ent(12, 2)]],
  ['a term below the previous entry', [ent(11, 1)]],
  ['a conflicting append with a term below its predecessor', [ent(7, 1)]],
  ['data of the wrong type', [{ index: 11, term: 2, data: 42 }]],
  ['missing data', [{ index: 11, term: 2 }]],
  ['a good entry followed by a bad one', [ent(11, 2), { index: 12, term: 2, data: null }]],
]

/**
 * `call` rejects with ERR_INVALID_ARG and changes nothing: not the log's contents, not a byte on
 * disk, not after a reopen. Returns the reopened log.
 */
async function rejectsAndChangesNothing(t, call) {
  const { dir, log } = await fixture(t)
  const before = await observe(log)
  const bytes = fileBytes(dir)
  await t.throwsAsync(call(log), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.deepEqual(await observe(log), before)
  await log.flush()
  t.deepEqual(fileBytes(dir), bytes, 'no byte written')
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.deepEqual(await observe(again), before)
  return again
}

for (const [what, input] of badAppends) {
  test(`append rejects ${what} with ERR_INVALID_ARG and changes nothing`, async (t) => {
    const again = await rejectsAndChangesNothing(t, (log) => log.append(input))
    // Still usable after the reopen.
    await again.append([ent(11, 2)])
    t.is(again.lastIndex(), 11)
    await again.close()
  })
}

test('an append that cannot be staged in memory is ERR_NO_MEMORY, changes nothing and leaves the log writable', async (t) => {
  const { dir, log } = await fixture(t)
  const before = await observe(log)
  const bytes = fileBytes(dir)
  // Node reports an allocation it cannot make with a RangeError: make the big ones fail.
  const allocUnsafe = Buffer.allocUnsafe
  Buffer.allocUnsafe = (size) => {
    if (size >= 1 << 20) throw new RangeError('Array buffer allocation failed')
    return allocUnsafe.call(Buffer, size)
  }
  try {
    const big = Buffer.alloc(60_000, 0x63)
    // Past the end, and replacing entries (the index must keep them).
    for (const at of [11, 7]) {
      const entries = Array.from({ length: 40 }, (_, k) => ({ index: at + k, term: 2, data: big }))
      await t.throwsAsync(log.append(entries), { instanceOf: SturdyError, code: 'ERR_NO_MEMORY' })
      t.deepEqual(await observe(log), before)
    }
  } finally {
    Buffer.allocUnsafe = allocUnsafe
  }
  await log.flush()
  t.deepEqual(fileBytes(dir), bytes, 'no byte written')
  await log.append([ent(11, 2)])
  t.is(log.lastIndex(), 11)
  await log.close()
})

test('append rejects oversized data with ERR_RECORD_TOO_LARGE and changes nothing', async (t) => {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, { ...OPTS, maxEntryBytes: 100 })
  await log.append(range(1, 3, 1))
  const before = await observe(log)
  await t.throwsAsync(log.append([ent(4, 1, 'ok'), ent(5, 1, 'x'.repeat(101))]), { code: 'ERR_RECORD_TOO_LARGE' })
  t.deepEqual(await observe(log), before)
  await log.append([ent(4, 1, 'x'.repeat(100))])
  t.is(log.lastIndex(), 4)
  await log.close()
})

test('an append larger than one buffer may be rejects with ERR_INVALID_ARG and changes nothing', async (t) => {
  // Entries sharing one buffer: past the 1 GiB one append may stage, without allocating it.
  const data = Buffer.alloc(60_000, 0x62)
  const n = Math.floor(Math.min(constants.MAX_LENGTH, 2 ** 30) / data.length) + 2
  const entries = Array.from({ length: n }, (_, k) => ({ index: 11 + k, term: 2, data }))
  const again = await rejectsAndChangesNothing(t, (log) => log.append(entries))
  await again.append([ent(11, 2)]) // not poisoned: the next append is accepted
  t.is(again.lastIndex(), 11)
  await again.close()
})

const badCalls = [
  ['truncateFrom(-1)', (log) => log.truncateFrom(-1)],
  ['truncateFrom(1.5)', (log) => log.truncateFrom(1.5)],
  ['truncateFrom("5")', (log) => log.truncateFrom('5')],
  ['truncateFrom of a purged index', (log) => log.truncateFrom(3)],
  ['truncateFrom(0) below the purge point', (log) => log.truncateFrom(0)],
  ['purge(-1)', (log) => log.purge(-1)],
  ['purge(NaN)', (log) => log.purge(NaN)],
  ['purge(null)', (log) => log.purge(null)],
  ['purge("5")', (log) => log.purge('5')],
  ['purge({ index: 5 }) without a term', (log) => log.purge({ index: 5 })],
  ['purge past the end without a term', (log) => log.purge(20)],
  ['purge with the wrong term', (log) => log.purge({ index: 6, term: 1 })],
  ['purge past the end with a term below the last', (log) => log.purge({ index: 20, term: 1 })],
  ['entry(-1)', (log) => log.entry(-1)],
  ['entry(1.5)', (log) => log.entry(1.5)],
  ['entries(5, 4)', (log) => log.entries(5, 4)],
  ['entries(-1, 4)', (log) => log.entries(-1, 4)],
  ['entries with a negative maxBytes', (log) => log.entries(1, 4, { maxBytes: -1 })],
  ['saveHardState(null)', (log) => log.saveHardState(null)],
  ['saveHardState without a term', (log) => log.saveHardState({ vote: 1, commit: 1 })],
  ['saveHardState with a negative commit', (log) => log.saveHardState({ term: 3, vote: 1, commit: -1 })],
  ['saveHardState with a fractional vote', (log) => log.saveHardState({ term: 3, vote: 1.5, commit: 1 })],
  ['saveHardState with an object vote', (log) => log.saveHardState({ term: 3, vote: { id: 1 }, commit: 1 })],
  ['saveHardState with a huge vote', (log) => log.saveHardState({ term: 3, vote: 'x'.repeat(5000), commit: 1 })],
]

for (const [what, call] of badCalls) {
  test(`${what} rejects with ERR_INVALID_ARG and changes nothing`, async (t) => {
    const again = await rejectsAndChangesNothing(t, call)
    await again.close()
  })
}

test('bad open arguments are ERR_INVALID_ARG', async (t) => {
  const dir = tmpDir(t)
  await t.throwsAsync(RaftLog.open(''), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(RaftLog.open(dir, null), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(RaftLog.open(dir, { segmentBytes: 10 }), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(RaftLog.open(dir, { maxEntryBytes: -1 }), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(RaftLog.open(dir, { segmentBytes: 8192, maxEntryBytes: 8192 }), { code: 'ERR_INVALID_ARG' })
  const file = path.join(dir, 'file')
  fs.writeFileSync(file, 'x')
  await t.throwsAsync(RaftLog.open(file), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(RaftLog.open(path.join(file, 'sub')), { code: 'ERR_INVALID_ARG' })
  // Failing to create the directory for any other reason is an I/O error, with its errno.
  const loop = path.join(dir, 'loop')
  fs.symlinkSync(loop, loop)
  const e = await t.throwsAsync(RaftLog.open(path.join(loop, 'raft')), { instanceOf: SturdyError, code: 'ERR_IO' })
  t.is(e.errno, os.constants.errno.ELOOP)
  // Nothing half-open is left behind: the directory opens normally.
  const log = await RaftLog.open(dir, { segmentBytes: 8192 })
  await log.close()
})

test('a closed log refuses every call with ERR_CLOSED; close is idempotent', async (t) => {
  const { log } = await fixture(t)
  await log.close()
  await log.close()
  for (const call of [
    (l) => l.append([ent(11, 2)]),
    (l) => l.entry(5),
    (l) => l.entries(4, 6),
    (l) => l.truncateFrom(5),
    (l) => l.purge(5),
    (l) => l.reset(),
    (l) => l.saveHardState({ term: 3, vote: null, commit: 0 }),
    (l) => l.hardState(),
    (l) => l.flush(),
  ]) {
    await t.throwsAsync(call(log), { instanceOf: SturdyError, code: 'ERR_CLOSED' })
  }
  for (const call of [(l) => l.firstIndex(), (l) => l.lastIndex(), (l) => l.lastLogId(), (l) => l.term(5)]) {
    t.throws(() => call(log), { instanceOf: SturdyError, code: 'ERR_CLOSED' })
  }
})

test('a failed barrier poisons the log; reads of durable entries still work; reopen recovers what was acknowledged', async (t) => {
  const disk = new SimulatedDisk({ seed: 3 })
  const log = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
  await log.append(range(1, 5, 1))
  disk.failSync(1, 'EIO')
  const failing = log.append(range(6, 8, 1))
  const after = log.append(range(9, 9, 1))
  const e1 = await t.throwsAsync(failing)
  t.is(e1.code, 'ERR_POISONED')
  await t.throwsAsync(after, { code: 'ERR_POISONED' })
  await t.throwsAsync(log.append([ent(10, 1)]), { code: 'ERR_POISONED' })
  await t.throwsAsync(log.purge(2), { code: 'ERR_POISONED' })
  await t.throwsAsync(log.truncateFrom(2), { code: 'ERR_POISONED' })
  await t.throwsAsync(log.saveHardState({ term: 1, vote: null, commit: 0 }), { code: 'ERR_POISONED' })
  await t.throwsAsync(log.flush(), { code: 'ERR_POISONED' })
  t.is((await log.entry(5)).data.toString(), 'i5t1', 'durable entries stay readable')
  await t.throwsAsync(log.entry(6), { code: 'ERR_POISONED' }, 'an entry that never became durable')
  await log.close()
  disk.crash()
  const again = await RaftLog.open('raft', { disk, segmentBytes: 4096 })
  const got = (await again.entries(0, 100)).map((e) => e.index)
  // Each failed append is all there or not at all, in order; never part of one.
  const states = [
    [1, 2, 3, 4, 5],
    [1, 2, 3, 4, 5, 6, 7, 8],
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  ]
  t.true(
    states.some((s) => JSON.stringify(s) === JSON.stringify(got)),
    `${got}`,
  )
  await again.close()
})

test('an entry whose getters change their answer is written as it was checked', async (t) => {
  const dir = tmpDir(t)
  const log = await RaftLog.open(dir, OPTS)
  const reads = { index: 0, term: 0, data: 0 }
  const shifty = {
    get index() { return reads.index++ === 0 ? 1 : 99 },
    get term() { return reads.term++ === 0 ? 2 : 0 },
    get data() { return reads.data++ === 0 ? Buffer.from('checked') : Buffer.alloc(5000, 0x78) },
  }
  await log.append([shifty, ent(2, 2)])
  const expected = [[1, 2, 'checked'], [2, 2, 'i2t2']]
  t.deepEqual((await observe(log)).entries, expected)
  await log.close()
  const again = await RaftLog.open(dir, OPTS)
  t.deepEqual((await observe(again)).entries, expected)
  await again.close()
})
