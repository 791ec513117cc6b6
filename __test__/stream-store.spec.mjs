// The stream store (src/stream-store.ts) through its public API: recovery after close + reopen
// and after a simulated crash with nothing in flight, the layout manifest, refused input,
// forks and deletions across restarts, retention and compaction. Every check compares real
// values (bytes read back, codes, segment files on disk); none depends on timing.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import { StreamStore, StreamError, SturdyError, Wal, formatOffset, parseOffset } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

import { tmpDir, shardOf, nameIn } from './helpers.mjs'

const BIN = 'application/octet-stream'
const TEXT = 'text/plain; charset=utf-8'
const JSON_TYPE = 'application/json'
/** Small segments, so compaction has whole segments to drop. */
const SMALL = { segmentBytes: 4096, maxRecordBytes: 4000 }

// ---- helpers ----


const pos = (offset) => parseOffset(offset).position

/** Every stored byte of `name` from `from` (default its start), following nextOffset until up to date. */
async function readAll(store, name, from = { kind: 'start' }, maxBytes = undefined) {
  const parts = []
  let offset = from
  let first
  for (let i = 0; i < 10_000; i++) {
    const r = await store.read(name, offset, maxBytes)
    first ??= r
    parts.push(r.data)
    if (r.upToDate) return { data: Buffer.concat(parts), start: first.startOffset, next: r.nextOffset, closed: r.closed, contentType: r.contentType, json: r.json }
    if (r.nextOffset === r.startOffset && r.data.length === 0) throw new Error(`read of ${name} makes no progress at ${r.startOffset}`)
    offset = { kind: 'position', position: pos(r.nextOffset) }
  }
  throw new Error('read never reached the tail')
}

/** What a client can observe of a stream: its bytes and metadata, or the error code of a read. */
async function observe(store, name) {
  try {
    const info = await store.head(name)
    const r = await readAll(store, name)
    return { info, data: r.data.toString('base64'), start: r.start, next: r.next, closed: r.closed, contentType: r.contentType }
  } catch (e) {
    if (e instanceof StreamError) return { error: e.code }
    throw e
  }
}

async function observeAll(store, names) {
  const out = {}
  for (const n of names) out[n] = await observe(store, n)
  return out
}

/** Assert that `promise` rejects with a StreamError of `code`. */
async function refuses(t, promise, code, message) {
  const e = await t.throwsAsync(promise, { instanceOf: StreamError }, message)
  if (e) t.is(e.code, code, `${message ?? ''}: ${e.message}`)
  return e
}

/** Wait (polling) until `check()` is truthy; fails the test after `limitMs`, never asserts a duration. */
async function until(t, check, what, limitMs = 10_000) {
  const deadline = Date.now() + limitMs
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > deadline) {
      t.fail(`gave up waiting for ${what}`)
      return v
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Segment files of shard `i` of a store directory on the real file system. */
/** The segment files of shard `i`; a file removed between listing and stat (compaction running) is left out. */
function segmentFiles(dir, i) {
  const d = path.join(dir, `shard-${String(i).padStart(3, '0')}`)
  return fs
    .readdirSync(d)
    .filter((n) => n.endsWith('.wal'))
    .sort()
    .map((n) => ({ name: n, size: fs.statSync(path.join(d, n), { throwIfNoEntry: false })?.size }))
    .filter((f) => f.size !== undefined)
}

const body = (n, seed) => Buffer.from(Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) & 0xff))

/**
 * A varied population: binary, text and JSON streams, TTL and expiry, closed at creation and by
 * an append, Stream-Seq, producers, a fork chain and a soft-deleted source, a hard-deleted one.
 */
async function populate(store) {
  await store.create('bin', { contentType: BIN, data: body(10, 1) })
  for (let i = 0; i < 5; i++) await store.append('bin', body(50 + i, i + 2), { contentType: BIN })
  await store.create('text', { contentType: TEXT, ttlSeconds: 3600 })
  await store.append('text', Buffer.from('héllo\n'), { contentType: TEXT, seq: 'b' })
  await store.append('text', Buffer.from('world\n'), { contentType: TEXT, seq: 'c' })
  await store.create('json', { contentType: JSON_TYPE, data: Buffer.from('[{"a":1}, {"b":[1,2,{"c":"]"}]}]'), expiresAt: '2999-01-01T00:00:00Z' })
  await store.append('json', Buffer.from('{"d":"x,y"}'), { contentType: JSON_TYPE })
  await store.append('json', Buffer.from('[1, 2, "three"]'), { contentType: JSON_TYPE, producer: { id: 'p', epoch: 0, seq: 0 } })
  await store.append('json', Buffer.from('[4]'), { contentType: JSON_TYPE, producer: { id: 'p', epoch: 0, seq: 1 } })
  await store.create('closed-at-create', { contentType: BIN, data: body(20, 9), closed: true })
  await store.create('closed-by-append', { contentType: BIN })
  await store.append('closed-by-append', body(30, 10), { contentType: BIN, producer: { id: 'q', epoch: 2, seq: 0 }, close: true })
  await store.create('fork1', { forkFrom: 'bin', forkOffset: formatOffset(60) })
  await store.append('fork1', Buffer.from('fork-own'), { contentType: BIN })
  await store.create('fork2', { forkFrom: 'fork1' })
  await store.append('fork2', Buffer.from('fork2-own'), { contentType: BIN })
  await store.create('src-deleted', { contentType: BIN, data: Buffer.from('kept for forks|') })
  await store.create('fork-of-deleted', { forkFrom: 'src-deleted' })
  await store.append('fork-of-deleted', Buffer.from('mine'), { contentType: BIN })
  await store.delete('src-deleted')
  await store.create('gone', { contentType: BIN, data: Buffer.from('old content') })
  await store.delete('gone')
}

const NAMES = ['bin', 'text', 'json', 'closed-at-create', 'closed-by-append', 'fork1', 'fork2', 'src-deleted', 'fork-of-deleted', 'gone']

/** The writer state of the population, checked through the API (after a restart, say). */
async function checkWriterState(t, store, label) {
  // Stream-Seq: not above the last ('c') is refused, above it is taken.
  await refuses(t, store.append('text', Buffer.from('x'), { contentType: TEXT, seq: 'b' }), 'SEQ_CONFLICT', `${label}: lower seq`)
  await refuses(t, store.append('text', Buffer.from('x'), { contentType: TEXT, seq: 'c' }), 'SEQ_CONFLICT', `${label}: equal seq`)
  // Producer p (epoch 0, last seq 1): a retry of seq 1 is a duplicate; seq 3 is a gap; a lower epoch is stale.
  const dup = await store.append('json', Buffer.from('[4]'), { contentType: JSON_TYPE, producer: { id: 'p', epoch: 0, seq: 1 } })
  t.is(dup.outcome, 'duplicate', `${label}: retry of the last acked producer seq`)
  t.deepEqual(dup.producer, { epoch: 0, seq: 1 }, `${label}: duplicate reply`)
  const e = await refuses(t, store.append('json', Buffer.from('[5]'), { contentType: JSON_TYPE, producer: { id: 'p', epoch: 0, seq: 3 } }), 'PRODUCER_SEQ_GAP', `${label}: gap`)
  t.is(e?.headers['Producer-Expected-Seq'], '2', `${label}: expected seq`)
  // Producer q (epoch 2) closed its stream: the retry is a duplicate, epoch 1 is stale, anything else is refused.
  const closeRetry = await store.append('closed-by-append', body(30, 10), { contentType: BIN, producer: { id: 'q', epoch: 2, seq: 0 }, close: true })
  t.is(closeRetry.outcome, 'duplicate', `${label}: retry of the closing append`)
  t.true(closeRetry.closed, `${label}: still closed`)
  await refuses(t, store.append('closed-by-append', Buffer.from('x'), { contentType: BIN }), 'STREAM_CLOSED', `${label}: append to a closed stream`)
  await refuses(t, store.append('closed-at-create', Buffer.from('x'), { contentType: BIN }), 'STREAM_CLOSED', `${label}: append to a stream created closed`)
  await refuses(t, store.create('src-deleted', { contentType: BIN }), 'CONFLICT', `${label}: a soft-deleted source holds its name`)
}

