// The semantic cases of the public Raft storage suites — openraft's storage `Suite` and
// d-engine's `StorageEngineTestSuite` — written here against RaftLog from their descriptions.
// Every case is checked on the live log and again after reopening it.
import test from 'ava'

import { tmpDir } from './helpers.mjs'
import { RaftLog } from '../dist/index.mjs'

/** An entry whose data names it, so a wrong entry never compares equal. */
function ent(index, term, data = `i${index}t${term}`) {
  return { index, term, data }
}

/** Entries `from..to` (inclusive) in `term`. */
function range(from, to, term) {
  const out = []
  for (let i = from; i <= to; i++) out.push(ent(i, term))
  return out
}

/** `[index, term, data]` of each entry read back. */
function triples(entries) {
  return entries.map((e) => [e.index, e.term, e.data.toString()])
}

/** Everything observable about the log's entries and bounds. */
async function snapshot(log) {
  return {
    firstIndex: log.firstIndex(),
    lastIndex: log.lastIndex(),
    lastLogId: log.lastLogId(),
    lastPurgedLogId: log.lastPurgedLogId(),
    entries: triples(await log.entries(0, log.lastIndex() + 1)),
  }
}

/** The snapshot a log holding `entries` (triples from `ent`) after purging `purged` must show. */
function expected(entries, purged) {
  const last = entries.at(-1)
  const lastIndex = last ? last.index : (purged?.index ?? 0)
  return {
    firstIndex: entries.length ? entries[0].index : lastIndex + 1,
    lastIndex,
    lastLogId: last ? { index: last.index, term: last.term } : purged,
    lastPurgedLogId: purged,
    entries: entries.map((e) => [e.index, e.term, e.data]),
  }
}

/**
 * Run `[label, act, check]` steps on a fresh log in `dir`: after each act, `check` runs on the
 * live log, then again on the log reopened from disk (which the next step continues with).
 */
async function steps(t, dir, list, options = { segmentBytes: 256 << 10 }) {
  let log = await RaftLog.open(dir, options)
  try {
    for (const [label, act, check] of list) {
      await act(log)
      await check(log, label)
      await log.close()
      log = await RaftLog.open(dir, options)
      await check(log, `${label} (after reopen)`)
    }
  } finally {
    await log.close()
  }
}

const nothing = async () => {}

/** openraft's fixture: a membership entry at 0, then entries 1..10 in term 1. */
const tenLogs = () => [ent(0, 0), ...range(1, 10, 1)]

// ---------------------------------------------------------------------------------------------
// openraft Suite
// ---------------------------------------------------------------------------------------------

test('openraft: initial state of an empty log, and after reopen', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'empty',
      nothing,
      async (log, at) => {
        t.deepEqual(await snapshot(log), expected([], undefined), at)
        t.is(log.lastLogId(), undefined, at)
        t.is(log.lastPurgedLogId(), undefined, at)
        t.is(await log.hardState(), undefined, at)
        t.is(await log.entry(0), undefined, at)
        t.is(await log.entry(1), undefined, at)
        t.deepEqual(await log.entries(0, 100), [], at)
      },
    ],
  ])
})

test('openraft: initial state with a vote and logs', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'vote and logs saved',
      async (log) => {
        await log.saveHardState({ term: 1, vote: 1, commit: 0 })
        await log.append(tenLogs())
      },
      async (log, at) => {
        t.deepEqual(await log.hardState(), { term: 1, vote: 1, commit: 0 }, at)
        t.deepEqual(log.lastLogId(), { index: 10, term: 1 }, at)
        t.is(log.firstIndex(), 0, at)
        t.is(log.lastPurgedLogId(), undefined, at)
        t.deepEqual(await snapshot(log), expected(tenLogs(), undefined), at)
      },
    ],
  ])
})

