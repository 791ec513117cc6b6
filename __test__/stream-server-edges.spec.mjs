// Edge cases of the stream server and store that the conformance suite does not reach: found
// in review, each checked here through the public API.
import net from 'node:net'
import test from 'ava'

import { createStreamServer, StreamStore } from '../dist/index.mjs'

import { tmpDir } from './helpers.mjs'

async function server(t, options = {}) {
  const s = await createStreamServer({ dir: tmpDir(t), port: 0, ...options })
  t.teardown(() => s.close())
  return s
}

const put = (url, type, body, headers = {}) => fetch(url, { method: 'PUT', headers: { 'content-type': type, ...headers }, body })

// Serial (ava runs serial tests first): building this batch blocks the event loop for long enough
// to trip the short idle-connection timeouts of the tests below if it overlapped them.
test.serial('a JSON read at an offset inside a batch of 400,000 messages is answered (the boundary check is one pass)', async (t) => {
  const store = await StreamStore.open(tmpDir(t))
  t.teardown(() => store.close())
  await store.create('big', { contentType: 'application/json' })
  await store.append('big', Buffer.from('[' + Array(400_000).fill('1').join(',') + ']'), { contentType: 'application/json' })
  const r = await store.read('big', { kind: 'position', position: 2 * 399_990 }, 1 << 20)
  t.is(JSON.parse(Buffer.concat([Buffer.from('['), r.data.subarray(0, -1), Buffer.from(']')]).toString()).length, 10)
  await t.throwsAsync(store.read('big', { kind: 'position', position: 2 * 399_990 + 1 }), { code: 'INVALID_OFFSET' })
})

test('a long-poll outlasting the idle-connection timeout gets its 204, and an idle connection is closed', async (t) => {
  const s = await server(t, { idleTimeoutMs: 200, longPollTimeoutMs: 800 })
  const url = s.streamsUrl + 'quiet'
  t.is((await put(url, 'text/plain')).status, 201)
  const r = await fetch(`${url}?offset=now&live=long-poll`)
  t.is(r.status, 204)
  t.truthy(r.headers.get('stream-cursor'))

  const socket = net.connect(new URL(s.url).port, '127.0.0.1')
  const closed = await new Promise((resolve) => {
    socket.on('close', () => resolve(true))
    socket.on('error', () => {})
  })
  t.true(closed, 'a connection that never sends a request is closed')
})

test('an SSE response outlasting the idle-connection timeout ends cleanly at sseMaxMs', async (t) => {
  const s = await server(t, { idleTimeoutMs: 200, sseMaxMs: 900 })
  const url = s.streamsUrl + 'quiet-sse'
  await put(url, 'text/plain')
  const r = await fetch(`${url}?offset=now&live=sse`)
  t.is(r.status, 200)
  const text = await r.text() // throws if the socket is reset instead of ended
  t.regex(text, /event: control/)
})

test('SSE keeps a leading space of a text line', async (t) => {
  const s = await server(t)
  const url = s.streamsUrl + 'indented'
  await put(url, 'text/plain', 'def f():\n    return 1\n x')
  const r = await fetch(`${url}?offset=-1&live=sse`)
  const reader = r.body.getReader()
  let text = ''
  while (!text.includes('event: control')) text += new TextDecoder().decode((await reader.read()).value)
  await reader.cancel()
  // The SSE rule: one space after "data:" is dropped, the rest is the line.
  const lines = text
    .split('\n\n')[0]
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(5).replace(/^ /, ''))
  t.deepEqual(lines, ['def f():', '    return 1', ' x'])
})

test('a stream with a TTL does not expire while a live reader waits on it', async (t) => {
  const s = await server(t, { sweepIntervalMs: 50, longPollTimeoutMs: 2500 })
  const url = s.streamsUrl + 'short-lived'
  t.is((await put(url, 'text/plain', 'x', { 'stream-ttl': '1' })).status, 201)
  const r = await fetch(`${url}?offset=now&live=long-poll`)
  t.is(r.status, 204, 'the long-poll ended by timeout, not because the stream expired')
  t.is((await fetch(url, { method: 'HEAD' })).status, 200)
})

test('live reads check their offset before waiting: beyond the tail is 400 at once', async (t) => {
  const s = await server(t, { longPollTimeoutMs: 60_000 })
  const url = s.streamsUrl + 'short'
  await put(url, 'text/plain', 'abc')
  const far = '0000000000000000_0000000000000999'
  t.is((await fetch(`${url}?offset=${far}&live=long-poll`)).status, 400)
  t.is((await fetch(`${url}?offset=${far}&live=sse`)).status, 400)
})

