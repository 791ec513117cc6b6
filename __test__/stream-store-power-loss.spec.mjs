// Simulated power loss under the stream store: seeded schedules of concurrent operations on
// several streams — binary and JSON appends, idempotent producers (with retries), Stream-Seq,
// closes, forks, deletes and compactions — cut by a crash in the middle of a random storage
// operation. After recovery:
//  - every stream holds a prefix of the operations issued on it that includes every acknowledged
//    one: acknowledged data is present, in order, exactly once; unacknowledged appends are wholly
//    present or wholly absent;
//  - closure and deletion (GONE while a fork survives, NOT_FOUND otherwise) match that prefix;
//  - a producer retrying what it sent gets `duplicate` exactly for the requests whose data
//    survived and `appended` for the others, so after the retries each producer's data is in
//    the stream exactly once;
//  - Stream-Seq state matches the prefix; the retries survive a clean restart.
// A failing seed is printed with the command that replays it.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import test from 'ava'

import { StreamStore, StreamError, SturdyError, parseOffset } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { rng, shardOf, nameIn } from './helpers.mjs'

const SCHEDULES = Number(process.env.STURDY_SCHEDULES ?? 1000)
const FIRST_SEED = Number(process.env.STURDY_SEED ?? 1)
/** STURDY_NO_COMPACT=1 leaves compaction out of the schedules (to isolate a failure). */
const COMPACT = process.env.STURDY_NO_COMPACT !== '1'
const SHARDS = 2
const OPTS = { segmentBytes: 4096, maxRecordBytes: 4000, sweepIntervalMs: 3_600_000 }
const BIN = 'application/octet-stream'
const JSON_TYPE = 'application/json'

const pos = (offset) => parseOffset(offset).position