test('openraft: save_vote round trip', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'first vote',
      (log) => log.saveHardState({ term: 100, vote: 1, commit: 0 }),
      async (log, at) => t.deepEqual(await log.hardState(), { term: 100, vote: 1, commit: 0 }, at),
    ],
    [
      'vote in a later term',
      (log) => log.saveHardState({ term: 101, vote: null, commit: 7 }),
      async (log, at) => t.deepEqual(await log.hardState(), { term: 101, vote: null, commit: 7 }, at),
    ],
    [
      'string node id',
      (log) => log.saveHardState({ term: 101, vote: 'node-b', commit: 9 }),
      async (log, at) => t.deepEqual(await log.hardState(), { term: 101, vote: 'node-b', commit: 9 }, at),
    ],
  ])
})

test('openraft: get_log_entries over ranges, including empty ones', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'ten logs',
      (log) => log.append(tenLogs()),
      async (log, at) => {
        t.deepEqual(
          triples(await log.entries(5, 7)),
          [
            [5, 1, 'i5t1'],
            [6, 1, 'i6t1'],
          ],
          at,
        )
        t.deepEqual(triples(await log.entries(0, 1)), [[0, 0, 'i0t0']], at)
        t.deepEqual(triples(await log.entries(10, 11)), [[10, 1, 'i10t1']], at)
        t.deepEqual(await log.entries(5, 5), [], `${at}: empty range`)
        t.deepEqual(await log.entries(11, 20), [], `${at}: past the end`)
        t.deepEqual(
          triples(await log.entries(8, 100)).map(([i]) => i),
          [8, 9, 10],
          `${at}: clamped to the end`,
        )
        t.is((await log.entries(0, 11)).length, 11, at)
      },
    ],
  ])
})

test('openraft: limited_get_log_entries stops at the byte limit, returning at least one', async (t) => {
  const big = (i) => ent(i, 1, 'x'.repeat(100) + i)
  await steps(t, tmpDir(t), [
    [
      'ten 101-103 byte entries',
      (log) => log.append(Array.from({ length: 10 }, (_, k) => big(k + 1))),
      async (log, at) => {
        t.deepEqual(
          (await log.entries(1, 11, { maxBytes: 350 })).map((e) => e.index),
          [1, 2, 3],
          at,
        )
        t.deepEqual(
          (await log.entries(1, 11, { maxBytes: 1 })).map((e) => e.index),
          [1],
          `${at}: at least one`,
        )
        t.deepEqual(
          (await log.entries(1, 11, { maxBytes: 0 })).map((e) => e.index),
          [1],
          `${at}: zero limit`,
        )
        t.is((await log.entries(1, 11, { maxBytes: 1 << 20 })).length, 10, `${at}: limit not reached`)
        t.deepEqual(
          (await log.entries(4, 6, { maxBytes: 150 })).map((e) => e.index),
          [4],
          `${at}: point reads`,
        )
        t.deepEqual(await log.entries(11, 11, { maxBytes: 10 }), [], `${at}: empty range`)
      },
    ],
  ])
})

test('openraft: try_get_log_entry after purging up to 0', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'ten logs, purged up to 0',
      async (log) => {
        await log.append(tenLogs())
        await log.purge(0)
      },
      async (log, at) => {
        t.is(await log.entry(0), undefined, at)
        t.deepEqual(triples([await log.entry(1)]), [[1, 1, 'i1t1']], at)
        t.deepEqual(triples([await log.entry(10)]), [[10, 1, 'i10t1']], at)
        t.is(await log.entry(11), undefined, at)
        t.is(await log.entry(100), undefined, at)
      },
    ],
  ])
})

test('openraft: get_log_state as logs are appended and purged', async (t) => {
  const logs = [ent(0, 0), ent(1, 1), ent(2, 3)]
  await steps(t, tmpDir(t), [
    ['initial', nothing, async (log, at) => t.deepEqual(await snapshot(log), expected([], undefined), at)],
    ['appended', (log) => log.append(logs), async (log, at) => t.deepEqual(await snapshot(log), expected(logs, undefined), at)],
    [
      'purged to 1',
      (log) => log.purge(1),
      async (log, at) => t.deepEqual(await snapshot(log), expected(logs.slice(2), { index: 1, term: 1 }), at),
    ],
    [
      'purged to the last',
      (log) => log.purge({ index: 2, term: 3 }),
      async (log, at) => {
        t.deepEqual(await snapshot(log), expected([], { index: 2, term: 3 }), at)
        t.deepEqual(log.lastLogId(), { index: 2, term: 3 }, `${at}: lastLogId falls back to the purged id`)
      },
    ],
  ])
})