test('JSON mode refuses a body that is not valid UTF-8, and stores nothing', async (t) => {
  const s = await server(t)
  const url = s.streamsUrl + 'strict-json'
  await put(url, 'application/json')
  const bad = Buffer.from([0x22, 0xff, 0xfe, 0x22]) // "\xff\xfe"
  t.is((await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bad })).status, 400)
  t.is(await (await fetch(`${url}?offset=-1`)).text(), '[]')
})

test('a name with "." or ".." segments (sent percent-encoded) is refused: no URL could address it', async (t) => {
  const s = await server(t)
  for (const name of ['a%2F..%2Fb', 'x%2F.', '.%2Fy']) t.is((await put(s.streamsUrl + name, 'text/plain', 'hi')).status, 400, name)
  const ok = await put(s.streamsUrl + 'a%2Fb', 'text/plain', 'hi')
  t.is(ok.status, 201)
  t.is(await (await fetch(ok.headers.get('location') + '?offset=-1')).text(), 'hi', 'Location names the stream created')
})

test('many producers on one stream: compaction splits their state and the store keeps working', async (t) => {
  const dir = tmpDir(t)
  const opts = { maxRecordBytes: 64 << 10, segmentBytes: 256 << 10 }
  let store = await StreamStore.open(dir, opts)
  await store.create('busy', { contentType: 'text/plain' })
  for (let i = 0; i < 2000; i++) {
    await store.append('busy', Buffer.from('x'), { contentType: 'text/plain', producer: { id: `producer-${i}-${'p'.repeat(40)}`, epoch: 0, seq: 0 } })
  }
  await store.compact()
  await store.append('busy', Buffer.from('y'), { contentType: 'text/plain' })
  await store.close()
  store = await StreamStore.open(dir, opts)
  t.teardown(() => store.close())
  for (const i of [0, 999, 1999]) {
    const r = await store.append('busy', Buffer.from('x'), { contentType: 'text/plain', producer: { id: `producer-${i}-${'p'.repeat(40)}`, epoch: 0, seq: 0 } })
    t.is(r.outcome, 'duplicate', `producer ${i} kept its state through compaction and reopen`)
  }
  t.is((await store.head('busy')).nextOffset, '0000000000000000_0000000000002001')
})

test('large reads go off the event loop and stay right while compaction moves their data', async (t) => {
  const store = await StreamStore.open(tmpDir(t), { shards: 1, segmentBytes: 64 << 10 })
  t.teardown(() => store.close())
  await store.create('many', { contentType: 'text/plain' })
  const expected = []
  for (let i = 0; i < 600; i++) {
    const line = `line ${i}\n`
    expected.push(line)
    await store.append('many', Buffer.from(line), { contentType: 'text/plain' })
    if (i % 50 === 0) {
      await store.create(`junk-${i}`, { contentType: 'text/plain', data: Buffer.alloc(4000, 1) })
      await store.delete(`junk-${i}`)
    }
  }
  const whole = expected.join('')
  const reads = []
  for (let k = 0; k < 20; k++) reads.push(store.read('many', { kind: 'start' }))
  const compaction = store.compact()
  for (let k = 0; k < 20; k++) reads.push(store.read('many', { kind: 'start' }))
  await compaction
  for (const r of await Promise.all(reads)) t.is(r.data.toString(), whole)
  t.is((await store.read('many', { kind: 'start' })).data.toString(), whole, 'and after compaction')
})

// Serial, like the test above: these write 32 MiB through SSE, long enough a stall to trip the
// short idle timeouts of the concurrent tests.
test.serial('a response its client stops reading is cut at the idle timeout', async (t) => {
  const s = await server(t, { idleTimeoutMs: 300, sseMaxMs: 60_000, maxBodyBytes: 8 << 20 })
  const url = s.streamsUrl + 'big'
  t.is((await put(url, 'text/plain')).status, 201)
  for (let i = 0; i < 4; i++) await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(8 << 20) })
  const socket = net.connect(new URL(s.url).port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  let cut = false
  const closed = new Promise((resolve) => {
    socket.on('close', resolve)
    socket.on('error', () => (cut = true))
  })
  socket.write(`GET ${new URL(url).pathname}?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n`)
  await new Promise((resolve) => socket.once('data', resolve))
  socket.pause() // and never read again
  // A paused socket does not notice the server closing it; writing does (the reset comes back).
  // The probes are well-formed requests, which the server queues behind the one in progress
  // (malformed bytes would make it close the connection itself). Before the fix the response
  // waited on its client for good, and this test timed out.
  const probe = setInterval(() => socket.write('HEAD /v1/stream/big HTTP/1.1\r\nHost: x\r\n\r\n'), 100)
  await closed
  clearInterval(probe)
  t.true(cut, 'the server reset the connection')
})