function scratch(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-streams-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function readAll(store, name) {
  const parts = []
  let offset = { kind: 'start' }
  for (let i = 0; i < 10_000; i++) {
    const r = await store.read(name, offset)
    parts.push(r.data)
    if (r.upToDate) return { data: Buffer.concat(parts), closed: r.closed, next: r.nextOffset }
    offset = { kind: 'position', position: pos(r.nextOffset) }
  }
  throw new Error(`read of ${name} never reached the tail`)
}

/** A read's outcome: the bytes, or the StreamError code. */
async function observe(store, name) {
  try {
    return await readAll(store, name)
  } catch (e) {
    if (e instanceof StreamError) return { error: e.code }
    throw e
  }
}

const isCrash = (e) => e instanceof SturdyError && ['ERR_IO', 'ERR_POISONED', 'ERR_CLOSED'].includes(e.code)

// ---- the workload ----

/** A JSON body of 1-4 messages whose text stresses the message splitter; returns body and stored form. */
function jsonBody(r, tag) {
  const pieces = ['a,b', ']', '[', '{', '}', '"', '\\', 'x y', 'é', '']
  const n = r.int(1, 5)
  const elements = Array.from({ length: n }, (_, i) =>
    r.next() < 0.3 ? r.int(-1000, 1000) : { tag, i, s: pieces[r.int(0, pieces.length)] + pieces[r.int(0, pieces.length)], l: [r.int(0, 9), [r.int(0, 9)]] },
  )
  const texts = elements.map((e) => JSON.stringify(e))
  const single = n === 1 && r.next() < 0.5
  const body = single ? Buffer.from(` ${texts[0]} `) : Buffer.from(`[ ${texts.join(' , ')} ]`)
  return { body, stored: Buffer.from(texts.map((x) => `${x},`).join('')) }
}

function binBody(r, maxLen = 600) {
  const b = Buffer.allocUnsafe(r.int(1, maxLen))
  for (let i = 0; i < b.length; i++) b[i] = r.int(0, 256)
  return b
}

/**
 * One schedule: operations in concurrent turns against a model of what was issued and what was
 * acknowledged, a crash somewhere in the middle, recovery, verification and producer retries.
 * Returns a description of a violated property, or undefined.
 */
async function schedule(seed, dir, stats) {
  const r = rng(seed)
  const disk = new SimulatedDisk({ seed })
  let store = await StreamStore.open(dir, { ...OPTS, shards: SHARDS, disk })
  const streams = new Map() // name → model
  const order = []
  let counter = 0
  let crashed = false
  const problems = []
  const live = () => order.map((n) => streams.get(n)).filter((s) => !s.deleteIssued)
  const open = () => live().filter((s) => !s.closeIssued)

  const newModel = (name, json, inherit) => {
    const s = { name, json, inherit, ops: [], closeIssued: false, deleteIssued: false, forks: [], producers: new Map(), seqNo: 0 }
    streams.set(name, s)
    order.push(name)
    return s
  }

  /** Issue one operation on `s` (op pushed to s.ops before the call) and track its outcome. */
  const track = (s, op, promise, check) =>
    promise.then(
      (res) => {
        op.acked = true
        op.result = res
        if (check) check(res)
      },
      (e) => {
        op.failed = e
        if (isCrash(e)) crashed = true
        else problems.push(`${s.name}: ${op.kind} refused unexpectedly: ${e?.code ?? ''} ${e?.message ?? e}`)
      },
    )

  disk.crashAfter(r.int(1, 160))
  for (let turn = 0; turn < 30 && !crashed; turn++) {
    const pending = []
    const busy = new Set()
    const n = r.int(1, 6)
    for (let k = 0; k < n; k++) {
      const p = r.next()
      const candidates = open()
      if (p < 0.12 || candidates.length === 0) {
        // Create a stream, maybe with data, rarely closed.
        const json = r.next() < 0.4
        const name = `s${counter++}`
        const s = newModel(name, json, undefined)
        let data = Buffer.alloc(0)
        let stored = Buffer.alloc(0)
        if (r.next() < 0.5) ({ body: data, stored } = json ? jsonBody(r, name) : { body: binBody(r), stored: undefined })
        if (!json) stored = data
        const closed = r.next() < 0.05
        const op = { kind: 'create', data: stored, close: closed }
        s.ops.push(op)
        if (closed) s.closeIssued = true
        pending.push(track(s, op, store.create(name, { contentType: json ? JSON_TYPE : BIN, data, closed })))
      } else if (p < 0.2) {
        // Fork a stream whose data is durable, at its durable tail, maybe with a sub-offset of 0.
        const sources = live().filter((s) => store.tail(s.name) !== undefined)
        if (sources.length === 0) continue
        const src = sources[r.int(0, sources.length)]
        const base = pos(store.tail(src.name))
        const name = `f${counter++}`
        const s = newModel(name, src.json, { source: src.name, base })
        src.forks.push(name)
        const op = { kind: 'create', data: Buffer.alloc(0) }
        s.ops.push(op)
        pending.push(track(s, op, store.create(name, { forkFrom: src.name, forkOffset: store.tail(src.name) })))
      } else if (p < 0.62) {
        // Append: plain, with Stream-Seq, or as an idempotent producer; maybe closing.
        const s = candidates[r.int(0, candidates.length)]
        const { body, stored } = s.json ? jsonBody(r, s.name) : ((b) => ({ body: b, stored: b }))(binBody(r))
        const options = { contentType: s.json ? JSON_TYPE : BIN }
        const op = { kind: 'append', data: stored, body }
        if (r.next() < 0.3) op.seq = options.seq = String(++s.seqNo).padStart(6, '0')
        if (r.next() < 0.5) {
          const id = `p${r.int(0, 2)}`
          const key = `${s.name}/${id}`
          if (busy.has(key)) continue
          busy.add(key)
          let state = s.producers.get(id)
          if (state === undefined) s.producers.set(id, (state = { epoch: r.int(0, 3), next: 0, pending: false }))
          if (state.pending) continue // its previous request's fate is unknown: the client would retry that first
          if (r.next() < 0.1 && state.next > 0) {
            state.epoch++
            state.next = 0
          }
          op.producer = options.producer = { id, epoch: state.epoch, seq: state.next++ }
          state.pending = true
          op.onSettle = (ok) => {
            state.pending = !ok
          }
        }
        if (r.next() < 0.04) op.close = options.close = true
        if (op.close) s.closeIssued = true
        s.ops.push(op)
        pending.push(
          track(s, op, store.append(s.name, body, options), (res) => {
            if (res.outcome !== 'appended') problems.push(`${s.name}: a new append answered ${res.outcome}`)
          }).finally(() => op.onSettle?.(op.acked === true)),
        )
      } else if (p < 0.68) {
        // Close without a body (maybe as a producer is not needed: plain close).
        const s = candidates[r.int(0, candidates.length)]
        const op = { kind: 'append', data: Buffer.alloc(0), body: Buffer.alloc(0), close: true }
        s.ops.push(op)
        s.closeIssued = true
        pending.push(track(s, op, store.append(s.name, Buffer.alloc(0), { close: true })))
      } else if (p < 0.76) {
        // Retry of a producer's last acknowledged request: must be a duplicate.
        const withProducers = candidates.filter((s) => [...s.producers.values()].some((st) => !st.pending && st.next > 0))
        if (withProducers.length === 0) continue
        const s = withProducers[r.int(0, withProducers.length)]
        const [id] = [...s.producers.entries()].find(([, st]) => !st.pending && st.next > 0)
        if (busy.has(`${s.name}/${id}`)) continue
        busy.add(`${s.name}/${id}`)
        const last = s.ops.findLast((o) => o.producer?.id === id && o.acked)
        if (last === undefined) continue
        const options = { contentType: s.json ? JSON_TYPE : BIN, producer: last.producer, ...(last.close ? { close: true } : {}) }
        const probe = { kind: 'retry' }
        pending.push(
          track(s, probe, store.append(s.name, last.body, options), (res) => {
            if (res.outcome !== 'duplicate') problems.push(`${s.name}: retry of acknowledged ${JSON.stringify(last.producer)} answered ${res.outcome}`)
          }),
        )
      } else if (p < 0.84) {
        const all = live()
        const s = all[r.int(0, all.length)]
        const op = { kind: 'delete', data: Buffer.alloc(0) }
        s.ops.push(op)
        s.deleteIssued = true
        pending.push(track(s, op, store.delete(s.name)))
      } else if (p < 0.9 && COMPACT) {
        stats.compactions++
        pending.push(store.compact().catch((e) => (isCrash(e) ? (crashed = true) : problems.push(`compact failed: ${e.code} ${e.message}`))))
      }
    }
    await Promise.allSettled(pending)
  }
  if (problems.length > 0) return `before the crash: ${problems[0]}`
  if (disk.stats.crashes > 0) stats.midOperation++
  else stats.idle++
  disk.crash()
  await store.close().catch(() => {})

  try {
    store = await StreamStore.open(dir, { ...OPTS, disk })
  } catch (e) {
    return `recovery failed: ${e.code} ${e.message}`
  }
  try {
    const verdict = await verify(store, streams, order, stats)
    if (verdict) return verdict
    await store.close()
    // The state reached after the retries survives a clean restart.
    store = await StreamStore.open(dir, { ...OPTS, disk })
    for (const name of order) {
      const s = streams.get(name)
      if (s.final === undefined) continue
      const got = await observe(store, name)
      if (JSON.stringify(summary(got)) !== JSON.stringify(summary(s.final))) return `${name} after the retries and a restart: ${JSON.stringify(summary(got))}, expected ${JSON.stringify(summary(s.final))}`
    }
  } finally {
    await store.close().catch(() => {})
  }
  return undefined
}

const summary = (o) => (o.error ? { error: o.error } : { len: o.data.length, hash: o.data.toString('base64').slice(-24), bytes: o.data.toString('base64'), closed: o.closed })

/** The full bytes a stream would hold had every issued operation landed, and per-op prefix ends. */
function expectedBytes(streams, s) {
  const own = s.ops.filter((o) => o.kind !== 'delete').map((o) => o.data)
  const inherited = s.inherit ? fullBytes(streams, streams.get(s.inherit.source)).subarray(0, s.inherit.base) : Buffer.alloc(0)
  return { inherited, own }
}

function fullBytes(streams, s) {
  const { inherited, own } = expectedBytes(streams, s)
  return Buffer.concat([inherited, ...own])
}

/** Check the recovered store against the model; then retry producers and check the outcomes. */
async function verify(store, streams, order, stats) {
  const observed = new Map()
  for (const name of order) observed.set(name, await observe(store, name))
  for (const name of order) {
    const s = streams.get(name)
    const got = observed.get(name)
    const lastAcked = s.ops.findLastIndex((o) => o.acked)
    const deleteAt = s.ops.findIndex((o) => o.kind === 'delete')
    if (got.error === 'NOT_FOUND') {
      // Never created (nothing acknowledged), or deleted for good (and no fork of it survives).
      const neverCreated = lastAcked === -1
      const deleted = deleteAt >= 0
      if (!neverCreated && !deleted) return `${name}: NOT_FOUND, but ${lastAcked + 1} operations were acknowledged`
      if (deleted && !neverCreated) stats.deleted++
      for (const f of s.forks) {
        const fo = observed.get(f)
        if (!fo.error) return `${name}: NOT_FOUND, but its fork ${f} survives`
      }
      continue
    }
    if (got.error === 'GONE') {
      if (deleteAt < 0) return `${name}: GONE, but it was never deleted`
      if (!s.forks.some((f) => observed.get(f).error !== 'NOT_FOUND')) return `${name}: GONE (soft-deleted), but none of its forks survives`
      stats.soft++
      continue
    }
    if (got.error) return `${name}: unexpected ${got.error}`
    // Readable: the delete, if any, did not survive; the data is a prefix of the issued ops.
    if (deleteAt >= 0 && s.ops[deleteAt].acked) return `${name}: its delete was acknowledged, but it is readable`
    const { inherited, own } = expectedBytes(streams, s)
    if (!got.data.subarray(0, inherited.length).equals(inherited) || got.data.length < inherited.length) {
      return `${name}: the inherited range (${inherited.length} bytes from ${s.inherit?.source}) differs`
    }
    let k
    let at = inherited.length
    let closed = false
    const ownOps = s.ops.filter((o) => o.kind !== 'delete')
    for (let i = 0; i <= ownOps.length; i++) {
      // Prefix of i operations: bytes up to `at`, closed if one of them closed.
      if (i >= 1 && i > lastAcked && at === got.data.length && closed === got.closed) {
        k = i
        break
      }
      if (i === ownOps.length) break
      const d = ownOps[i].data
      if (!got.data.subarray(at, at + d.length).equals(d) || at + d.length > got.data.length) break
      at += d.length
      if (ownOps[i].close) closed = true
    }
    if (k === undefined) {
      return `${name}: recovered ${got.data.length} bytes (closed ${got.closed}) match no prefix of the ${ownOps.length} issued operations that holds the ${lastAcked + 1} acknowledged ones`
    }
    if (k < ownOps.length) stats.lostUnacked++
    if (k > lastAcked + 1) stats.keptUnacked++
    s.prefix = k
    // Stream-Seq: the last surviving seq is still the bar.
    const lastSeq = ownOps.slice(0, k).findLast((o) => o.seq !== undefined)?.seq
    if (lastSeq !== undefined && !got.closed) {
      try {
        await store.append(name, s.json ? Buffer.from('1') : Buffer.from('x'), { contentType: s.json ? JSON_TYPE : BIN, seq: lastSeq })
        return `${name}: an append with the last surviving Stream-Seq ${lastSeq} was accepted`
      } catch (e) {
        if (!(e instanceof StreamError) || e.code !== 'SEQ_CONFLICT') return `${name}: seq ${lastSeq}: ${e.code} instead of SEQ_CONFLICT`
      }
    }
    // Producer retries: each producer resends, in order, its last acknowledged request and every later one.
    let expected = got.data
    let isClosed = got.closed
    for (const id of new Set(ownOps.filter((o) => o.producer).map((o) => o.producer.id))) {
      const mine = ownOps.map((o, i) => ({ o, i })).filter(({ o }) => o.producer?.id === id)
      const lastAckedMine = mine.findLastIndex(({ o }) => o.acked)
      // The epoch the recovered stream holds for this producer: the newest among its surviving requests.
      let epoch = Math.max(-1, ...mine.filter(({ i }) => i < k).map(({ o }) => o.producer.epoch))
      for (const { o, i } of mine.slice(Math.max(lastAckedMine, 0))) {
        const options = { contentType: s.json ? JSON_TYPE : BIN, producer: o.producer, ...(o.close ? { close: true } : {}) }
        let outcome
        try {
          outcome = (await store.append(name, o.body, options)).outcome
        } catch (e) {
          if (!(e instanceof StreamError)) throw e
          outcome = e.code
        }
        // A surviving request is a duplicate (or fenced, if a newer epoch of the producer survived too;
        // on a stream closed by another request, STREAM_CLOSED is a fair answer as well); a lost one
        // is appended now, unless the stream is closed.
        const want = i < k ? (o.producer.epoch < epoch ? 'PRODUCER_STALE_EPOCH' : 'duplicate') : isClosed ? 'STREAM_CLOSED' : 'appended'
        const alsoFine = i < k && isClosed && !o.close ? 'STREAM_CLOSED' : want
        if (outcome !== want && outcome !== alsoFine) {
          return `${name}: producer ${JSON.stringify(o.producer)} retry answered ${outcome}, expected ${want} (its data ${i < k ? 'survived' : 'was lost'}; acked: ${o.acked === true})`
        }
        if (outcome === 'duplicate' && !o.acked) stats.dupOfUnacked++
        if (outcome === 'appended') {
          epoch = Math.max(epoch, o.producer.epoch)
          stats.reappended++
          expected = Buffer.concat([expected, o.data])
          if (o.close) isClosed = true
        }
      }
    }
    const after = await observe(store, name)
    if (after.error || !after.data.equals(expected) || after.closed !== isClosed) {
      return `${name}: after the retries holds ${after.error ?? after.data.length + ' bytes'}, expected ${expected.length} bytes (each producer request exactly once)`
    }
    s.final = after
  }
  return undefined
}

test(`every acknowledged stream operation survives ${SCHEDULES} simulated power losses, and producer retries are exactly-once`, async (t) => {
  const stats = { midOperation: 0, idle: 0, compactions: 0, lostUnacked: 0, keptUnacked: 0, dupOfUnacked: 0, reappended: 0, soft: 0, deleted: 0 }
  const root = scratch(t)
  const failures = new Map()
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SCHEDULES; seed++) {
    const dir = path.join(root, String(seed))
    let verdict
    try {
      verdict = await schedule(seed, dir, stats)
    } catch (e) {
      verdict = `threw ${e?.code ?? ''} ${e?.stack ?? e}`
    }
    if (verdict) {
      const kind = verdict.replace(/\b[sf]\d+\b/g, 'S').replace(/\d+/g, 'N')
      if (!failures.has(kind)) failures.set(kind, { seed, verdict, count: 0 })
      failures.get(kind).count++
    }
  }
  t.log(`${SCHEDULES} schedules: ${JSON.stringify(stats)}`)
  for (const { seed, verdict, count } of failures.values()) {
    t.fail(`${count} schedule(s) like seed ${seed}: ${verdict}\nreplay: STURDY_SEED=${seed} STURDY_SCHEDULES=1 npx ava __test__/stream-store-power-loss.spec.mjs`)
  }
  // The schedules must reach the interesting cases.
  t.true(stats.midOperation > 0 && stats.lostUnacked > 0 && stats.keptUnacked > 0, 'crashes lose and keep unacknowledged writes')
  t.true(stats.reappended > 0 && stats.dupOfUnacked > 0, 'producer retries of lost and of surviving unacknowledged requests')
})