async function checkStaleEpoch(t, store, label) {
  await store.create('fenced', { contentType: BIN })
  await store.append('fenced', Buffer.from('a'), { contentType: BIN, producer: { id: 'z', epoch: 3, seq: 0 } })
  return async (s, l) => {
    await refuses(t, s.append('fenced', Buffer.from('b'), { contentType: BIN, producer: { id: 'z', epoch: 2, seq: 1 } }), 'PRODUCER_STALE_EPOCH', `${l ?? label}: stale epoch`)
    await refuses(t, s.append('fenced', Buffer.from('b'), { contentType: BIN, producer: { id: 'z', epoch: 4, seq: 1 } }), 'INVALID_ARG', `${l ?? label}: a new epoch starts at 0`)
  }
}

// ---- recovery ----

for (const mode of ['close + reopen', 'simulated crash with nothing in flight']) {
  test(`recovery (${mode}): data, types, TTL/expiry, closure, Stream-Seq, producers, forks and deletions come back`, async (t) => {
    const dir = tmpDir(t)
    const disk = mode.startsWith('simulated') ? new SimulatedDisk({ seed: 7 }) : undefined
    const options = { shards: 3, ...(disk ? { disk } : {}) }
    let store = await StreamStore.open(dir, options)
    await populate(store)
    const checkFence = await checkStaleEpoch(t, store, 'before')
    const before = await observeAll(store, [...NAMES, 'fenced'])

    // The population is what it should be, so the comparison after the restart means something.
    t.is(Buffer.from(before.bin.data, 'base64').length, 10 + 50 + 51 + 52 + 53 + 54)
    t.is(Buffer.from(before.json.data, 'base64').toString(), '{"a":1},{"b":[1,2,{"c":"]"}]},{"d":"x,y"},1,2,"three",4,')
    t.is(Buffer.from(before.fork1.data, 'base64').toString('latin1'), Buffer.concat([Buffer.from(before.bin.data, 'base64').subarray(0, 60), Buffer.from('fork-own')]).toString('latin1'))
    t.is(Buffer.from(before.fork2.data, 'base64').toString('latin1'), Buffer.from(before.fork1.data, 'base64').toString('latin1') + 'fork2-own')
    t.is(Buffer.from(before['fork-of-deleted'].data, 'base64').toString(), 'kept for forks|mine')
    t.deepEqual(before['src-deleted'], { error: 'GONE' })
    t.deepEqual(before.gone, { error: 'NOT_FOUND' })
    t.is(before.text.info.ttlSeconds, 3600)
    t.is(before.json.info.expiresAt, '2999-01-01T00:00:00Z')
    t.true(before['closed-at-create'].closed && before['closed-by-append'].closed)

    if (disk) {
      disk.crash()
      await store.close().catch(() => {})
    } else await store.close()
    store = await StreamStore.open(dir, disk ? { disk } : {})
    t.is(store.shards, 3)
    const after = await observeAll(store, [...NAMES, 'fenced'])
    t.deepEqual(after, before)
    await checkWriterState(t, store, 'after restart')
    await checkFence(store, 'after restart')

    // Deleting the last fork of the soft-deleted source frees its name.
    await store.delete('fork-of-deleted')
    await refuses(t, store.read('src-deleted', { kind: 'start' }), 'NOT_FOUND', 'source gone with its last fork')
    await store.create('src-deleted', { contentType: TEXT, data: Buffer.from('fresh') })
    // The hard-deleted name takes fresh content.
    await store.create('gone', { contentType: TEXT, data: Buffer.from('new content') })
    await store.close()

    store = await StreamStore.open(dir, disk ? { disk } : {})
    t.is((await readAll(store, 'src-deleted')).data.toString(), 'fresh')
    t.is((await readAll(store, 'gone')).data.toString(), 'new content')
    t.is((await store.head('gone')).contentType, TEXT)
    await refuses(t, store.read('fork-of-deleted', { kind: 'start' }), 'NOT_FOUND', 'deleted fork stays deleted')
    t.deepEqual(await observe(store, 'fork2'), before.fork2)
    await store.close()
  })
}

test('recovery: a chain of forks with deleted ancestors reads through them, and deleting the leaf frees the whole chain', async (t) => {
  const dir = tmpDir(t)
  let store = await StreamStore.open(dir, { shards: 4 })
  await store.create('a', { contentType: TEXT, data: Buffer.from('A0') })
  await store.append('a', Buffer.from('A1'), { contentType: TEXT })
  await store.create('b', { forkFrom: 'a', forkOffset: formatOffset(3), forkSubOffset: 1 }) // inside A1's chunk: at 4
  await store.append('b', Buffer.from('B0'), { contentType: TEXT })
  await store.create('c', { forkFrom: 'b' })
  await store.append('c', Buffer.from('C0'), { contentType: TEXT })
  await store.append('a', Buffer.from('A2'), { contentType: TEXT })
  t.is((await readAll(store, 'c')).data.toString(), 'A0A1B0C0')
  await store.delete('a')
  await store.delete('b')
  await store.close()

  store = await StreamStore.open(dir)
  await refuses(t, store.head('a'), 'GONE', 'a')
  await refuses(t, store.head('b'), 'GONE', 'b')
  t.is((await readAll(store, 'c')).data.toString(), 'A0A1B0C0')
  // Reads starting inside an ancestor's range.
  t.is((await readAll(store, 'c', { kind: 'position', position: 2 })).data.toString(), 'A1B0C0')
  t.is((await readAll(store, 'c', { kind: 'position', position: 5 })).data.toString(), '0C0')
  // One byte at a time across both fork boundaries.
  t.is((await readAll(store, 'c', { kind: 'start' }, 1)).data.toString(), 'A0A1B0C0')
  await store.delete('c')
  for (const n of ['a', 'b', 'c']) await refuses(t, store.head(n), 'NOT_FOUND', `${n} after the leaf is deleted`)
  await store.close()

  store = await StreamStore.open(dir)
  for (const n of ['a', 'b', 'c']) await refuses(t, store.head(n), 'NOT_FOUND', `${n} after reopen`)
  for (const n of ['a', 'b', 'c']) await store.create(n, { contentType: BIN, data: Buffer.from(`new ${n}`) })
  await store.close()
  store = await StreamStore.open(dir)
  for (const n of ['a', 'b', 'c']) t.is((await readAll(store, n)).data.toString(), `new ${n}`)
  await store.close()
})

test('recovery: a stream re-created after a hard delete keeps only its new content, also across two restarts', async (t) => {
  const dir = tmpDir(t)
  let store = await StreamStore.open(dir, { shards: 2 })
  await store.create('s', { contentType: BIN, data: Buffer.from('one'), ttlSeconds: 100 })
  await store.append('s', Buffer.from('-two'), { contentType: BIN, producer: { id: 'p', epoch: 5, seq: 0 }, seq: 'z' })
  await store.delete('s')
  await store.create('s', { contentType: TEXT })
  await store.append('s', Buffer.from('three'), { contentType: TEXT, seq: 'a' })
  await store.close()
  for (let round = 0; round < 2; round++) {
    store = await StreamStore.open(dir)
    const info = await store.head('s')
    t.is(info.contentType, TEXT)
    t.is(info.ttlSeconds, undefined)
    t.is((await readAll(store, 's')).data.toString(), round === 0 ? 'three' : 'three!')
    // The old stream's writer state is gone with it: producer p starts fresh, seq 'b' > 'a' is fine.
    if (round === 0) {
      const r = await store.append('s', Buffer.from('!'), { contentType: TEXT, producer: { id: 'p', epoch: 0, seq: 0 }, seq: 'b' })
      t.is(r.outcome, 'appended')
    }
    await store.close()
  }
})