test.serial('close() ends a response its client never reads, after a grace period', async (t) => {
  const s = await createStreamServer({ dir: tmpDir(t), port: 0, maxBodyBytes: 8 << 20 })
  const url = s.streamsUrl + 'big'
  t.is((await put(url, 'text/plain')).status, 201)
  // More than the loopback socket buffers hold, sent as SSE events: the server is left waiting
  // for the client to read.
  for (let i = 0; i < 4; i++) await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(8 << 20) })
  const socket = net.connect(new URL(s.url).port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.on('error', () => {})
  socket.write(`GET ${new URL(url).pathname}?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n`)
  await new Promise((resolve) => socket.once('data', resolve))
  socket.pause()
  await s.close() // before: never resolved (the response waited for a drain that never came)
  t.pass()
})

test('a server that cannot listen releases its store', async (t) => {
  const dir = tmpDir(t)
  const taken = net.createServer()
  await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const err = await t.throwsAsync(createStreamServer({ dir, port: taken.address().port }))
  t.is(err.code, 'EADDRINUSE')
  const store = await StreamStore.open(dir) // ERR_LOCKED before: the failed server held the shards
  await store.close()
})

test('option values the server would misuse are INVALID_ARG before the data directory is touched', async (t) => {
  const { default: fs } = await import('node:fs')
  const { default: path } = await import('node:path')
  const dir = path.join(tmpDir(t), 'never-made')
  const bad = [
    { longPollTimeoutMs: 2 ** 31 }, // past setTimeout's limit: every long-poll would answer at once
    { longPollTimeoutMs: 0 },
    { longPollTimeoutMs: '100' },
    { sseMaxMs: Infinity },
    { idleTimeoutMs: -1 },
    { idleTimeoutMs: 1.5 },
    { port: 65536 },
    { port: -1 },
    { port: '4437' },
    { maxBodyBytes: 0 },
    { maxBodyBytes: NaN },
    { host: 42 },
    { root: 7 },
  ]
  for (const options of bad) {
    const e = await t.throwsAsync(createStreamServer({ dir, port: 0, ...options }), undefined, JSON.stringify(options))
    t.is(e?.code, 'INVALID_ARG', `${JSON.stringify(options)}: ${e?.message}`)
  }
  t.false(fs.existsSync(dir))
  const s = await server(t, { longPollTimeoutMs: 2 ** 31 - 1, idleTimeoutMs: 1000 })
  t.is((await put(`${s.streamsUrl}ok`, 'text/plain', 'x')).status, 201)
})

test('a server others can reach refuses plain-http webhooks to its own machine unless told otherwise', async (t) => {
  const hook = { type: 'webhook', pattern: 'events/*', webhook: { url: 'http://127.0.0.1:9/hook' } }
  const putSub = (s, id) => fetch(`${s.streamsUrl}__ds/subscriptions/${id}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hook) })
  const open = await server(t, { host: '0.0.0.0' })
  const refused = await putSub(open, 'a')
  t.is(refused.status, 400)
  t.is((await refused.json()).error.code, 'WEBHOOK_URL_REJECTED')
  const allowed = await server(t, { host: '0.0.0.0', localWebhooks: true })
  t.is((await putSub(allowed, 'b')).status, 201)
  const loopback = await server(t, { host: '127.0.0.1' })
  t.is((await putSub(loopback, 'c')).status, 201)
})

test('publicUrl is where Location headers point; a bad one is INVALID_ARG', async (t) => {
  const s = await server(t, { publicUrl: 'https://streams.example.com/' })
  const r = await put(`${s.streamsUrl}located`, 'text/plain', 'x')
  t.is(r.status, 201)
  t.is(r.headers.get('location'), 'https://streams.example.com/v1/stream/located')
  for (const publicUrl of ['not a url', 'ftp://x/', 'https://x/?q=1', 42]) {
    await t.throwsAsync(createStreamServer({ dir: tmpDir(t), port: 0, publicUrl }), { code: 'INVALID_ARG' }, String(publicUrl))
  }
})

test('with a publicUrl, a webhook to the listening port or to the public URL itself is still refused', async (t) => {
  const s = await server(t, { publicUrl: 'https://streams.example.com' })
  const port = new URL(s.url).port
  const putSub = (id, url) =>
    fetch(`${s.url}/v1/stream/__ds/subscriptions/${id}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'webhook', pattern: 'events/*', webhook: { url } }) })
  for (const url of [`http://127.0.0.1:${port}/v1/stream/events/x`, 'https://streams.example.com/v1/stream/events/x']) {
    const r = await putSub('self', url)
    t.is(r.status, 400, url)
    t.is((await r.json()).error.code, 'WEBHOOK_URL_REJECTED')
  }
})