// ---- targeted crash and failure cases ----


test('a failed barrier: the write is refused, never reported as success, and the whole store refuses further writes', async (t) => {
  for (const seed of [1, 2, 3, 4]) {
    const dir = scratch(t)
    const disk = new SimulatedDisk({ seed })
    const a = nameIn(0, 2, 'a')
    const b = nameIn(1, 2, 'b')
    let store = await StreamStore.open(dir, { ...OPTS, shards: 2, disk })
    await store.create(a, { contentType: BIN, data: Buffer.from('a0|') })
    await store.create(b, { contentType: BIN, data: Buffer.from('b0|') })
    await store.append(a, Buffer.from('a1|'), { contentType: BIN, producer: { id: 'p', epoch: 0, seq: 0 } })
    disk.failSync(1)
    const failed = await store.append(a, Buffer.from('a2|'), { contentType: BIN, producer: { id: 'p', epoch: 0, seq: 1 } }).then(
      (res) => ({ res }),
      (e) => ({ e }),
    )
    t.truthy(failed.e, `seed ${seed}: the append whose barrier failed must not succeed (got ${JSON.stringify(failed.res)})`)
    t.true(failed.e instanceof SturdyError, `seed ${seed}: ${failed.e?.code}`)
    // Poisoned: the same shard, the other shard, creates, deletes, and a producer retry are all refused.
    const attempts = {
      'append same shard': store.append(a, Buffer.from('x'), { contentType: BIN }),
      'append other shard': store.append(b, Buffer.from('x'), { contentType: BIN }),
      'producer retry': store.append(a, Buffer.from('a2|'), { contentType: BIN, producer: { id: 'p', epoch: 0, seq: 1 } }),
      create: store.create('c', { contentType: BIN }),
      delete: store.delete(b),
    }
    for (const [what, p] of Object.entries(attempts)) {
      const r = await p.then(
        (res) => ({ res }),
        (e) => ({ e }),
      )
      t.truthy(r.e, `seed ${seed}: ${what} must be refused by the poisoned store (got ${JSON.stringify(r.res)})`)
    }
    await store.close().catch(() => {})
    disk.crash()
    store = await StreamStore.open(dir, { ...OPTS, disk })
    const ra = (await readAll(store, a)).data.toString()
    t.true(ra === 'a0|a1|' || ra === 'a0|a1|a2|', `seed ${seed}: ${a} holds ${ra}`)
    t.is((await readAll(store, b)).data.toString(), 'b0|', `seed ${seed}: ${b}`)
    // The producer's retry: a duplicate exactly when a2 survived.
    const retry = await store.append(a, Buffer.from('a2|'), { contentType: BIN, producer: { id: 'p', epoch: 0, seq: 1 } })
    t.is(retry.outcome, ra.endsWith('a2|') ? 'duplicate' : 'appended', `seed ${seed}: retry outcome`)
    t.is((await readAll(store, a)).data.toString(), 'a0|a1|a2|', `seed ${seed}: exactly once after the retry`)
    await store.close()
  }
})