test('openraft: get_log_id / term of purged and held entries', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'ten logs purged to 3',
      async (log) => {
        await log.append(tenLogs())
        await log.purge(3)
      },
      async (log, at) => {
        t.is(log.term(3), 1, `${at}: the purged id's term`)
        t.is(log.term(2), undefined, `${at}: before the purged id`)
        t.is(log.term(4), 1, at)
        t.is(log.term(10), 1, at)
        t.is(log.term(11), undefined, at)
      },
    ],
  ])
})

test('openraft: last_id_in_log, then lastLogId after a purge past the end', async (t) => {
  await steps(t, tmpDir(t), [
    ['empty', nothing, async (log, at) => t.is(log.lastLogId(), undefined, at)],
    ['ten logs', (log) => log.append(tenLogs()), async (log, at) => t.deepEqual(log.lastLogId(), { index: 10, term: 1 }, at)],
    ['purged to 5', (log) => log.purge(5), async (log, at) => t.deepEqual(log.lastLogId(), { index: 10, term: 1 }, at)],
    [
      'purged past the end',
      (log) => log.purge({ index: 20, term: 2 }),
      async (log, at) => {
        t.deepEqual(log.lastLogId(), { index: 20, term: 2 }, at)
        t.is(log.firstIndex(), 21, at)
        t.is(log.lastIndex(), 20, at)
      },
    ],
    [
      'appended after the snapshot point',
      (log) => log.append([ent(21, 2)]),
      async (log, at) => t.deepEqual(await snapshot(log), expected([ent(21, 2)], { index: 20, term: 2 }), at),
    ],
  ])
})

for (const [upTo, remaining, purged] of [
  [0, range(1, 10, 1), { index: 0, term: 0 }],
  [5, range(6, 10, 1), { index: 5, term: 1 }],
  [{ index: 20, term: 1 }, [], { index: 20, term: 1 }],
]) {
  test(`openraft: purge_logs_upto_${typeof upTo === 'number' ? upTo : upTo.index}`, async (t) => {
    await steps(t, tmpDir(t), [
      [
        'purged',
        async (log) => {
          await log.append(tenLogs())
          await log.purge(upTo)
        },
        async (log, at) => t.deepEqual(await snapshot(log), expected(remaining, purged), at),
      ],
      [
        'purged again (idempotent)',
        (log) => log.purge(upTo),
        async (log, at) => t.deepEqual(await snapshot(log), expected(remaining, purged), at),
      ],
    ])
  })
}

test('openraft: delete_logs_since_11 (past the end) keeps everything', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'truncated from 11',
      async (log) => {
        await log.append(tenLogs())
        await log.truncateFrom(11)
      },
      async (log, at) => t.deepEqual(await snapshot(log), expected(tenLogs(), undefined), at),
    ],
  ])
})

test('openraft: delete_logs_since_0 removes every entry', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'truncated from 0',
      async (log) => {
        await log.append(tenLogs())
        await log.truncateFrom(0)
      },
      async (log, at) => {
        t.deepEqual(await snapshot(log), expected([], undefined), at)
        t.is(log.lastLogId(), undefined, at)
      },
    ],
    [
      'appended again',
      (log) => log.append(range(1, 3, 2)),
      async (log, at) => t.deepEqual(await snapshot(log), expected(range(1, 3, 2), undefined), at),
    ],
  ])
})