// ---- layout manifest ----

test('layout: another shard count is LAYOUT_MISMATCH; opening without one adopts the recorded count', async (t) => {
  const dir = tmpDir(t)
  let store = await StreamStore.open(dir, { shards: 3 })
  const names = ['a', 'b', 'c', 'd', 'e', 'f']
  for (const n of names) await store.create(n, { contentType: TEXT, data: Buffer.from(n) })
  await store.close()
  const e = await refuses(t, StreamStore.open(dir, { shards: 4 }), 'LAYOUT_MISMATCH', 'shards 4 over 3')
  t.regex(e?.message ?? '', /3 shards/)
  await refuses(t, StreamStore.open(dir, { shards: 1 }), 'LAYOUT_MISMATCH', 'shards 1 over 3')
  store = await StreamStore.open(dir)
  t.is(store.shards, 3)
  for (const n of names) t.is((await readAll(store, n)).data.toString(), n)
  await store.close()
  store = await StreamStore.open(dir, { shards: 3 })
  t.is(store.shards, 3)
  await store.close()
})

test('layout: a tampered layout.json is LAYOUT_MISMATCH with a message naming the problem', async (t) => {
  const dir = tmpDir(t)
  const store = await StreamStore.open(dir, { shards: 2 })
  await store.create('x', { contentType: TEXT, data: Buffer.from('x') })
  await store.close()
  const file = path.join(dir, 'layout.json')
  const original = fs.readFileSync(file, 'utf8')
  const manifest = JSON.parse(original)
  t.deepEqual(manifest, { format: 1, shards: 2, hash: 'fnv1a32-utf8-mod' })
  const cases = [
    ['other format', JSON.stringify({ ...manifest, format: 2 }), /format 2/],
    ['other hash policy', JSON.stringify({ ...manifest, hash: 'murmur3' }), /hash policy "murmur3"/],
    ['invalid JSON', '{"format": 1, "shards": 2', /not valid JSON/],
    ['zero shards', JSON.stringify({ ...manifest, shards: 0 }), /invalid shard count 0/],
    ['fractional shards', JSON.stringify({ ...manifest, shards: 1.5 }), /invalid shard count 1.5/],
    ['not an object', 'null', /./],
  ]
  for (const [what, text, pattern] of cases) {
    fs.writeFileSync(file, text)
    let error
    try {
      const s = await StreamStore.open(dir)
      await s.close()
    } catch (e) {
      error = e
    }
    t.true(error instanceof StreamError, `${what}: a StreamError (got ${error?.constructor?.name}: ${error?.message})`)
    t.is(error?.code, 'LAYOUT_MISMATCH', `${what}: code`)
    t.regex(error?.message ?? '', pattern, `${what}: message`)
  }
  fs.writeFileSync(file, original)
  const again = await StreamStore.open(dir)
  t.is((await readAll(again, 'x')).data.toString(), 'x')
  await again.close()
})

test('layout: shard directories without a manifest are LAYOUT_MISMATCH, and nothing is written', async (t) => {
  const dir = tmpDir(t)
  const store = await StreamStore.open(dir, { shards: 2 })
  await store.create('x', { contentType: TEXT, data: Buffer.from('x') })
  await store.close()
  fs.rmSync(path.join(dir, 'layout.json'))
  const e = await refuses(t, StreamStore.open(dir, { shards: 2 }), 'LAYOUT_MISMATCH', 'no manifest')
  t.regex(e?.message ?? '', /no layout\.json/)
  await refuses(t, StreamStore.open(dir), 'LAYOUT_MISMATCH', 'no manifest, no shard count')
  t.false(fs.existsSync(path.join(dir, 'layout.json')), 'no manifest was made up')
})

test('layout: an invalid shard count is refused and leaves no manifest behind', async (t) => {
  for (const shards of [0, -1, 2.5, Number.NaN]) {
    const dir = tmpDir(t)
    let store
    let error
    try {
      store = await StreamStore.open(dir, { shards })
    } catch (e) {
      error = e
    }
    if (store) {
      // It opened: the store must at least work, and its directory must open again.
      let works = true
      try {
        await store.create('x', { contentType: TEXT, data: Buffer.from('x') })
      } catch {
        works = false
      }
      await store.close().catch(() => {})
      t.true(works, `shards ${shards}: opened, so streams must work`)
      const reopened = await StreamStore.open(dir).then(
        (s) => s.close().then(() => true),
        () => false,
      )
      t.true(reopened, `shards ${shards}: opened, so the directory must open again`)
    } else {
      t.true(error instanceof StreamError || error instanceof SturdyError, `shards ${shards}: refused with a library error (got ${error})`)
      // A refused count must not brick the directory.
      const s = await StreamStore.open(dir, { shards: 2 })
      t.is(s.shards, 2)
      await s.close()
    }
  }
})

test('layout: a second open of an open directory is ERR_LOCKED, and the first store keeps working', async (t) => {
  const dir = tmpDir(t)
  const store = await StreamStore.open(dir, { shards: 2 })
  await store.create('x', { contentType: TEXT, data: Buffer.from('x') })
  await t.throwsAsync(StreamStore.open(dir), { instanceOf: SturdyError, code: 'ERR_LOCKED' })
  await t.throwsAsync(StreamStore.open(dir, { shards: 2 }), { instanceOf: SturdyError, code: 'ERR_LOCKED' })
  await store.append('x', Buffer.from('y'), { contentType: TEXT })
  t.is((await readAll(store, 'x')).data.toString(), 'xy')
  await store.close()
  const again = await StreamStore.open(dir)
  t.is((await readAll(again, 'x')).data.toString(), 'xy')
  await again.close()
})

// ---- bad input ----

/** A store with a text and a JSON stream; returns it and a function that asserts both are unchanged. */
async function intactStore(t, options = {}) {
  const dir = tmpDir(t)
  const store = await StreamStore.open(dir, { shards: 2, ...options })
  await store.create('t', { contentType: TEXT, data: Buffer.from('hello') })
  await store.create('j', { contentType: JSON_TYPE, data: Buffer.from('[{"a":1},{"b":2}]') })
  await store.append('t', Buffer.from(' world'), { contentType: TEXT, seq: 'm', producer: { id: 'p', epoch: 1, seq: 0 } })
  const snapshot = async (s) => ({ t: await observe(s, 't'), j: await observe(s, 'j'), names: [...s.names()].sort() })
  const before = await snapshot(store)
  const intact = async (label, s = store) => t.deepEqual(await snapshot(s), before, `${label}: stored streams unchanged`)
  return { dir, store, intact, before }
}

test('bad input: TTL and expiry are validated before anything is written', async (t) => {
  const { dir, store, intact } = await intactStore(t)
  for (const ttlSeconds of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await refuses(t, store.create('x', { contentType: TEXT, ttlSeconds }), 'INVALID_ARG', `ttl ${ttlSeconds}`)
  }
  await refuses(t, store.create('x', { contentType: TEXT, ttlSeconds: 10, expiresAt: '2999-01-01T00:00:00Z' }), 'INVALID_ARG', 'ttl + expiry')
  await refuses(t, store.create('x', { contentType: TEXT, expiresAt: 'next tuesday' }), 'INVALID_ARG', 'bad expiry')
  await refuses(t, store.create('x', { contentType: TEXT, forkOffset: formatOffset(0) }), 'INVALID_ARG', 'fork offset without a source')
  await refuses(t, store.head('x'), 'NOT_FOUND', 'nothing was created')
  await intact('after refused creates')
  await store.close()
  const again = await StreamStore.open(dir)
  await intact('after reopen', again)
  await again.close()
})