test('a failing write leaves no unhandled promise rejection behind (pipelined appends, compaction)', async (t) => {
  const unhandled = []
  const onUnhandled = (e) => unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => process.off('unhandledRejection', onUnhandled))
  for (const mode of ['pipelined appends', 'compaction']) {
    for (let k = 1; k <= 6; k++) {
      const dir = scratch(t)
      const disk = new SimulatedDisk({ seed: k })
      const store = await StreamStore.open(dir, { ...OPTS, shards: 1, disk })
      for (const n of ['a', 'b', 'c']) await store.create(n, { contentType: BIN, data: Buffer.alloc(300, 0x61) })
      disk.crashAfter(k)
      const ops = []
      const settle = (p) => ops.push(p.catch(() => {}))
      // Each append is issued in its own turn, so it is written while the one before is in flight.
      settle(store.append('c', Buffer.from('1'), { contentType: BIN }))
      await new Promise((r) => setImmediate(r))
      if (mode === 'compaction') settle(store.compact())
      else settle(store.append('c', Buffer.from('2'), { contentType: BIN }))
      await new Promise((r) => setImmediate(r))
      settle(store.append('c', Buffer.from('3'), { contentType: BIN }))
      await Promise.all(ops)
      await new Promise((r) => setTimeout(r, 5))
      disk.crash()
      await store.close().catch(() => {})
    }
    t.is(unhandled.length, 0, `${mode}: ${unhandled.length} unhandled rejection(s), first: ${unhandled[0]?.message}`)
    unhandled.length = 0
  }
})