test('openraft: delete_logs_since_5 then append continues from 5', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'truncated from 5',
      async (log) => {
        await log.append(tenLogs())
        await log.truncateFrom(5)
      },
      async (log, at) => t.deepEqual(await snapshot(log), expected(tenLogs().slice(0, 5), undefined), at),
    ],
    [
      'appended at 5 in term 2',
      (log) => log.append(range(5, 6, 2)),
      async (log, at) => t.deepEqual(await snapshot(log), expected([...tenLogs().slice(0, 5), ...range(5, 6, 2)], undefined), at),
    ],
  ])
})

test('openraft: append_to_log after a purge', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'ten logs purged to 0, one more',
      async (log) => {
        await log.append(tenLogs())
        await log.purge(0)
        await log.append([ent(11, 2)])
      },
      async (log, at) => t.deepEqual(await snapshot(log), expected([...range(1, 10, 1), ent(11, 2)], { index: 0, term: 0 }), at),
    ],
    [
      'a conflicting append replaces the suffix',
      (log) => log.append([ent(8, 3), ent(9, 3)]),
      async (log, at) => t.deepEqual(await snapshot(log), expected([...range(1, 7, 1), ent(8, 3), ent(9, 3)], { index: 0, term: 0 }), at),
    ],
  ])
})

// ---------------------------------------------------------------------------------------------
// d-engine StorageEngineTestSuite
// ---------------------------------------------------------------------------------------------

test('d-engine: empty storage', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'empty',
      nothing,
      async (log, at) => {
        t.is(log.lastIndex(), 0, at)
        t.is(await log.entry(1), undefined, at)
        t.deepEqual(await log.entries(1, 11), [], at)
        t.is(await log.hardState(), undefined, at)
      },
    ],
  ])
})

test('d-engine: single entry persistence', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'one entry',
      (log) => log.append([ent(1, 1, 'hello')]),
      async (log, at) => {
        t.is(log.lastIndex(), 1, at)
        const e = await log.entry(1)
        t.is(e.index, 1, at)
        t.is(e.term, 1, at)
        t.true(Buffer.isBuffer(e.data), at)
        t.is(e.data.toString(), 'hello', at)
      },
    ],
  ])
})

test('d-engine: batch persistence of binary entries', async (t) => {
  const batch = Array.from({ length: 100 }, (_, k) => ({ index: k + 1, term: 1 + (k >> 4), data: Buffer.from([k, 255 - k, 0, k & 7]) }))
  await steps(t, tmpDir(t), [
    [
      'a batch of 100',
      (log) => log.append(batch),
      async (log, at) => {
        t.is(log.lastIndex(), 100, at)
        const got = await log.entries(1, 101)
        t.is(got.length, 100, at)
        t.true(
          got.every((e, k) => e.index === k + 1 && e.term === batch[k].term && e.data.equals(batch[k].data)),
          at,
        )
        t.true((await log.entry(50)).data.equals(batch[49].data), at)
      },
    ],
  ])
})

test('d-engine: purge logs', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'purged to 50 of 100',
      async (log) => {
        await log.append(range(1, 100, 1))
        await log.purge({ index: 50, term: 1 })
      },
      async (log, at) => {
        t.is(log.firstIndex(), 51, at)
        t.is(log.lastIndex(), 100, at)
        t.is(await log.entry(50), undefined, at)
        t.is((await log.entry(51)).index, 51, at)
        t.deepEqual(await snapshot(log), expected(range(51, 100, 1), { index: 50, term: 1 }), at)
      },
    ],
  ])
})

test('d-engine: truncate', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'truncated from 51 of 100',
      async (log) => {
        await log.append(range(1, 100, 1))
        await log.truncateFrom(51)
      },
      async (log, at) => {
        t.is(log.lastIndex(), 50, at)
        t.is(await log.entry(51), undefined, at)
        t.deepEqual(await snapshot(log), expected(range(1, 50, 1), undefined), at)
      },
    ],
  ])
})