test('after a restart on another port, webhook deliveries name the callback at the new port', async (t) => {
  const { default: http } = await import('node:http')
  const got = []
  const recv = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      got.push(JSON.parse(body))
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ done: true }))
    })
  })
  await new Promise((r) => recv.listen(0, '127.0.0.1', r))
  t.teardown(() => recv.close())
  const dir = tmpDir(t)
  const first = await createStreamServer({ dir, port: 0 })
  const sub = { type: 'webhook', pattern: 'events/*', webhook: { url: `http://127.0.0.1:${recv.address().port}/hook` } }
  const created = await fetch(`${first.streamsUrl}__ds/subscriptions/a`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sub) })
  t.is(created.status, 201)
  await first.close()
  const second = await createStreamServer({ dir, port: 0 })
  t.teardown(() => second.close())
  t.is((await put(`${second.streamsUrl}events/x`, 'text/plain', 'hello')).status, 201)
  while (got.length === 0) await new Promise((r) => setTimeout(r, 20))
  t.is(got[0].callback_url, `${second.streamsUrl}__ds/subscriptions/a/callback`)
})

/** The `data` and `control` events of an SSE response, read until `until` says enough. */
async function sseEvents(response, until) {
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const events = () =>
    text
      .split('\n\n')
      .slice(0, -1)
      .map((block) => {
        const lines = block.split('\n')
        const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n')
        return { type: lines[0].slice('event: '.length), data }
      })
  while (!until(events())) {
    const { value, done } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
  }
  await reader.cancel()
  return events()
}

test('live SSE sends text as whole characters when a UTF-8 character is split between appends', async (t) => {
  const s = await server(t)
  const url = s.streamsUrl + 'split'
  await put(url, 'text/plain; charset=utf-8')
  const response = await fetch(`${url}?offset=-1&live=sse`)
  const post = (bytes) => fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: Buffer.from(bytes) })
  const first = await post([0x63, 0x61, 0x66, 0xc3]) // "caf" and the first byte of "é"
  t.is(first.status, 204)
  // Wait until the server has sent what it can of the first append before the second arrives.
  const seen = []
  const reading = sseEvents(response, (events) => {
    seen.splice(0, seen.length, ...events)
    return events.filter((e) => e.type === 'data').map((e) => e.data).join('') === 'café!'
  })
  while (!seen.some((e) => e.type === 'data')) await new Promise((resolve) => setTimeout(resolve, 10))
  const control = JSON.parse(seen.filter((e) => e.type === 'control').at(-1).data)
  t.is(control.streamNextOffset, '0000000000000000_0000000000000003', 'the next offset is where the unfinished character starts')
  t.is(control.upToDate, undefined, 'not up to date while part of a character is held back')
  t.is((await post([0xa9, 0x21])).status, 204) // the second byte of "é", then "!"
  const events = await reading
  t.deepEqual(events.filter((e) => e.type === 'data').map((e) => e.data), ['caf', 'é!'])
  t.false(events.some((e) => e.data.includes('\ufffd')))
  // Resuming from the control event's offset reads the whole character.
  const resumed = await fetch(`${url}?offset=0000000000000000_0000000000000003`)
  t.is(await resumed.text(), 'é!')
})