test('bad input: forks of missing sources, beyond the tail, past a boundary, or malformed are refused', async (t) => {
  const { dir, store, intact } = await intactStore(t)
  await refuses(t, store.create('f', { forkFrom: 'missing' }), 'NOT_FOUND', 'missing source')
  await refuses(t, store.create('f', { forkFrom: 't', forkOffset: formatOffset(12) }), 'INVALID_ARG', 'beyond the tail')
  // 'hello' and ' world' are separate chunks: from 3, the boundary is 2 bytes away.
  await refuses(t, store.create('f', { forkFrom: 't', forkOffset: formatOffset(3), forkSubOffset: 3 }), 'INVALID_ARG', 'sub-offset past the boundary')
  await refuses(t, store.create('f', { forkFrom: 't', forkOffset: formatOffset(11), forkSubOffset: 1 }), 'INVALID_ARG', 'sub-offset at the tail')
  await refuses(t, store.create('f', { forkFrom: 't', forkSubOffset: -1 }), 'INVALID_ARG', 'negative sub-offset')
  await refuses(t, store.create('f', { forkFrom: 'j', forkOffset: formatOffset(0), forkSubOffset: 3 }), 'INVALID_ARG', 'JSON sub-offset past the messages')
  for (const bad of ['12', 'abc', '0000000000000000-0000000000000001', '9999999999999999_9999999999999999']) {
    const e = await t.throwsAsync(store.create('f', { forkFrom: 't', forkOffset: bad }), { instanceOf: StreamError }, `fork offset ${bad}`)
    t.true(['INVALID_ARG', 'INVALID_OFFSET'].includes(e?.code), `fork offset ${bad}: ${e?.code}`)
  }
  await refuses(t, store.create('f', { forkFrom: 't', contentType: JSON_TYPE }), 'CONFLICT', 'fork with another content type')
  await refuses(t, store.head('f'), 'NOT_FOUND', 'no fork was created')
  await intact('after refused forks')
  // Valid sub-offsets: 2 bytes from 3 (to the boundary) and 1 JSON message.
  await store.create('f1', { forkFrom: 't', forkOffset: formatOffset(3), forkSubOffset: 2 })
  t.is((await readAll(store, 'f1')).data.toString(), 'hello')
  await store.create('f2', { forkFrom: 'j', forkOffset: formatOffset(0), forkSubOffset: 1 })
  t.is((await readAll(store, 'f2')).data.toString(), '{"a":1},')
  await store.close()
  const again = await StreamStore.open(dir)
  t.is((await readAll(again, 'f1')).data.toString(), 'hello')
  t.is((await readAll(again, 'f2')).data.toString(), '{"a":1},')
  await again.close()
})

test('bad input: a fork of a JSON stream in the middle of a message is refused', async (t) => {
  const { store, intact } = await intactStore(t)
  // Stored: {"a":1},{"b":2},  — offset 3 is inside the first message.
  const e = await t.throwsAsync(store.create('f', { forkFrom: 'j', forkOffset: formatOffset(3) }), { instanceOf: StreamError }, 'fork inside a JSON message')
  t.true(['INVALID_OFFSET', 'INVALID_ARG'].includes(e?.code), `code ${e?.code}`)
  await refuses(t, store.head('f'), 'NOT_FOUND', 'no fork was created')
  await intact('after the refused fork')
  await store.close()
})

test('bad input: malformed and out-of-range read offsets are INVALID_OFFSET', async (t) => {
  const { store, intact } = await intactStore(t)
  for (const bad of ['', '-2', 'later', '12', '0_1', '0000000000000000_000000000000001x', '9999999999999999_9999999999999999']) {
    t.throws(() => parseOffset(bad), { instanceOf: StreamError, code: 'INVALID_OFFSET' }, `offset ${JSON.stringify(bad)}`)
  }
  await refuses(t, store.read('t', { kind: 'position', position: 12 }), 'INVALID_OFFSET', 'beyond the tail')
  await refuses(t, store.read('j', { kind: 'position', position: 3 }), 'INVALID_OFFSET', 'inside a JSON message')
  t.is((await store.read('j', { kind: 'position', position: 8 })).data.toString(), '{"b":2},', 'at a JSON message boundary')
  await intact('after refused reads')
  await store.close()
})

test('bad input: a negative or fractional read position is INVALID_OFFSET, not a crash', async (t) => {
  const { store, intact } = await intactStore(t)
  for (const position of [-1, 1.5]) {
    const e = await t.throwsAsync(store.read('t', { kind: 'position', position }), undefined, `position ${position}`)
    t.true(e instanceof StreamError, `position ${position}: a StreamError, got ${e?.constructor?.name}: ${e?.message}`)
  }
  await intact('after refused reads')
  await store.close()
})

test('bad input: refused appends (bad JSON, empty array, empty body, wrong type) store nothing and change no writer state', async (t) => {
  const { dir, store, intact } = await intactStore(t)
  const j = { contentType: JSON_TYPE }
  await refuses(t, store.append('j', Buffer.from('{"a":'), j), 'INVALID_ARG', 'invalid JSON')
  await refuses(t, store.append('j', Buffer.from('[1,]'), j), 'INVALID_ARG', 'trailing comma')
  await refuses(t, store.append('j', Buffer.from('[]'), j), 'INVALID_ARG', 'empty array')
  await refuses(t, store.append('j', Buffer.from(' [ ] '), j), 'INVALID_ARG', 'empty array with spaces')
  await refuses(t, store.append('t', Buffer.alloc(0), { contentType: TEXT }), 'INVALID_ARG', 'empty body without close')
  await refuses(t, store.append('t', Buffer.from('x')), 'INVALID_ARG', 'body without a content type')
  await refuses(t, store.append('t', Buffer.from('x'), { contentType: BIN }), 'CONTENT_TYPE_MISMATCH', 'other content type')
  await refuses(t, store.append('missing', Buffer.from('x'), { contentType: TEXT }), 'NOT_FOUND', 'missing stream')
  // Refusals that carry writer state must not advance it.
  await refuses(t, store.append('j', Buffer.from('{"a":'), { ...j, seq: 'zz', producer: { id: 'r', epoch: 0, seq: 0 } }), 'INVALID_ARG', 'bad JSON with seq and producer')
  const r = await store.append('j', Buffer.from('{"c":3}'), { ...j, seq: 'a', producer: { id: 'r', epoch: 0, seq: 0 } })
  t.is(r.outcome, 'appended', 'seq and producer were not consumed by the refused append')
  await refuses(t, store.append('t', Buffer.from('x'), { contentType: BIN, seq: 'n' }), 'CONTENT_TYPE_MISMATCH', 'mismatch with seq')
  await refuses(t, store.append('t', Buffer.from('x'), { contentType: TEXT, producer: { id: 'p', epoch: 1, seq: 2 } }), 'PRODUCER_SEQ_GAP', 'gap')
  await refuses(t, store.append('t', Buffer.from('x'), { contentType: TEXT, seq: 'm' }), 'SEQ_CONFLICT', 'seq not above')
  t.is((await readAll(store, 't')).data.toString(), 'hello world')
  t.is((await readAll(store, 'j')).data.toString(), '{"a":1},{"b":2},{"c":3},')
  await store.close()
  const again = await StreamStore.open(dir)
  t.is((await readAll(again, 't')).data.toString(), 'hello world')
  t.is((await readAll(again, 'j')).data.toString(), '{"a":1},{"b":2},{"c":3},')
  // The producer p state (epoch 1, seq 0) survived; seq 1 is next.
  t.is((await again.append('t', Buffer.from('!'), { contentType: TEXT, seq: 'n', producer: { id: 'p', epoch: 1, seq: 1 } })).outcome, 'appended')
  await again.close()
  void intact
})