test('a fork whose creation was acknowledged survives a crash together with its source', async (t) => {
  // The source (shard 0) and the fork (shard 1) are created in one turn: the fork must not be
  // acknowledged — or survive — without the record that creates its source.
  const src = nameIn(0, 2, 'src')
  const fork = nameIn(1, 2, 'fork')
  const problems = []
  let ackedForkOnly = 0
  for (let seed = 1; seed <= 30; seed++) {
    for (let k = 1; k <= 8; k++) {
      const dir = scratch(t)
      const disk = new SimulatedDisk({ seed })
      const store = await StreamStore.open(dir, { ...OPTS, shards: 2, disk })
      disk.crashAfter(k, { keep: 'subset' })
      const [s, f] = await Promise.all([
        store.create(src, { contentType: BIN, data: Buffer.from('abc') }).then(() => 'ok', (e) => e.code),
        store.create(fork, { forkFrom: src }).then(() => 'ok', (e) => e.code),
      ])
      if (f === 'ok' && s !== 'ok') ackedForkOnly++
      disk.crash()
      await store.close().catch(() => {})
      let reopened
      try {
        reopened = await StreamStore.open(dir, { ...OPTS, disk })
      } catch (e) {
        problems.push(`seed ${seed}, crash after ${k} ops (source: ${s}, fork: ${f}): recovery failed: ${e.code} ${e.message}`)
        continue
      }
      const names = [...reopened.names()]
      if (f === 'ok' && !names.includes(fork)) problems.push(`seed ${seed}/${k}: the acknowledged fork is missing`)
      if (names.includes(fork) && !names.includes(src)) problems.push(`seed ${seed}/${k}: the fork survived without its source`)
      await reopened.close()
    }
  }
  t.log(`${ackedForkOnly} schedules acknowledged the fork but not its source`)
  t.deepEqual(problems, [])
})