test('d-engine: reset', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'reset after appends, a purge and a hard state',
      async (log) => {
        await log.append(range(1, 20, 1))
        await log.purge(5)
        await log.saveHardState({ term: 1, vote: 3, commit: 5 })
        await log.reset()
      },
      async (log, at) => {
        t.deepEqual(await snapshot(log), expected([], undefined), at)
        t.is(await log.entry(10), undefined, at)
        t.deepEqual(await log.hardState(), { term: 1, vote: 3, commit: 5 }, `${at}: hard state kept`)
      },
    ],
    [
      'appended after reset',
      (log) => log.append(range(7, 9, 2)),
      async (log, at) => t.deepEqual(await snapshot(log), expected(range(7, 9, 2), undefined), at),
    ],
  ])
})

test('d-engine: hard state persistence', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'saved',
      (log) => log.saveHardState({ term: 5, vote: 2, commit: 10 }),
      async (log, at) => t.deepEqual(await log.hardState(), { term: 5, vote: 2, commit: 10 }, at),
    ],
    [
      'overwritten',
      (log) => log.saveHardState({ term: 6, vote: null, commit: 12 }),
      async (log, at) => t.deepEqual(await log.hardState(), { term: 6, vote: null, commit: 12 }, at),
    ],
    [
      'many saves (old segments dropped, newest kept)',
      async (log) => {
        for (let k = 0; k < 12_000; k += 100)
          await Promise.all(Array.from({ length: 100 }, (_, j) => log.saveHardState({ term: 7, vote: 1, commit: k + j })))
      },
      async (log, at) => t.deepEqual(await log.hardState(), { term: 7, vote: 1, commit: 11_999 }, at),
    ],
  ])
})

test('d-engine: flush makes unawaited appends durable', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'appends without awaiting, then flush',
      async (log) => {
        for (let i = 1; i <= 50; i++) log.append([ent(i, 1)])
        log.saveHardState({ term: 1, vote: 1, commit: 50 })
        t.is(log.lastIndex(), 50, 'visible at once')
        await log.flush()
      },
      async (log, at) => {
        t.deepEqual(await snapshot(log), expected(range(1, 50, 1), undefined), at)
        t.deepEqual(await log.hardState(), { term: 1, vote: 1, commit: 50 }, at)
      },
    ],
  ])
})

test('d-engine: interleaved append, conflicting append, truncate and purge without awaiting apply in call order', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'pipelined',
      async (log) => {
        const ops = [
          log.append(range(1, 10, 1)),
          log.append(range(11, 20, 1)),
          log.append(range(15, 17, 2)), // replaces 15..20
          log.truncateFrom(17),
          log.purge(3),
          log.append(range(17, 18, 3)),
        ]
        // Reads of entries whose append is still in flight wait for it.
        const e16 = log.entry(16)
        await Promise.all(ops)
        t.is((await e16).term, 2)
      },
      async (log, at) =>
        t.deepEqual(
          await snapshot(log),
          expected([...range(4, 14, 1), ...range(15, 16, 2), ...range(17, 18, 3)], { index: 3, term: 1 }),
          at,
        ),
    ],
  ])
})

test('a log that starts at an arbitrary index, and a purge below its first entry', async (t) => {
  await steps(t, tmpDir(t), [
    [
      'starts at 1000',
      (log) => log.append(range(1000, 1004, 4)),
      async (log, at) => t.deepEqual(await snapshot(log), expected(range(1000, 1004, 4), undefined), at),
    ],
    [
      'purge below the first entry does nothing',
      (log) => log.purge(10),
      async (log, at) => t.deepEqual(await snapshot(log), expected(range(1000, 1004, 4), undefined), at),
    ],
  ])
})

test('RaftLog.open creates nested directories and reports ERR_LOCKED for a second opener', async (t) => {
  const dir = `${tmpDir(t)}/a/b/c`
  const log = await RaftLog.open(dir, { segmentBytes: 64 << 10 })
  await t.throwsAsync(RaftLog.open(dir, { segmentBytes: 64 << 10 }), { code: 'ERR_LOCKED' })
  await log.close()
  const again = await RaftLog.open(dir, { segmentBytes: 64 << 10 })
  await again.close()
  t.pass()
})