test('bad input: a body larger than maxRecordBytes is refused (TOO_LARGE) without poisoning the store', async (t) => {
  const { dir, store, intact } = await intactStore(t, { maxRecordBytes: 2048, segmentBytes: 4096 })
  const e = await t.throwsAsync(store.append('t', Buffer.alloc(3000, 0x61), { contentType: TEXT }), undefined, 'oversized append')
  t.true(e instanceof StreamError, `a StreamError, got ${e?.constructor?.name} ${e?.code}: ${e?.message}`)
  t.is(e?.code, 'TOO_LARGE')
  const c = await t.throwsAsync(store.create('big', { contentType: TEXT, data: Buffer.alloc(3000, 0x61) }), undefined, 'oversized create')
  t.is(c?.code, 'TOO_LARGE')
  // The store still works and nothing moved.
  let works
  try {
    await intact('after the oversized append')
    works = await store.append('t', Buffer.from('!'), { contentType: TEXT })
  } catch (err) {
    works = err
  }
  t.is(works?.outcome, 'appended', `the store keeps working (${works?.code ?? ''} ${works?.message ?? ''})`)
  await store.close().catch(() => {})
  const again = await StreamStore.open(dir)
  t.is((await readAll(again, 't')).data.toString(), 'hello world!')
  await again.close()
})

// ---- compaction ----

/** Total segment files and bytes of every shard. */
function diskUsage(dir, shards) {
  let files = 0
  let bytes = 0
  for (let i = 0; i < shards; i++) {
    for (const f of segmentFiles(dir, i)) {
      files++
      bytes += f.size
    }
  }
  return { files, bytes }
}

test('compaction: deleting most streams and compacting drops segments; live streams, producers and closure survive, also after reopen', async (t) => {
  const dir = tmpDir(t)
  let store = await StreamStore.open(dir, { shards: 2, ...SMALL })
  const live = ['keep-bin', 'keep-json', 'keep-closed', 'keep-prod']
  await store.create('keep-bin', { contentType: BIN })
  await store.create('keep-json', { contentType: JSON_TYPE })
  await store.create('keep-closed', { contentType: TEXT, data: Buffer.from('c0') })
  await store.create('keep-prod', { contentType: TEXT })
  for (let i = 0; i < 40; i++) {
    await store.create(`junk${i}`, { contentType: BIN, data: body(300, i) })
    await store.append(`junk${i}`, body(400, i + 100), { contentType: BIN })
    if (i % 4 === 0) await store.append('keep-bin', body(100 + i, i), { contentType: BIN })
    if (i % 5 === 0) await store.append('keep-json', Buffer.from(`[{"i":${i}},"s${i}"]`), { contentType: JSON_TYPE })
    if (i % 6 === 0) await store.append('keep-prod', Buffer.from(`p${i};`), { contentType: TEXT, producer: { id: 'w', epoch: 1, seq: i / 6 }, seq: `s${String(i).padStart(3, '0')}` })
  }
  await store.append('keep-closed', Buffer.from('c1'), { contentType: TEXT, producer: { id: 'c', epoch: 0, seq: 0 }, close: true })
  for (let i = 0; i < 40; i++) await store.delete(`junk${i}`)
  const before = await observeAll(store, live)
  const usageBefore = diskUsage(dir, 2)
  await store.compact()
  const usageAfter = diskUsage(dir, 2)
  t.log(`segments: ${usageBefore.files} files / ${usageBefore.bytes} bytes → ${usageAfter.files} / ${usageAfter.bytes}`)
  t.true(usageAfter.files < usageBefore.files, `segment files shrink: ${usageBefore.files} → ${usageAfter.files}`)
  t.deepEqual(await observeAll(store, live), before, 'reads identical after compaction')
  await store.close()

  store = await StreamStore.open(dir, SMALL)
  t.deepEqual(await observeAll(store, live), before, 'reads identical after reopen')
  for (let i = 0; i < 40; i += 7) await refuses(t, store.head(`junk${i}`), 'NOT_FOUND', `junk${i} stays deleted`)
  // Writer state came through the snapshot.
  t.is((await store.append('keep-prod', Buffer.from('p36;'), { contentType: TEXT, producer: { id: 'w', epoch: 1, seq: 6 } })).outcome, 'duplicate')
  await refuses(t, store.append('keep-prod', Buffer.from('x'), { contentType: TEXT, producer: { id: 'w', epoch: 0, seq: 0 } }), 'PRODUCER_STALE_EPOCH', 'stale epoch')
  await refuses(t, store.append('keep-prod', Buffer.from('x'), { contentType: TEXT, producer: { id: 'w', epoch: 1, seq: 8 } }), 'PRODUCER_SEQ_GAP', 'gap')
  await refuses(t, store.append('keep-prod', Buffer.from('x'), { contentType: TEXT, seq: 's036' }), 'SEQ_CONFLICT', 'seq')
  t.is((await store.append('keep-closed', Buffer.from('c1'), { contentType: TEXT, producer: { id: 'c', epoch: 0, seq: 0 }, close: true })).outcome, 'duplicate')
  await refuses(t, store.append('keep-closed', Buffer.from('x'), { contentType: TEXT }), 'STREAM_CLOSED', 'closed')
  // The compacted store keeps taking writes that survive the next restart.
  await store.append('keep-bin', Buffer.from('tail'), { contentType: BIN })
  await store.close()
  store = await StreamStore.open(dir, SMALL)
  t.true((await readAll(store, 'keep-bin')).data.toString('latin1').endsWith('tail'))
  await store.close()
})

test('compaction: runs on its own (minLogBytes 0, garbageRatio 0) and keeps what it must', async (t) => {
  const dir = tmpDir(t)
  const opts = { shards: 1, ...SMALL, compaction: { minLogBytes: 0, garbageRatio: 0 }, sweepIntervalMs: 20 }
  let store = await StreamStore.open(dir, { ...opts, sweepIntervalMs: 3_600_000 })
  await store.create('live', { contentType: BIN })
  for (let i = 0; i < 30; i++) {
    await store.create(`junk${i}`, { contentType: BIN, data: body(600, i) })
    if (i % 3 === 0) await store.append('live', body(50, i), { contentType: BIN })
  }
  for (let i = 0; i < 30; i++) await store.delete(`junk${i}`)
  const before = await observe(store, 'live')
  const filesBefore = segmentFiles(dir, 0).length
  await store.close()
  store = await StreamStore.open(dir, opts)
  await until(t, () => segmentFiles(dir, 0).length < filesBefore, 'automatic compaction to drop segments')
  t.deepEqual(await observe(store, 'live'), before)
  await store.close()
  store = await StreamStore.open(dir, { ...opts, sweepIntervalMs: 3_600_000 })
  t.deepEqual(await observe(store, 'live'), before)
  await store.close()
})