/** A store with live, deleted, forked, closed and producer-written streams; returns the names to check. */
async function compactionPopulation(store) {
  const src = nameIn(0, 2, 'src')
  const fork = nameIn(1, 2, 'fork')
  await store.create(src, { contentType: BIN })
  await store.create('json', { contentType: JSON_TYPE })
  await store.create('closed', { contentType: BIN })
  for (let i = 0; i < 24; i++) {
    await store.create(`junk${i}`, { contentType: BIN, data: Buffer.alloc(400, i) })
    if (i % 2 === 0) await store.append(src, Buffer.alloc(150, 0x41 + i), { contentType: BIN, producer: { id: 'p', epoch: 1, seq: i / 2 } })
    if (i % 3 === 0) await store.append('json', Buffer.from(`[{"i":${i}},"${'x'.repeat(i * 5)}"]`), { contentType: JSON_TYPE, seq: String(100 + i), producer: { id: 'q', epoch: 2, seq: i / 3 } })
  }
  await store.append('closed', Buffer.from('last'), { contentType: BIN, close: true })
  await store.create(fork, { forkFrom: src, forkOffset: '0000000000000000_0000000000000600' })
  await store.append(fork, Buffer.from('own'), { contentType: BIN })
  for (let i = 0; i < 24; i++) await store.delete(`junk${i}`)
  await store.delete(src) // soft: its fork reads from it
  return { names: [src, fork, 'json', 'closed', 'junk0', 'junk23'], src, fork }
}

