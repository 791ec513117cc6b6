// Simulated power loss through the public API: seeded schedules of concurrent appends, batches,
// syncs, truncations and segment rotations, each cut by a crash in the middle of a random
// storage operation. After every crash: each acknowledged record is present, in order, with its
// LSN and bytes; nothing that was never appended appears; recovery never reports ERR_CORRUPT;
// and appends continue and survive the next crash. A failing seed is printed and replays.
import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { rng } from './helpers.mjs'

const SCHEDULES = Number(process.env.STURDY_SCHEDULES ?? 10_000)
const FIRST_SEED = Number(process.env.STURDY_SEED ?? 1)
const OPTIONS = { segmentBytes: 4096, maxRecordBytes: 900 }


function payload(r) {
  const b = Buffer.allocUnsafe(r.int(0, 400))
  for (let i = 0; i < b.length; i++) b[i] = r.int(0, 256)
  return b
}

async function readAll(wal) {
  const out = []
  for await (const { lsn, data } of wal.entries()) out.push([lsn, Buffer.from(data)])
  return out
}

const same = (a, b) => a[0] === b[0] && a[1].equals(b[1])

/** Whether `got` is a state the log may be in after a crash during `inflight`. */
function acceptable(model, inflight, got) {
  const prefixOf = (list, n) => got.length === n && got.every((g, i) => same(g, list[i]))
  switch (inflight?.kind) {
    case undefined:
      return prefixOf(model, model.length)
    case 'append': {
      // The group may survive in part, as a prefix of its records, in order.
      if (got.length < model.length || got.length > model.length + inflight.records.length) return false
      if (!got.slice(0, model.length).every((g, i) => same(g, model[i]))) return false
      const extra = got.slice(model.length)
      return extra.every((g, i) => g[1].equals(inflight.records[i]) && (i === 0 ? model.length === 0 || g[0] > model.at(-1)[0] : g[0] > extra[i - 1][0]))
    }
    case 'truncateFrom': {
      const cut = model.filter(([l]) => l < inflight.lsn).length
      return got.length >= cut && got.length <= model.length && got.every((g, i) => same(g, model[i]))
    }
    case 'truncateBefore': {
      const k = model.length - got.length
      return k >= 0 && got.every((g, i) => same(g, model[k + i])) && model.slice(0, k).every(([l]) => l < inflight.lsn)
    }
  }
  return false
}

/** One round: ops until the scheduled crash (or the end), then a crash and recovery. */
async function round(disk, r, model, seen) {
  const wal = await Wal.open('log', { ...OPTIONS, disk })
  const crashes = disk.stats.crashes
  disk.crashAfter(r.int(1, 80))
  let inflight
  for (let step = 0; step < 40; step++) {
    const p = r.next()
    try {
      if (p < 0.6) {
        // Concurrent appends (and maybe a batch) in one turn: one group.
        const records = Array.from({ length: r.int(1, 8) }, () => payload(r))
        inflight = { kind: 'append', records }
        const pending = records.map((rec) => wal.append(rec))
        const batch = r.next() < 0.3 ? Array.from({ length: r.int(1, 5) }, () => payload(r)) : []
        if (batch.length) {
          records.push(...batch)
          pending.push(wal.appendBatch(batch))
        }
        const results = await Promise.all(pending)
        const lsns = results.flat()
        lsns.forEach((lsn, i) => model.push([lsn, records[i]]))
      } else if (p < 0.7) {
        inflight = undefined
        await wal.sync()
      } else if (p < 0.85 && model.length) {
        const lsn = model[r.int(0, model.length)][0]
        inflight = { kind: 'truncateFrom', lsn }
        await wal.truncateFrom(lsn)
        model.splice(model.findIndex(([l]) => l >= lsn))
      } else if (model.length) {
        const lsn = model[r.int(0, model.length)][0]
        inflight = { kind: 'truncateBefore', lsn }
        const first = await wal.truncateBefore(lsn)
        model.splice(0, model.findIndex(([l]) => l >= first))
      }
      inflight = undefined
    } catch (e) {
      if (e.code !== 'ERR_IO' && e.code !== 'ERR_POISONED') throw e
      break
    }
  }
  if (disk.stats.crashes > crashes) {
    const c = disk.lastCrash
    seen.midOperation++
    if (c.keptOps > 0) seen.partial++
    if (c.torn) seen.torn++
    if (inflight) seen.inflight[inflight.kind] = (seen.inflight[inflight.kind] ?? 0) + 1
  }
  disk.crash()
  let reopened
  try {
    reopened = await Wal.open('log', { ...OPTIONS, disk })
  } catch (e) {
    throw new Error(`recovery failed after a crash: ${e.code} ${e.message}`)
  }
  const got = await readAll(reopened)
  await reopened.close()
  if (!acceptable(model, inflight, got)) {
    throw new Error(`recovered ${got.length} records; acknowledged ${model.length}; in flight: ${inflight?.kind ?? 'nothing'}`)
  }
  return got
}

test(`every acknowledged record survives ${SCHEDULES} simulated power losses`, async (t) => {
  const seen = { midOperation: 0, partial: 0, torn: 0, inflight: {} }
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SCHEDULES; seed++) {
    const disk = new SimulatedDisk({ seed })
    const r = rng(seed)
    try {
      let model = []
      model = await round(disk, r, model, seen) // crash mid-schedule
      await round(disk, r, model, seen) // recovered log keeps working and survives the next crash
    } catch (e) {
      t.fail(`seed ${seed} failed: ${e.message}\nreplay: STURDY_SEED=${seed} STURDY_SCHEDULES=1 npx ava __test__/power-loss.spec.mjs`)
      return
    }
  }
  t.log(`${SCHEDULES} schedules: ${seen.midOperation} crashes inside an operation, ${seen.partial} keeping part of the unsynced writes, ${seen.torn} tearing a write; in flight: ${JSON.stringify(seen.inflight)}`)
  // The schedules must actually reach the interesting cases.
  t.true(seen.torn > 0 && seen.partial > 0 && seen.inflight.append > 0 && seen.inflight.truncateFrom > 0)
})