test('compaction: a soft-deleted source still serves its forks after compaction and reopen', async (t) => {
  const dir = tmpDir(t)
  // Source and fork in different shards; the source's shard also holds plenty of garbage.
  const src = nameIn(0, 2, 'src')
  const fork = nameIn(1, 2, 'fork')
  let store = await StreamStore.open(dir, { shards: 2, ...SMALL })
  await store.create(src, { contentType: BIN })
  for (let i = 0; i < 12; i++) await store.append(src, body(200, i), { contentType: BIN })
  await store.create(fork, { forkFrom: src, forkOffset: formatOffset(1000) })
  await store.append(fork, Buffer.from('own'), { contentType: BIN })
  for (let i = 0; i < 30; i++) {
    const junk = nameIn(0, 2, `junk${i}-`)
    await store.create(junk, { contentType: BIN, data: body(500, i) })
    await store.delete(junk)
  }
  await store.delete(src)
  const before = await observe(store, fork)
  const files = segmentFiles(dir, 0).length
  await store.compact()
  t.true(segmentFiles(dir, 0).length < files, 'the source shard shrank')
  t.deepEqual(await observe(store, fork), before)
  await refuses(t, store.head(src), 'GONE', 'source is GONE after compaction')
  await store.close()
  store = await StreamStore.open(dir, SMALL)
  t.deepEqual(await observe(store, fork), before, 'fork reads through the compacted source after reopen')
  await refuses(t, store.head(src), 'GONE', 'source is GONE after reopen')
  await store.close()
  // (A second compaction + reopen hits the ERR_CORRUPT of the 'compacting twice' test below.)
})

test('compaction: the store reopens after the last fork of a soft-deleted source is deleted and the source compacted away', async (t) => {
  const dir = tmpDir(t)
  const src = nameIn(0, 2, 'src')
  const fork = nameIn(1, 2, 'fork')
  let store = await StreamStore.open(dir, { shards: 2, ...SMALL })
  await store.create(src, { contentType: BIN })
  for (let i = 0; i < 30; i++) await store.append(src, body(300, i), { contentType: BIN })
  await store.create(fork, { forkFrom: src })
  await store.create('other', { contentType: TEXT, data: Buffer.from('still here') })
  await store.delete(src) // soft: the fork reads from it
  await store.delete(fork) // hard: and the source with it
  await store.compact() // the source's records are dropped from shard 0; the fork's CREATE/DELETE stay in shard 1
  await store.close()
  let reopened
  try {
    reopened = await StreamStore.open(dir, SMALL)
  } catch (e) {
    t.fail(`reopen failed: ${e.code} ${e.message}`)
    return
  }
  t.is((await readAll(reopened, 'other')).data.toString(), 'still here')
  await refuses(t, reopened.head(src), 'NOT_FOUND', 'source')
  await refuses(t, reopened.head(fork), 'NOT_FOUND', 'fork')
  await reopened.close()
})

test('compaction: compacting twice (moved data spanning segments) and reopening keeps every stream', async (t) => {
  const dir = tmpDir(t)
  let store = await StreamStore.open(dir, { shards: 1, ...SMALL })
  const names = ['x', 'y', 'z']
  for (const n of names) await store.create(n, { contentType: BIN })
  for (let i = 0; i < 60; i++) await store.append(names[i % 3], body(200 + i, i), { contentType: BIN })
  const before = await observeAll(store, names)
  await store.compact()
  await store.compact()
  t.deepEqual(await observeAll(store, names), before, 'after two compactions')
  await store.close()
  try {
    store = await StreamStore.open(dir, SMALL)
  } catch (e) {
    t.fail(`reopen after two compactions failed: ${e.code} ${e.message}`)
    return
  }
  t.deepEqual(await observeAll(store, names), before, 'after reopen')
  await store.close()
})

test('compaction + retention: an append that races a compaction is not lost from the index after reopen', async (t) => {
  const dir = tmpDir(t)
  let clock = 1_000_000
  const opts = { shards: 1, ...SMALL, now: () => clock, retention: { maxAgeMs: 1000 }, sweepIntervalMs: 10 }
  let store = await StreamStore.open(dir, opts)
  await store.create('x', { contentType: BIN })
  await store.create('pad', { contentType: BIN })
  for (let i = 0; i < 20; i++) await store.append('pad', body(300, i), { contentType: BIN })
  for (let i = 0; i < 4; i++) await store.append('x', Buffer.alloc(100, 0x41 + i), { contentType: BIN })
  await store.delete('pad')
  clock += 500
  // The append is accepted while the compaction is under way.
  await Promise.all([store.compact(), store.append('x', Buffer.alloc(100, 0x45), { contentType: BIN })])
  clock += 700 // the first four chunks are now past maxAgeMs; the fifth is not
  await until(t, async () => (await store.read('x', { kind: 'start' })).startOffset === formatOffset(400), 'retention to drop the old chunks')
  const before = await readAll(store, 'x')
  t.is(before.data.toString(), 'E'.repeat(100))
  await store.close()
  store = await StreamStore.open(dir, { ...opts, retention: undefined, sweepIntervalMs: 3_600_000 })
  const after = await readAll(store, 'x')
  t.is(after.start, formatOffset(400))
  t.is(after.next, formatOffset(500))
  t.is(after.data.toString(), 'E'.repeat(100), 'the retained chunk reads back after reopen')
  await store.close()
})

// ---- retention ----

test('retention by bytes: reads below the retained start are GONE (410), reads from it work, also after reopen', async (t) => {
  const dir = tmpDir(t)
  const opts = { shards: 2, retention: { maxBytes: 250 }, sweepIntervalMs: 10 }
  let store = await StreamStore.open(dir, opts)
  await store.create('r', { contentType: BIN })
  for (let i = 0; i < 10; i++) await store.append('r', Buffer.alloc(100, 0x30 + i), { contentType: BIN })
  // Keeping the newest 250 bytes in whole chunks keeps the chunks from 700 (which ends past 750) on.
  await until(t, async () => (await store.read('r', { kind: 'start' })).startOffset === formatOffset(700), 'retention by bytes')
  const check = async (s, label) => {
    const r = await readAll(s, 'r')
    t.is(r.start, formatOffset(700), `${label}: start`)
    t.is(r.data.toString(), '7'.repeat(100) + '8'.repeat(100) + '9'.repeat(100), `${label}: retained data`)
    for (const position of [0, 350, 699]) {
      const e = await refuses(t, s.read('r', { kind: 'position', position }), 'GONE', `${label}: below start (${position})`)
      t.is(e?.status, 410)
    }
    t.is((await s.read('r', { kind: 'position', position: 750 })).data.toString(), '7'.repeat(50) + '8'.repeat(100) + '9'.repeat(100), `${label}: inside a retained chunk`)
    t.is((await s.head('r')).nextOffset, formatOffset(1000), `${label}: tail`)
  }
  await check(store, 'live')
  await store.close()
  store = await StreamStore.open(dir, { ...opts, retention: undefined, sweepIntervalMs: 3_600_000 })
  await check(store, 'after reopen')
  await store.append('r', Buffer.from('more'), { contentType: BIN })
  await store.close()
})

test('retention by age with an injected clock; streams with forks keep everything', async (t) => {
  const dir = tmpDir(t)
  let clock = 5_000_000
  const opts = { shards: 2, now: () => clock, retention: { maxAgeMs: 10_000 }, sweepIntervalMs: 10 }
  let store = await StreamStore.open(dir, opts)
  await store.create('aged', { contentType: TEXT })
  await store.create('forked', { contentType: TEXT })
  for (let i = 0; i < 3; i++) {
    await store.append('aged', Buffer.from(`old${i};`), { contentType: TEXT })
    await store.append('forked', Buffer.from(`old${i};`), { contentType: TEXT })
  }
  await store.create('fork', { forkFrom: 'forked' })
  clock += 8_000
  await store.append('aged', Buffer.from('new;'), { contentType: TEXT })
  await store.append('forked', Buffer.from('new;'), { contentType: TEXT })
  clock += 3_000 // the old chunks are 11 s old, the new one 3 s
  await until(t, async () => (await store.read('aged', { kind: 'start' })).startOffset === formatOffset(15), 'age-based retention')
  const check = async (s, label) => {
    t.is((await readAll(s, 'aged')).data.toString(), 'new;', `${label}: aged keeps the new chunk`)
    await refuses(t, s.read('aged', { kind: 'position', position: 0 }), 'GONE', `${label}: aged below start`)
    t.is((await readAll(s, 'forked')).data.toString(), 'old0;old1;old2;new;', `${label}: a stream with forks keeps everything`)
    t.is((await readAll(s, 'fork')).data.toString(), 'old0;old1;old2;', `${label}: the fork reads its range`)
  }
  await check(store, 'live')
  await store.close()
  store = await StreamStore.open(dir, { ...opts, sweepIntervalMs: 3_600_000 })
  await check(store, 'after reopen')
  await store.close()
})