test('a repeated fork PUT is answered 200 after the source grew or was deleted, 409 when it asks for another fork', async (t) => {
  const s = await server(t)
  const src = s.streamsUrl + 'src'
  const path = new URL(src).pathname
  t.is((await put(src, 'text/plain', 'abc')).status, 201)
  const fork = (name, headers) => fetch(s.streamsUrl + name, { method: 'PUT', headers: { 'stream-forked-from': path, ...headers } })
  t.is((await fork('f1', {})).status, 201)
  t.is((await fetch(src, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'd' })).status, 204)
  t.is((await fork('f1', {})).status, 200, 'no offset given: the fork is the one asked for')
  const at = '0000000000000000_0000000000000002'
  t.is((await fork('f2', { 'stream-fork-offset': at })).status, 201)
  t.is((await fork('f2', { 'stream-fork-offset': '0000000000000000_0000000000000001' })).status, 409)
  t.is((await fetch(src, { method: 'DELETE' })).status, 204)
  t.is((await fork('f2', { 'stream-fork-offset': at })).status, 200, 'the source is deleted, the fork is the same')
  t.is((await fork('f3', { 'stream-fork-offset': at })).status, 409, 'a new fork of a deleted source is refused')
  t.is(await (await fetch(s.streamsUrl + 'f2?offset=-1')).text(), 'ab')
})

test('If-None-Match uses weak comparison: W/ tags, lists and * match', async (t) => {
  const s = await server(t)
  const url = s.streamsUrl + 'tagged'
  await put(url, 'text/plain', 'x')
  const etag = (await fetch(`${url}?offset=-1`)).headers.get('etag')
  const withTag = (value) => fetch(`${url}?offset=-1`, { headers: { 'if-none-match': value } })
  for (const value of [etag, `W/${etag}`, `"other", ${etag}`, `W/"other",W/${etag}`, '*']) t.is((await withTag(value)).status, 304, value)
  for (const value of ['"other"', `W/"other"`, etag.slice(1, -1), `"a"${etag}`, `x${etag}`, `${etag}x`]) t.is((await withTag(value)).status, 200, value)
})

test('a live response moves a cursor of any length forward', async (t) => {
  const s = await server(t, { longPollTimeoutMs: 50 })
  const url = s.streamsUrl + 'cursor'
  await put(url, 'text/plain')
  for (const cursor of ['1', '999999999999999', '9999999999999999', '123456789012345678901234567890']) {
    const r = await fetch(`${url}?offset=now&live=long-poll&cursor=${cursor}`)
    const next = BigInt(r.headers.get('stream-cursor'))
    t.true(next > BigInt(cursor), `${cursor} -> ${next}`)
  }
})

test('a Content-Type that is not a media type is 400, and creates nothing; a close-only POST ignores it', async (t) => {
  const s = await server(t)
  for (const type of ['', 'garbage', '; charset=utf-8', 'text/']) {
    const url = s.streamsUrl + 'ct' + encodeURIComponent(type.length)
    t.is((await put(url, type)).status, 400, JSON.stringify(type))
    t.is((await fetch(url, { method: 'HEAD' })).status, 404)
  }
  const url = s.streamsUrl + 'ct-ok'
  t.is((await put(url, 'text/plain; charset=utf-8')).status, 201)
  t.is((await fetch(url, { method: 'POST', headers: { 'content-type': 'nonsense' }, body: 'x' })).status, 400)
  t.is((await fetch(url, { method: 'POST', headers: { 'content-type': '' }, body: 'x' })).status, 400)
  t.is((await fetch(url, { method: 'POST', headers: { 'content-type': 'nonsense', 'stream-closed': 'true' } })).status, 204)
  t.is(await (await fetch(`${url}?offset=-1`)).text(), '')
  // The store's own API has the same rule.
  await t.throwsAsync(s.store.create('direct', { contentType: 'garbage' }), { code: 'INVALID_ARG' })
})

test('Stream-Expires-At must name a real instant: no February 30th, no 24:00', async (t) => {
  const s = await server(t)
  const bad = ['2099-02-30T00:00:00Z', '2099-02-29T00:00:00Z', '2099-01-01T24:00:00Z', '2099-13-01T00:00:00Z', '2099-01-01T00:00:00+24:00', '2099-01-01']
  for (const [i, at] of bad.entries()) t.is((await put(s.streamsUrl + `exp${i}`, 'text/plain', undefined, { 'stream-expires-at': at })).status, 400, at)
  t.is((await put(s.streamsUrl + 'leap', 'text/plain', undefined, { 'stream-expires-at': '2096-02-29T23:59:59.5+01:00' })).status, 201)
})

test('a JSON array of millions of elements is stored as as many messages', async (t) => {
  const s = await server(t)
  const url = s.streamsUrl + 'many'
  await put(url, 'application/json')
  const n = 1_000_000
  t.is((await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `[ ${Array(n).fill('7').join(' , ')} ]` })).status, 204)
  const messages = await (await fetch(`${url}?offset=-1`)).json()
  t.is(messages.length, n)
  t.true(messages.every((m) => m === 7))
})
