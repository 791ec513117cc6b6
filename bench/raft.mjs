// RaftLog against a Raft log built on better-sqlite3 (WAL mode, synchronous = FULL), measured in
// the same run on the same disk: durable appends of 256 B entries in batches of 64, each batch
// acknowledged only once durable.
//
// Two shapes of load, both with the same stores:
// - one batch in flight: append, await, append (a follower handling one AppendEntries at a time);
// - 8, 32 or 128 batches in flight (a leader pipelining its appends). SQLite's API is synchronous,
//   so batches called in one turn are gathered into one transaction with one fsync — its best case.
// The last line compares each store's peak: its best entries/s at any depth.
//
//   node bench/raft.mjs                  # 3 s per measurement, 3 alternating rounds, medians
//   BENCH_SECONDS=5 node bench/raft.mjs
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import Database from 'better-sqlite3'

import { closedLoop } from './closed-loop.mjs'
import { perTurn } from './per-turn.mjs'

import { RaftLog } from '../dist/index.mjs'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const ENTRY_BYTES = 256
const BATCH = 64

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-raft-bench-'))
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }))
let dirs = 0
const freshDir = () => path.join(scratch, String(dirs++))

/** sturdy's RaftLog, with its defaults or with other options. */
const sturdy = (name, options) => async (dir) => {
  const log = await RaftLog.open(dir, options)
  return { name, append: (entries) => log.append(entries), close: () => log.close() }
}
/** Its defaults: on Linux, entries are written past the page cache (`directWrites`). */
const openSturdy = sturdy('sturdy RaftLog', {})
/** Writes through the page cache (a `Wal` by default writes only groups under 1 MiB past it). */
const openSturdyBuffered = sturdy('sturdy RaftLog (directWrites: false)', { directWrites: false })

/**
 * A Raft log on SQLite as one would write it: entries in a table keyed by index; an append
 * deletes any conflicting suffix and inserts its entries in one transaction.
 */
async function openSqlite(dir) {
  fs.mkdirSync(dir, { recursive: true })
  const db = new Database(path.join(dir, 'raft.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec('CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, data BLOB NOT NULL)')
  const truncate = db.prepare('DELETE FROM log WHERE idx >= ?')
  const insert = db.prepare('INSERT INTO log (idx, term, data) VALUES (?, ?, ?)')
  const appendAll = db.transaction((batches) => {
    for (const entries of batches) {
      truncate.run(entries[0].index)
      for (const e of entries) insert.run(e.index, e.term, e.data)
    }
  })
  const add = perTurn(appendAll)
  return {
    name: 'better-sqlite3 (WAL, synchronous=FULL)',
    append: (entries) => add([entries]),
    close: async () => db.close(),
  }
}

/** The store's name and entries/s of durable appends for SECONDS, with `depth` batches in flight. */
async function measure(open, depth) {
  const dir = freshDir()
  const store = await open(dir)
  const data = Buffer.alloc(ENTRY_BYTES, 0x61)
  let next = 1
  const batch = () => {
    const entries = new Array(BATCH)
    for (let k = 0; k < BATCH; k++) entries[k] = { index: next + k, term: 1, data }
    next += BATCH
    return entries
  }
  try {
    return { name: store.name, rate: BATCH * (await closedLoop(depth, SECONDS, () => store.append(batch()))) }
  } finally {
    await store.close()
    fs.rmSync(dir, { recursive: true, force: true }) // the disk may be small: keep one store at a time
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const fmt = (v) => Math.round(v).toLocaleString('en-US')

console.log(`\nRaft log: durable appends of ${ENTRY_BYTES} B entries in batches of ${BATCH}`)
console.log(`${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${SECONDS}s × ${ROUNDS} rounds (medians)\n`)
// The peer last: every ratio is against it.
const stores = [openSturdy, openSturdyBuffered, openSqlite]
const names = []
const peaks = stores.map(() => [0, 0])
for (const depth of [1, 8, 32, 128]) {
  const runs = stores.map(() => [])
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, open] of stores.entries()) {
      const { name, rate } = await measure(open, depth)
      names[i] = name
      runs[i].push(rate)
    }
  }
  const medians = runs.map(median)
  const peer = medians.at(-1)
  console.log(`${depth === 1 ? 'one batch in flight' : `${depth} batches in flight`}`)
  for (const [i, m] of medians.entries()) {
    if (m > peaks[i][0]) peaks[i] = [m, depth]
    const ratio = i < stores.length - 1 ? `   ${(m / peer).toFixed(2)}×` : ''
    console.log(`  ${names[i].padEnd(40)}${fmt(m).padStart(10)} entries/s${ratio}   (runs: ${runs[i].map(fmt).join(', ')})`)
  }
  console.log('')
}
const [peerPeak, peerDepth] = peaks.at(-1)
console.log(`peak against peak (${names.at(-1)}: ${fmt(peerPeak)} entries/s at ${peerDepth} in flight)`)
for (const [i, [p, depth]] of peaks.slice(0, -1).entries()) {
  console.log(`  ${names[i].padEnd(40)}${fmt(p).padStart(10)} entries/s at ${depth} in flight: ${(p / peerPeak).toFixed(2)}×`)
}