// ---- TTL / expiry through a restart ----

test('expiry: a stream past its absolute expiry is NOT_FOUND, before and after reopen, and its name is free', async (t) => {
  const dir = tmpDir(t)
  let clock = Date.parse('2030-01-01T00:00:00Z')
  const opts = { shards: 2, now: () => clock, sweepIntervalMs: 3_600_000 }
  let store = await StreamStore.open(dir, opts)
  await store.create('e', { contentType: TEXT, data: Buffer.from('x'), expiresAt: '2030-01-01T01:00:00Z' })
  await store.create('ttl', { contentType: TEXT, data: Buffer.from('y'), ttlSeconds: 60 })
  clock += 30_000
  t.is((await readAll(store, 'ttl')).data.toString(), 'y') // an access
  await store.close()
  store = await StreamStore.open(dir, opts)
  t.is((await store.head('e')).expiresAt, '2030-01-01T01:00:00Z')
  t.is((await store.head('ttl')).ttlSeconds, 60)
  clock += 3_600_000
  await refuses(t, store.head('e'), 'NOT_FOUND', 'expired')
  await refuses(t, store.head('ttl'), 'NOT_FOUND', 'idle past its TTL')
  await store.close()
  store = await StreamStore.open(dir, opts)
  await refuses(t, store.head('e'), 'NOT_FOUND', 'expired after reopen')
  await refuses(t, store.head('ttl'), 'NOT_FOUND', 'TTL-expired after reopen')
  await store.create('e', { contentType: BIN, data: Buffer.from('new') })
  t.is((await readAll(store, 'e')).data.toString(), 'new')
  await store.close()
})

test('forks: a source keeps counting its live forks when a soft-deleted fork and its own last fork are deleted together', async (t) => {
  // src ← mid ← leaf, and src ← other. Deleting mid (soft: leaf reads it) and leaf together frees
  // mid; src still has `other`, so deleting src must be soft (GONE) and its data must stay.
  const opts = { shards: 2, segmentBytes: 8 << 20, maxRecordBytes: (8 << 20) - 96 }
  for (let round = 0; round < 4; round++) {
    const dir = tmpDir(t)
    const store = await StreamStore.open(dir, opts)
    const src = nameIn(0, 2, 'src')
    const mid = nameIn(0, 2, 'mid')
    const busy = nameIn(0, 2, 'busy')
    const leaf = nameIn(1, 2, 'leaf')
    const other = nameIn(1, 2, 'other')
    await store.create(src, { contentType: BIN, data: Buffer.from('src|') })
    await store.create(busy, { contentType: BIN })
    await store.create(mid, { forkFrom: src })
    await store.create(leaf, { forkFrom: mid })
    await store.create(other, { forkFrom: src })
    // A big write ahead of mid's DELETE in shard 0, so that leaf's DELETE (shard 1) tends to be durable first.
    await Promise.all([store.append(busy, Buffer.alloc(4 << 20), { contentType: BIN }), store.delete(mid), store.delete(leaf)])
    await store.delete(src)
    await refuses(t, store.head(src), 'GONE', `round ${round}: src still has a live fork`)
    await refuses(t, store.create(src, { contentType: BIN }), 'CONFLICT', `round ${round}: src's name is still held`)
    t.is((await readAll(store, other)).data.toString(), 'src|', `round ${round}: the fork reads`)
    await store.close()
    const again = await StreamStore.open(dir, opts)
    t.is((await readAll(again, other)).data.toString(), 'src|', `round ${round}: the fork reads after reopen`)
    await again.close()
  }
})

test('a read spanning many chunks (past the few read on the event loop) returns them all, in order', async (t) => {
  const dir = tmpDir(t)
  const store = await StreamStore.open(dir)
  await store.create('many', { contentType: 'text/plain' })
  const parts = Array.from({ length: 40 }, (_, i) => Buffer.from(`part ${i};`))
  for (const p of parts) await store.append('many', p, { contentType: 'text/plain' })
  const r = await store.read('many', { kind: 'start' })
  t.is(r.data.toString(), Buffer.concat(parts).toString())
  t.true(r.upToDate)
  await store.close()
})

test('close releases a wait for data at the tail instead of leaving it to its timeout', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  await store.create('s', { contentType: BIN, data: body(10, 1) })
  const waiting = store.wait('s', await store.position('s', { kind: 'now' }), 600_000)
  let settled = false
  void waiting.then(() => (settled = true))
  await new Promise((r) => setImmediate(r))
  t.false(settled, 'the wait settled before anything happened')
  await store.close()
  // A wait left to its 10-minute timeout would keep this test (and any process) alive that long.
  t.false(await waiting, 'a closing store has no new data to report')
})

// ---- found in review ----

test('a body or initial data that is not bytes is INVALID_ARG, and the store goes on', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  await store.create('a', { contentType: TEXT, data: Buffer.from('ok|') })
  for (const body of ['a string', ['x'], { length: 3 }, 42]) {
    await t.throwsAsync(store.append('a', body, { contentType: TEXT }), { instanceOf: StreamError, code: 'INVALID_ARG' })
  }
  await t.throwsAsync(store.create('b', { contentType: TEXT, data: 'text' }), { instanceOf: StreamError, code: 'INVALID_ARG' })
  // Nothing was accepted, nothing poisoned: the next append lands at the same place.
  await store.append('a', Buffer.from('next'), { contentType: TEXT })
  t.is((await readAll(store, 'a')).data.toString(), 'ok|next')
  await store.create('b', { contentType: TEXT })
})

test('producer epochs and sequence numbers that are not non-negative integers are INVALID_ARG, and change nothing', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  await store.create('p', { contentType: TEXT })
  for (const [epoch, seq] of [[NaN, 0], [-1, 0], [0, -1], [0, 0.5], ['1', 0], [0, Infinity], [2 ** 53, 0]]) {
    const e = await t.throwsAsync(store.append('p', Buffer.from('bad'), { contentType: TEXT, producer: { id: 'w', epoch, seq } }))
    t.is(e.code, 'INVALID_ARG', `epoch ${epoch} seq ${seq}`)
  }
  await t.throwsAsync(store.append('p', Buffer.from('bad'), { contentType: TEXT, producer: { id: 7, epoch: 0, seq: 0 } }), { code: 'INVALID_ARG' })
  // The first valid producer write is new, not a duplicate of something refused.
  const r = await store.append('p', Buffer.from('F'), { contentType: TEXT, producer: { id: 'w', epoch: 0, seq: 0 } })
  t.is(r.outcome, 'appended')
  t.is((await readAll(store, 'p')).data.toString(), 'F')
})

test('a throwing onTail listener neither fails the durable append nor silences the listeners after it', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  const heard = []
  const warned = new Promise((resolve) => process.once('warning', resolve))
  store.onTail(() => {
    throw new Error('listener bug')
  })
  store.onTail((name, tail) => heard.push([name, tail]))
  await store.create('l', { contentType: TEXT })
  await store.append('l', Buffer.from('hello'), { contentType: TEXT })
  t.deepEqual(heard.map(([n]) => n), ['l', 'l'])
  t.is(heard[1][1], formatOffset(5))
  t.regex((await warned).message, /listener bug/)
})