async function observeAll(store, names) {
  const out = {}
  for (const n of names) {
    const o = await observe(store, n)
    out[n] = o.error ? o : { data: o.data.toString('base64'), closed: o.closed, next: o.next }
  }
  return out
}

for (const which of ['first', 'second']) {
  test(`a crash anywhere in the ${which} compaction loses nothing`, async (t) => {
    const run = async (crashAt) => {
      const dir = scratch(t)
      const disk = new SimulatedDisk({ seed: 11 })
      let store = await StreamStore.open(dir, { ...OPTS, shards: 2, disk })
      const { names, src } = await compactionPopulation(store)
      const before = await observeAll(store, names)
      if (which === 'second') await store.compact()
      const ops = disk.stats.ops
      if (crashAt !== undefined) disk.crashAfter(crashAt, { keep: 'any' })
      const outcome = await store.compact().then(
        () => 'ok',
        (e) => e.code,
      )
      const used = disk.stats.ops - ops
      disk.crash()
      await store.close().catch(() => {})
      try {
        store = await StreamStore.open(dir, { ...OPTS, disk })
      } catch (e) {
        return { used, problem: `crash at op ${crashAt} (compaction: ${outcome}): recovery failed: ${e.code} ${e.message}` }
      }
      try {
        const after = await observeAll(store, names)
        if (JSON.stringify(after) !== JSON.stringify(before)) return { used, problem: `crash at op ${crashAt}: streams differ: ${JSON.stringify(after).slice(0, 300)}` }
        const gone = await store.append(src, Buffer.from('x'), { contentType: BIN }).catch((e) => e)
        if (gone.code !== 'GONE') return { used, problem: `crash at op ${crashAt}: the soft-deleted source answers ${gone.code ?? gone.outcome}` }
        const dup = await store.append('json', Buffer.from('1'), { contentType: JSON_TYPE, producer: { id: 'q', epoch: 2, seq: 7 } }).catch((e) => e)
        if (dup.outcome !== 'duplicate') return { used, problem: `crash at op ${crashAt}: producer state lost (${dup.code ?? dup.outcome})` }
        const seq = await store.append('json', Buffer.from('1'), { contentType: JSON_TYPE, seq: '121' }).catch((e) => e)
        if (seq.code !== 'SEQ_CONFLICT') return { used, problem: `crash at op ${crashAt}: Stream-Seq lost (${seq.code ?? seq.outcome})` }
      } finally {
        await store.close().catch(() => {})
      }
      return { used }
    }
    const dry = await run(undefined)
    t.falsy(dry.problem, dry.problem)
    t.true(dry.used > 3, `the compaction did some storage operations (${dry.used})`)
    const problems = []
    for (let k = 1; k <= dry.used; k++) {
      const { problem } = await run(k)
      if (problem) problems.push(problem)
    }
    t.deepEqual(problems.slice(0, 3), [], `${problems.length} of ${dry.used} crash points failed`)
  })
}