test('forking a fork at -1 starts at its beginning as readers see it, with nothing inherited', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  await store.create('src', { contentType: TEXT, data: Buffer.from('0123456789') })
  await store.create('f', { contentType: TEXT, forkFrom: 'src', forkOffset: formatOffset(6) })
  await store.append('f', Buffer.from('ABC'), { contentType: TEXT })
  await store.create('ff', { contentType: TEXT, forkFrom: 'f', forkOffset: '-1' })
  const ff = await readAll(store, 'ff')
  t.is(ff.data.toString(), '')
  t.is(ff.next, formatOffset(0))
  await store.create('fs', { contentType: TEXT, forkFrom: 'src', forkOffset: '-1' })
  t.is((await readAll(store, 'fs')).data.toString(), '')
})

test('a refusal on a busy stream is answered while its writers keep going', async (t) => {
  const store = await StreamStore.open(tmpDir(t), { shards: 1 })
  t.teardown(() => store.close())
  await store.create('hot', { contentType: TEXT })
  await store.append('hot', Buffer.from('x'), { contentType: TEXT, producer: { id: 'w', epoch: 1, seq: 0 } })
  // Writers that stop on their own after LIMIT appends: a refusal that waited for the stream to
  // be idle would settle only then.
  const LIMIT = 20_000
  let done = 0
  const writers = Array.from({ length: 8 }, async () => {
    while (done < LIMIT) {
      await store.append('hot', Buffer.from('x'), { contentType: TEXT })
      done++
    }
  })
  while (done < 100) await store.append('hot', Buffer.from('x'), { contentType: TEXT })
  const refusals = [
    [store.append('hot', Buffer.from('x'), { contentType: BIN }), 'CONTENT_TYPE_MISMATCH'],
    [store.append('hot', Buffer.from('x'), { contentType: TEXT, producer: { id: 'w', epoch: 0, seq: 1 } }), 'PRODUCER_STALE_EPOCH'],
    [store.append('hot', Buffer.from('x'), { contentType: TEXT, producer: { id: 'w', epoch: 1, seq: 5 } }), 'PRODUCER_SEQ_GAP'],
    [store.create('hot', { contentType: BIN }), 'CONFLICT'],
  ]
  for (const [refused, code] of refusals) {
    await t.throwsAsync(refused, { code })
    t.true(done < LIMIT, `${code} was answered only after the writers stopped`)
  }
  await Promise.all(writers)
})

test('TTL across restarts: an idle stream expires, one kept alive by reads does not, restarts do not renew it', async (t) => {
  const dir = tmpDir(t)
  let clock = 1_000_000
  const open = () => StreamStore.open(dir, { now: () => clock })
  const alive = async (store, name) =>
    store.read(name, { kind: 'start' }).then(
      () => true,
      (e) => (e.code === 'NOT_FOUND' ? false : Promise.reject(e)),
    )
  let store = await open()
  await store.create('idle', { contentType: TEXT, ttlSeconds: 10, data: Buffer.from('secret') })
  await store.create('read', { contentType: TEXT, ttlSeconds: 40, data: Buffer.from('kept') })
  await store.create('looped', { contentType: TEXT, ttlSeconds: 10, data: Buffer.from('x') })
  await store.create('compacted', { contentType: TEXT, ttlSeconds: 40, data: Buffer.from('c') })
  // Reads every 5 s for 200 s keep 'read' and 'compacted' alive; the log records them now and then.
  for (let i = 0; i < 40; i++) {
    clock += 5_000
    await store.read('read', { kind: 'start' })
    await store.read('compacted', { kind: 'start' })
    // Restarting more often than the TTL must not renew 'looped'.
    if (i % 2 === 1) {
      await store.close()
      store = await open()
    }
  }
  await store.compact() // the snapshot carries what the log knew of 'compacted''s reads
  const lastRead = clock
  await store.close()
  clock = lastRead + 35_000 // within the TTL of the last read
  store = await open()
  t.false(await alive(store, 'idle'))
  t.false(await alive(store, 'looped'))
  // A read now would renew them: look at the names instead.
  t.deepEqual([...store.names()].sort(), ['compacted', 'read'])
  await store.close()
  clock = lastRead + 51_000 // past the TTL, with a quarter of it for reads the log did not record
  store = await open()
  t.false(await alive(store, 'read'))
  t.false(await alive(store, 'compacted'))
  await store.close()
})

test('a write that would make the stream too large to snapshot is TOO_LARGE, and compaction still works', async (t) => {
  const dir = tmpDir(t)
  const opts = { shards: 1, segmentBytes: 8192, maxRecordBytes: 4000 }
  const store = await StreamStore.open(dir, opts)
  const name = 'n'.repeat(1900)
  await store.create(name, { contentType: TEXT })
  await store.append(name, Buffer.from('a'), { contentType: TEXT, seq: 's'.repeat(1000) })
  // Each record on its own fits; name + Stream-Seq + closing producer together would not.
  const closing = { contentType: TEXT, seq: 't'.repeat(1000), producer: { id: 'p'.repeat(1000), epoch: 0, seq: 0 }, close: true }
  await t.throwsAsync(store.append(name, Buffer.from('b'), closing), { instanceOf: StreamError, code: 'TOO_LARGE' })
  await store.compact()
  await store.append(name, Buffer.from('c'), { contentType: TEXT, seq: 'u' })
  await store.create('other', { contentType: TEXT })
  await store.close()
  const again = await StreamStore.open(dir, opts)
  t.is((await readAll(again, name)).data.toString(), 'ac')
  await again.close()
})

test('chunks retention dropped are not copied forward by every later compaction once their creation is compacted away', async (t) => {
  const dir = tmpDir(t)
  let clock = 1_000_000
  const base = { shards: 1, ...SMALL, now: () => clock }
  const quiet = { ...base, sweepIntervalMs: 3_600_000 }
  let store = await StreamStore.open(dir, quiet)
  await store.create('x', { contentType: BIN })
  await store.create('pad', { contentType: BIN })
  // The creation in one segment; old chunks of x in the next, which the compaction keeps.
  for (let i = 0; i < 3; i++) await store.append('pad', Buffer.alloc(1500, 1), { contentType: BIN })
  for (let i = 0; i < 3; i++) await store.append('x', Buffer.alloc(300, 0x41 + i), { contentType: BIN })
  await store.delete('pad')
  clock += 2000
  await store.append('x', Buffer.alloc(300, 0x44), { contentType: BIN })
  await store.close()
  store = await StreamStore.open(dir, { ...base, retention: { maxAgeMs: 1000 }, sweepIntervalMs: 5 })
  await until(t, async () => (await store.read('x', { kind: 'start' })).startOffset === formatOffset(900), 'retention to drop the old chunks')
  await store.compact()
  await store.close()
  store = await StreamStore.open(dir, quiet)
  await store.compact()
  await store.compact()
  t.is((await readAll(store, 'x')).data.toString(), 'D'.repeat(300))
  await store.close()
  // One live chunk, moved once by each of the two compactions after the reopen.
  const shard = fs.readdirSync(dir).find((f) => fs.statSync(path.join(dir, f)).isDirectory() && f !== 'subscriptions')
  const wal = await Wal.open(path.join(dir, shard), { readOnly: true })
  let moves = 0
  for await (const { data } of wal.entries()) if (data[0] === 5) moves++
  await wal.close()
  t.is(moves, 2)
})

test('a stream name with an empty segment (leading, trailing or doubled "/") is INVALID_ARG', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  for (const name of ['/a', 'a/', 'a//b', '/', 'events/x/']) {
    await t.throwsAsync(store.create(name, { contentType: TEXT }), { instanceOf: StreamError, code: 'INVALID_ARG' }, name)
  }
  await store.create('events/x', { contentType: TEXT })
})
