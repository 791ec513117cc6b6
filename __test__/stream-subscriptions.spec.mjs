import { createPublicKey, verify } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { Subscriptions } from '../dist/stream-subscriptions.js'
import { globMatch } from '../dist/stream-subscription-glob.js'
import { webhookUrlProblem } from '../dist/stream-subscription-webhook-url.js'
import { postWebhook } from '../dist/stream-subscription-webhook.js'
import { tmpDir } from './helpers.mjs'

const ROOT = 'http://127.0.0.1:4437/v1/stream/'
const offset = (n) => `0000000000000000_${String(n).padStart(16, '0')}`

/** An in-memory StreamEvents: streams are message counters with JSON payloads. */
class FakeStreams {
  streams = new Map()
  listeners = new Set()
  names() {
    return this.streams.keys()
  }
  tail(name) {
    const s = this.streams.get(name)
    return s && offset(s.messages.length)
  }
  /** Like the real store: one event for the creation (with its initial messages), flagged `created`. */
  create(name, ...messages) {
    this.streams.set(name, { messages: [...messages] })
    for (const l of this.listeners) l(name, this.tail(name), true)
  }
  append(name, ...messages) {
    this.streams.get(name).messages.push(...messages)
    for (const l of this.listeners) l(name, this.tail(name), false)
  }
  /** Deletes a stream; like the real store, a stream created again under its name starts at offset 0. */
  delete(name) {
    this.streams.delete(name)
  }
  messages(name) {
    return this.streams.get(name)?.messages ?? []
  }
  async appendJson(name, messages) {
    if (!this.streams.has(name)) throw new Error(`no stream ${name}`)
    this.append(name, ...messages)
  }
  onTail(listener) {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}

async function open(t, { dir = path.join(tmpDir(t), 'subs'), streams = new FakeStreams(), now } = {}) {
  const errors = []
  const subs = await Subscriptions.open({ dir, streams, now, onError: (e) => errors.push(e) })
  t.teardown(() => subs.close())
  return { subs, streams, dir, errors }
}

async function call(subs, method, rest, body, headers = {}) {
  const raw = body === undefined ? Buffer.alloc(0) : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
  const res = await subs.handle(method, rest, headers, raw, ROOT)
  return { ...res, json: res.body ? JSON.parse(res.body) : undefined }
}

const put = (subs, id, config) => call(subs, 'PUT', `subscriptions/${encodeURIComponent(id)}`, config)
const get = (subs, id) => call(subs, 'GET', `subscriptions/${encodeURIComponent(id)}`)
const bearer = (token) => ({ authorization: `Bearer ${token}` })
const linkOf = (sub, p) => sub.streams.find((s) => s.path === p)

async function waitFor(predicate, what = 'condition', timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await predicate()) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A local webhook receiver; `respond(n)` picks the status and JSON body of the nth request. */
async function receiver(t, respond = () => [200, {}]) {
  const received = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8')
      received.push({ rawBody, body: JSON.parse(rawBody), signature: req.headers['webhook-signature'] })
      const [status, body] = respond(received.length)
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { url: `http://127.0.0.1:${server.address().port}/hook`, received }
}

function verifySignature(rawBody, header, jwks) {
  const m = /^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/.exec(header ?? '')
  if (!m) return false
  const key = jwks.keys.find((k) => k.kid === m[2])
  if (!key) return false
  return verify(null, Buffer.from(`${m[1]}.${rawBody}`), createPublicKey({ key, format: 'jwk' }), Buffer.from(m[3], 'base64url'))
}

test('glob patterns: * is one segment, ** is zero or more', (t) => {
  const table = [
    ['events/*', 'events/a', true],
    ['events/*', 'events', false],
    ['events/*', 'events/a/b', false],
    ['events/*', 'other/a', false],
    ['events/**', 'events', true],
    ['events/**', 'events/a/b/c', true],
    ['**', 'anything/at/all', true],
    ['**/x', 'x', true],
    ['**/x', 'a/b/x', true],
    ['**/x', 'a/b/y', false],
    ['a/**/z', 'a/z', true],
    ['a/**/z', 'a/b/c/z', true],
    ['a/**/z', 'a/b/c/y', false],
    ['*/b/*', 'a/b/c', true],
    ['*/b/*', 'a/c/c', false],
    ['a/**/**/b', 'a/x/b', true],
    ['events/a*', 'events/abc', false],
    ['/events/*/', 'events/a', true],
  ]
  for (const [pattern, p, expected] of table) t.is(globMatch(pattern, p), expected, `${pattern} ~ ${p}`)
})

test('webhook URL validation allows https and local development http only', (t) => {
  for (const ok of ['https://worker.example/hooks', 'http://localhost:8080/h', 'http://127.0.0.1:9/h', 'http://127.0.0.200/h', 'https://8.8.8.8/h']) {
    t.is(webhookUrlProblem(ok), undefined, ok)
  }
  for (const bad of [
    'http://10.0.0.1/hook',
    'http://worker.example/hooks',
    'http://127.0.1.1/h',
    'http://[::1]/h',
    'https://10.1.2.3/h',
    'https://172.16.0.1/h',
    'https://192.168.1.1/h',
    'https://169.254.169.254/latest',
    'https://127.0.0.1/h',
    'https://localhost/h',
    'https://[::1]/h',
    'https://[fe80::1]/h',
    'https://[fd00::1]/h',
    'https://[::ffff:10.0.0.1]/h',
    'https://0x7f.1/h',
    'ftp://worker.example/h',
    'https://user:pw@worker.example/h',
    'not a url',
  ]) {
    t.is(typeof webhookUrlProblem(bad), 'string', bad)
  }
})

test('create, re-confirm and conflicting re-create; GET, JWKS and bad input', async (t) => {
  const { subs } = await open(t)
  const config = { type: 'webhook', pattern: 'events/*', webhook: { url: 'https://worker.example/hooks' }, lease_ttl_ms: 1000, description: 'd' }
  const created = await put(subs, 'sub-1', config)
  t.is(created.status, 201)
  t.is(created.json.id, 'sub-1')
  t.is(created.json.subscription_id, 'sub-1')
  t.is(created.json.status, 'active')
  t.is(created.json.wake_stream, null)
  t.is(created.json.webhook_secret, undefined)
  t.is(created.json.webhook.signing.alg, 'ed25519')
  t.regex(created.json.webhook.signing.kid, /^ds_/)
  t.is(created.json.webhook.signing.jwks_url, `${ROOT}__ds/jwks.json`)

  const jwks = await call(subs, 'GET', 'jwks.json')
  t.is(jwks.status, 200)
  t.is(jwks.headers['content-type'], 'application/jwk-set+json')
  t.like(jwks.json.keys[0], { kid: created.json.webhook.signing.kid, kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })

  // Same configuration in another field order, with the default spelled out: 200.
  const reordered = { description: 'd', lease_ttl_ms: 1000, webhook: { url: 'https://worker.example/hooks' }, pattern: '/events/*', type: 'webhook' }
  t.is((await put(subs, 'sub-1', reordered)).status, 200)
  const conflict = await put(subs, 'sub-1', { ...config, description: 'other' })
  t.is(conflict.status, 409)
  t.is(conflict.json.error.code, 'SUBSCRIPTION_ALREADY_EXISTS')

  const got = await get(subs, 'sub-1')
  t.is(got.status, 200)
  t.deepEqual(got.json, created.json)
  t.is((await get(subs, 'nope')).status, 404)

  const bad = [
    ['{not json', 'INVALID_REQUEST'],
    [{ type: 'webhook', webhook: { url: 'https://worker.example/h' } }, 'INVALID_REQUEST'],
    [{ type: 'sms', pattern: 'a' }, 'INVALID_REQUEST'],
    [{ type: 'webhook', pattern: 'a' }, 'INVALID_REQUEST'],
    [{ type: 'pull-wake', pattern: 'a' }, 'INVALID_REQUEST'],
    [{ type: 'pull-wake', pattern: 'a', wake_stream: 'w', lease_ttl_ms: 999 }, 'INVALID_REQUEST'],
    [{ type: 'pull-wake', pattern: 'a', wake_stream: 'w', lease_ttl_ms: 600_001 }, 'INVALID_REQUEST'],
    [{ type: 'pull-wake', streams: 'a', wake_stream: 'w' }, 'INVALID_REQUEST'],
    [{ type: 'pull-wake', streams: [1], wake_stream: 'w' }, 'INVALID_REQUEST'],
    [{ type: 'webhook', pattern: 'events/*', webhook: { url: 'http://10.0.0.1/hook' } }, 'WEBHOOK_URL_REJECTED'],
  ]
  for (const [body, code] of bad) {
    const res = await put(subs, 'sub-bad', body)
    t.is(res.status, 400, JSON.stringify(body))
    t.is(res.json.error.code, code)
  }
  t.is((await get(subs, 'sub-bad')).status, 404)
  t.is((await call(subs, 'POST', 'subscriptions/sub-1')).status, 405)
  t.is((await call(subs, 'GET', 'whatever')).status, 404)

  t.is((await call(subs, 'DELETE', 'subscriptions/sub-1')).status, 204)
  t.is((await get(subs, 'sub-1')).status, 404)
  t.is((await call(subs, 'DELETE', 'subscriptions/sub-1')).status, 204)
})

test('existing streams are linked at their tail; streams created later are pending from the start', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('events/old', 'a', 'b')
  streams.create('other/x', 'a')
  streams.create('wake/w')
  t.is((await put(subs, 'p', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/w' })).status, 201)
  const sub = (await get(subs, 'p')).json
  t.deepEqual(sub.streams, [{ path: 'events/old', link_type: 'glob', acked_offset: offset(2) }])
  t.deepEqual(streams.messages('wake/w'), [])

  streams.create('events/new', 'x')
  await waitFor(() => streams.messages('wake/w').length === 1, 'a wake event')
  t.like(streams.messages('wake/w')[0], { type: 'wake', subscription_id: 'p', stream: 'events/new', generation: 1 })
  t.is(linkOf((await get(subs, 'p')).json, 'events/new').acked_offset, '-1')
})

test('explicit membership: add, remove, and glob links outlive their explicit link', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('events/a', 'x')
  await put(subs, 's', { type: 'webhook', pattern: 'events/*', streams: ['manual/a'], webhook: { url: 'https://worker.example/h' } })
  t.is((await call(subs, 'POST', 'subscriptions/s/streams', { streams: ['manual/b', 'events/a'] })).status, 204)
  t.is((await call(subs, 'POST', 'subscriptions/s/streams', { streams: ['manual/b'] })).status, 204)
  let sub = (await get(subs, 's')).json
  t.deepEqual(
    sub.streams.map((s) => [s.path, s.link_type]),
    [
      ['events/a', 'explicit'],
      ['manual/a', 'explicit'],
      ['manual/b', 'explicit'],
    ],
  )
  t.is(linkOf(sub, 'events/a').acked_offset, offset(1))
  t.is((await call(subs, 'DELETE', `subscriptions/s/streams/${encodeURIComponent('manual/b')}`)).status, 204)
  t.is((await call(subs, 'DELETE', 'subscriptions/s/streams/events/a')).status, 204)
  t.is((await call(subs, 'DELETE', 'subscriptions/s/streams/never%2Fthere')).status, 204)
  sub = (await get(subs, 's')).json
  t.deepEqual(
    sub.streams.map((s) => [s.path, s.link_type]),
    [
      ['events/a', 'glob'],
      ['manual/a', 'explicit'],
    ],
  )
  t.is((await call(subs, 'POST', 'subscriptions/s/streams', { streams: 'x' })).status, 400)
  t.is((await call(subs, 'POST', 'subscriptions/none/streams', { streams: ['x'] })).status, 404)
})

test('webhook delivery is signed; {done:true} acks the snapshot; later appends wake again', async (t) => {
  const hook = await receiver(t, () => [200, { done: true }])
  const { subs, streams } = await open(t)
  const created = await put(subs, 'w', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url }, lease_ttl_ms: 1000 })
  const jwks = (await call(subs, 'GET', 'jwks.json')).json

  streams.create('events/a', 'one')
  await waitFor(async () => linkOf((await get(subs, 'w')).json, 'events/a')?.acked_offset === offset(1), 'auto-ack')
  const first = hook.received[0]
  t.true(verifySignature(first.rawBody, first.signature, jwks))
  t.true(first.signature.includes(`kid=${created.json.webhook.signing.kid},`))
  t.false(verifySignature(first.rawBody.replace('events/a', 'events/b'), first.signature, jwks))
  t.like(first.body, { subscription_id: 'w', generation: 1, callback_url: `${ROOT}__ds/subscriptions/w/callback` })
  t.regex(first.body.wake_id, /^w_/)
  t.deepEqual(linkOf(first.body, 'events/a'), { path: 'events/a', link_type: 'glob', acked_offset: '-1', tail_offset: offset(1), has_pending: true })

  streams.append('events/a', 'two')
  await waitFor(async () => linkOf((await get(subs, 'w')).json, 'events/a')?.acked_offset === offset(2), 'second auto-ack')
  const second = hook.received.at(-1).body
  t.true(second.generation > first.body.generation)
  t.not(second.wake_id, first.body.wake_id)
})

test('webhook callback acks, extends and finishes the wake; stale callbacks are FENCED', async (t) => {
  const hook = await receiver(t)
  const { subs, streams } = await open(t)
  await put(subs, 'cb', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url }, lease_ttl_ms: 60_000 })
  streams.create('events/a', 'one', 'two')
  await waitFor(() => hook.received.length === 1, 'a webhook')
  const wake = hook.received[0].body
  const callback = (body, token = wake.callback_token) => call(subs, 'POST', 'subscriptions/cb/callback', body, bearer(token))
  const base = { wake_id: wake.wake_id, generation: wake.generation }

  t.is((await call(subs, 'POST', 'subscriptions/cb/callback', base)).status, 401)
  t.is((await callback(base, 'forged.token')).json.error.code, 'TOKEN_INVALID')
  t.is((await callback({ ...base, wake_id: 'w_other' })).json.error.code, 'FENCED')
  const beyond = await callback({ ...base, acks: [{ stream: 'events/a', offset: offset(3) }] })
  t.is(beyond.status, 409)
  t.is(beyond.json.error.code, 'INVALID_OFFSET')

  const partial = await callback({ ...base, acks: [{ stream: 'events/a', offset: offset(1) }] })
  t.deepEqual([partial.status, partial.json], [200, { ok: true, next_wake: false }])
  t.is(linkOf((await get(subs, 'cb')).json, 'events/a').acked_offset, offset(1))

  const done = await callback({ ...base, acks: [{ stream: 'events/a', offset: offset(2) }], done: true })
  t.deepEqual([done.status, done.json], [200, { ok: true, next_wake: false }])
  const stale = await callback({ ...base, acks: [{ stream: 'events/a', offset: offset(2) }], done: true })
  t.is(stale.status, 409)
  t.is(stale.json.error.code, 'FENCED')

  // Done with work left: the next wake is issued at once, under a new generation.
  streams.append('events/a', 'three')
  await waitFor(() => hook.received.length === 2, 'a second webhook')
  const next = hook.received[1].body
  t.is(next.generation, wake.generation + 1)
  streams.append('events/a', 'four')
  const more = await call(subs, 'POST', 'subscriptions/cb/callback', { wake_id: next.wake_id, generation: next.generation, done: true }, bearer(next.callback_token))
  t.deepEqual(more.json, { ok: true, next_wake: true })
  await waitFor(() => hook.received.length === 3, 'a third webhook')
  t.is(hook.received[2].body.generation, next.generation + 1)
  // The old token does not work for the new generation either.
  const third = hook.received[2].body
  t.is((await callback({ wake_id: third.wake_id, generation: third.generation })).json.error.code, 'FENCED')
})

test('failed webhook deliveries are retried, across a restart, with status failed meanwhile', async (t) => {
  // Deliveries fail until the restarted service has been seen in the failed state: a slow machine
  // may retry before the first instance closes, or as soon as the second one opens.
  let accept = false
  const answers = []
  const hook = await receiver(t, () => {
    answers.push(accept ? 200 : 500)
    return accept ? [200, { done: true }] : [500, {}]
  })
  const first = await open(t)
  const { streams, dir } = first
  await put(first.subs, 'r', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url } })
  streams.create('events/a', 'one')
  await waitFor(async () => (await get(first.subs, 'r')).json.status === 'failed', 'status failed')
  await first.subs.close()

  const { subs } = await open(t, { dir, streams })
  t.is((await get(subs, 'r')).json.status, 'failed')
  accept = true
  // Each failure doubles the wait for the next attempt (1 s, 2 s, 4 s …): a stalled machine that
  // failed more than once before `accept` may wait several seconds for the successful one.
  await waitFor(async () => linkOf((await get(subs, 'r')).json, 'events/a').acked_offset === offset(1), 'a successful retry', 30_000)
  t.true(answers.length >= 2 && answers.indexOf(200) === answers.length - 1, `answers: ${answers}`)
  for (const r of hook.received) t.is(r.body.wake_id, hook.received[0].body.wake_id, 'every retry delivers the same wake')
  t.is((await get(subs, 'r')).json.status, 'active')
})

test('a delivered webhook wake is left to its lease across a restart, not delivered again', async (t) => {
  const hook = await receiver(t) // 200 without done: the receiver is working on it
  const dir = path.join(tmpDir(t), 'subs')
  const streams = new FakeStreams()
  let clock = 1_000_000_000_000
  const now = () => clock
  const first = await open(t, { dir, streams, now })
  await put(first.subs, 'w', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url }, lease_ttl_ms: 60_000 })
  streams.create('events/a', 'one')
  await waitFor(() => hook.received.length === 1, 'the first delivery')
  const saved = () => fs.readdirSync(path.join(dir, 'subscriptions')).some((f) => f.endsWith('.json') && fs.readFileSync(path.join(dir, 'subscriptions', f), 'utf8').includes('"delivered":true'))
  await waitFor(saved, 'the delivery recorded')
  await first.subs.close()

  const second = await open(t, { dir, streams, now })
  // A redelivery would be sent at once (its retry time is 0): give it every chance to show.
  await new Promise((resolve) => setTimeout(resolve, 300))
  await second.subs.close()
  t.is(hook.received.length, 1, 'the wake the receiver holds is not delivered again')

  // Once the lease has run out, the pending work is woken again under a new generation.
  clock += 61_000
  await open(t, { dir, streams, now })
  await waitFor(() => hook.received.length === 2, 'a wake after the lease')
  t.is(hook.received[1].body.generation, hook.received[0].body.generation + 1)
})

test('a webhook wake whose delivery is not known to have arrived is delivered again after a restart', async (t) => {
  // The receiver takes the first request but has not answered when the service closes.
  const received = []
  const held = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      if (received.length === 1) held.push(res)
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"done":true}')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const url = `http://127.0.0.1:${server.address().port}/hook`
  const dir = path.join(tmpDir(t), 'subs')
  const streams = new FakeStreams()
  const first = await open(t, { dir, streams })
  await put(first.subs, 'w', { type: 'webhook', pattern: 'events/*', webhook: { url }, lease_ttl_ms: 60_000 })
  streams.create('events/a', 'one')
  await waitFor(() => held.length === 1, 'the first delivery')
  await first.subs.close()
  held[0].writeHead(200, { 'content-type': 'application/json' }).end('{}')

  await open(t, { dir, streams })
  await waitFor(() => received.length === 2, 'the redelivery')
  t.is(received[1].wake_id, received[0].wake_id)
})

test('pull-wake: wake events, claim, ALREADY_CLAIMED, heartbeat, ack, release, FENCED', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('wake/pool')
  await put(subs, 'pw', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/pool', lease_ttl_ms: 60_000 })
  const claim = (worker) => call(subs, 'POST', 'subscriptions/pw/claim', { worker })
  const noWork = await claim('w1')
  t.is(noWork.status, 409)
  t.is(noWork.json.error.code, 'NO_PENDING_WORK')

  streams.create('events/a', 'one')
  await waitFor(() => streams.messages('wake/pool').length === 1, 'a wake event')
  const event = streams.messages('wake/pool')[0]
  const claimed = await claim('w1')
  t.is(claimed.status, 200)
  t.is(claimed.json.generation, event.generation)
  t.is(claimed.json.lease_ttl_ms, 60_000)
  t.deepEqual(linkOf(claimed.json, 'events/a'), { path: 'events/a', link_type: 'glob', acked_offset: '-1', tail_offset: offset(1), has_pending: true })

  const busy = await claim('w2')
  t.is(busy.status, 409)
  t.deepEqual(busy.json.error, { code: 'ALREADY_CLAIMED', message: busy.json.error.message, current_holder: 'w1', generation: claimed.json.generation })

  const ack = (body, token = claimed.json.token) => call(subs, 'POST', 'subscriptions/pw/ack', body, bearer(token))
  const base = { wake_id: claimed.json.wake_id, generation: claimed.json.generation }
  t.deepEqual((await ack(base)).json, { ok: true, next_wake: false }) // heartbeat
  t.is((await ack({ ...base, generation: base.generation + 1 })).json.error.code, 'FENCED')
  const done = await ack({ ...base, acks: [{ stream: 'events/a', offset: offset(1) }], done: true })
  t.deepEqual([done.status, done.json], [200, { ok: true, next_wake: false }])
  t.is((await ack({ ...base, done: true })).json.error.code, 'FENCED')

  // A claim right after an append finds the wake, announced or not.
  streams.append('events/a', 'two')
  const again = await claim('w1')
  t.is(again.status, 200)
  t.true(again.json.generation > claimed.json.generation)
  const release = await call(subs, 'POST', 'subscriptions/pw/release', { wake_id: again.json.wake_id, generation: again.json.generation }, bearer(again.json.token))
  t.is(release.status, 204)
  // Work is still pending, so the release announced another wake.
  await waitFor(() => streams.messages('wake/pool').some((e) => e.generation === again.json.generation + 1), 'a wake after release')
  const stale = await call(subs, 'POST', 'subscriptions/pw/release', { wake_id: again.json.wake_id, generation: again.json.generation }, bearer(again.json.token))
  t.is(stale.json.error.code, 'FENCED')
  t.is((await claim('w2')).status, 200)
})

test('an expired lease clears the holder and wakes pending work again', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('wake/pool')
  await put(subs, 'lease', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/pool', lease_ttl_ms: 1000 })
  streams.create('events/a', 'one')
  const claimed = await call(subs, 'POST', 'subscriptions/lease/claim', { worker: 'slow' })
  t.is(claimed.status, 200)
  await waitFor(() => streams.messages('wake/pool').some((e) => e.generation > claimed.json.generation), 'a new wake after expiry')
  const late = await call(subs, 'POST', 'subscriptions/lease/ack', { wake_id: claimed.json.wake_id, generation: claimed.json.generation, done: true }, bearer(claimed.json.token))
  t.is(late.status, 409)
  t.is(late.json.error.code, 'FENCED')
  t.is((await call(subs, 'POST', 'subscriptions/lease/claim', { worker: 'fast' })).status, 200)
})

test('restart keeps configuration, cursors, generation, leases, tokens and the signing key', async (t) => {
  const dir = path.join(tmpDir(t), 'subs')
  const streams = new FakeStreams()
  let clock = 1_000_000_000_000
  const now = () => clock
  const first = await open(t, { dir, streams, now })
  streams.create('wake/pool')
  await put(first.subs, 'keep', { type: 'pull-wake', pattern: 'events/**', streams: ['manual/x'], wake_stream: 'wake/pool', lease_ttl_ms: 5000, description: 'kept' })
  await put(first.subs, 'hook', { type: 'webhook', streams: ['manual/x'], webhook: { url: 'https://worker.example/h' } })
  streams.create('events/a/b', 'one', 'two')
  const claimed = await call(first.subs, 'POST', 'subscriptions/keep/claim', { worker: 'w1' })
  const base = { wake_id: claimed.json.wake_id, generation: claimed.json.generation }
  await call(first.subs, 'POST', 'subscriptions/keep/ack', { ...base, acks: [{ stream: 'events/a/b', offset: offset(1) }] }, bearer(claimed.json.token))
  const before = (await get(first.subs, 'keep')).json
  const kid = (await get(first.subs, 'hook')).json.webhook.signing.kid
  await first.subs.close()
  t.is((await get(first.subs, 'keep')).status, 503)
  if (process.platform !== 'win32') t.is(fs.statSync(path.join(dir, 'signing-key.json')).mode & 0o777, 0o600)

  const second = await open(t, { dir, streams, now })
  t.deepEqual((await get(second.subs, 'keep')).json, before)
  t.is(linkOf(before, 'events/a/b').acked_offset, offset(1))
  t.is((await get(second.subs, 'hook')).json.webhook.signing.kid, kid)
  t.is((await put(second.subs, 'keep', { type: 'pull-wake', pattern: 'events/**', streams: ['manual/x'], wake_stream: 'wake/pool', lease_ttl_ms: 5000, description: 'kept' })).status, 200)
  // The lease and the token survived: the holder still holds it, and can heartbeat.
  t.is((await call(second.subs, 'POST', 'subscriptions/keep/claim', { worker: 'w2' })).json.error.code, 'ALREADY_CLAIMED')
  t.is((await call(second.subs, 'POST', 'subscriptions/keep/ack', base, bearer(claimed.json.token))).status, 200)
  await second.subs.close()

  // Reopened after the lease ran out: the holder is gone and the pending work is woken again.
  clock += 60_000
  const wakesBefore = streams.messages('wake/pool').length
  const third = await open(t, { dir, streams, now })
  await waitFor(() => streams.messages('wake/pool').length > wakesBefore, 'a wake after restart')
  t.is(streams.messages('wake/pool').at(-1).generation, claimed.json.generation + 1)
  t.is((await call(third.subs, 'POST', 'subscriptions/keep/ack', base, bearer(claimed.json.token))).json.error.code, 'FENCED')
  const reclaimed = await call(third.subs, 'POST', 'subscriptions/keep/claim', { worker: 'w2' })
  t.is(reclaimed.status, 200)
  t.is(reclaimed.json.generation, claimed.json.generation + 1)
  t.deepEqual(third.errors, [])
})

test('a deleted subscription refuses its callbacks; a re-created one starts afresh', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('wake/pool')
  const config = { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/pool' }
  await put(subs, 'gone', config)
  streams.create('events/a', 'one')
  const claimed = await call(subs, 'POST', 'subscriptions/gone/claim', { worker: 'w' })
  const ackBody = { wake_id: claimed.json.wake_id, generation: claimed.json.generation, acks: [{ stream: 'events/a', offset: offset(1) }], done: true }
  t.is((await call(subs, 'DELETE', 'subscriptions/gone')).status, 204)
  t.is((await call(subs, 'POST', 'subscriptions/gone/ack', ackBody, bearer(claimed.json.token))).status, 404)

  t.is((await put(subs, 'gone', config)).status, 201)
  streams.append('events/a', 'two')
  const again = await call(subs, 'POST', 'subscriptions/gone/claim', { worker: 'w' })
  t.is(again.status, 200)
  // Same generation number and wake id would not help the old token: it names the old incarnation.
  const old = await call(subs, 'POST', 'subscriptions/gone/ack', { ...ackBody, wake_id: again.json.wake_id, generation: again.json.generation }, bearer(claimed.json.token))
  t.is(old.status, 401)
})

test('a failed durable write poisons the service: later requests answer 500, none reports state the disk lacks', async (t) => {
  const { subs, dir, errors } = await open(t)
  const config = { type: 'webhook', pattern: 'events/*', webhook: { url: 'https://worker.example/hooks' } }
  t.is((await put(subs, 'kept', config)).status, 201)
  // The records' folder becomes a file: the next durable write fails (ENOTDIR), as a disk error would.
  fs.rmSync(path.join(dir, 'subscriptions'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'subscriptions'), '')
  const failed = await put(subs, 'lost', config)
  t.is(failed.status, 500)
  t.true(errors.length > 0, 'the failure is reported')
  const later = await get(subs, 'lost')
  t.is(later.status, 500, 'the subscription that was never stored is not served from memory')
  t.is(later.json.error.code, 'STORAGE_FAILED')
  t.is((await get(subs, 'kept')).status, 500)
})

test('glob matching stays polynomial on patterns with many ** segments', async (t) => {
  t.timeout(60_000)
  // 12 `**`s against 200 segments: trying every split is ~1e19 steps. Run in a worker so that a
  // matcher that backtracks exponentially is stopped instead of hanging the test process.
  const pattern = `${Array(12).fill('**/a').join('/')}/b`
  const paths = [Array(200).fill('a').join('/'), `${Array(200).fill('a').join('/')}/b`]
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     import(workerData.module).then(({ globMatch }) => parentPort.postMessage(workerData.paths.map((p) => globMatch(workerData.pattern, p))))`,
    { eval: true, workerData: { module: new URL('../dist/stream-subscription-glob.js', import.meta.url).href, pattern, paths } },
  )
  let guard
  const answer = await Promise.race([
    new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject)),
    new Promise((resolve) => (guard = setTimeout(() => resolve('no answer'), 30_000))),
  ])
  clearTimeout(guard)
  await worker.terminate()
  t.deepEqual(answer, [false, true])
})

test('a pattern longer than 4096 bytes is refused', async (t) => {
  const { subs } = await open(t)
  const res = await put(subs, 'long', { type: 'pull-wake', pattern: `events/${'x'.repeat(4096)}`, wake_stream: 'wake/w' })
  t.is(res.status, 400)
  t.is(res.json.error.code, 'INVALID_REQUEST')
  t.is((await put(subs, 'long', { type: 'pull-wake', pattern: `events/${'x'.repeat(4000)}`, wake_stream: 'wake/w' })).status, 201)
})

test('webhook URL validation sees through IPv6 forms that embed or translate an IPv4 address', (t) => {
  for (const bad of [
    'https://[::7f00:1]/h', // IPv4-compatible ::127.0.0.1
    'https://[::127.0.0.1]/h',
    'https://[::a00:1]/h',
    'https://[::ffff:0:a00:1]/h', // IPv4-translated (SIIT) 10.0.0.1
    'https://[64:ff9b::a00:1]/h', // NAT64 to 10.0.0.1
    'https://[64:ff9b::7f00:1]/h',
    'https://[64:ff9b:1::1]/h', // local-use NAT64
    'https://[2002:a00:1::1]/h', // 6to4 around 10.0.0.1
    'https://[2002:7f00:1::1]/h',
    'https://[2001::1]/h', // Teredo
    'https://[fec0::1]/h', // site-local
    'https://[100::1]/h', // discard
    'https://[2001:db8::1]/h', // documentation
    'https://[0:0:0:0:0:ffff:192.168.0.1]/h',
  ]) {
    t.is(typeof webhookUrlProblem(bad), 'string', bad)
  }
  for (const ok of ['https://[2606:4700:4700::1111]/h', 'https://[2001:4860:4860::8888]/h', 'https://[::ffff:8.8.8.8]/h', 'https://[64:ff9b::808:808]/h', 'https://[2002:808:808::1]/h']) {
    t.is(webhookUrlProblem(ok), undefined, ok)
  }
})

test('a webhook answer is read only up to a size limit, and an oversized one does not finish the wake', async (t) => {
  const total = 16 << 20
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"done":true,"pad":"')
      let written = 0
      const chunk = 'x'.repeat(1 << 16)
      const pump = () => {
        while (!res.destroyed && written < total) {
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        if (!res.destroyed) res.end('"}')
      }
      pump()
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const outcome = await postWebhook(`http://127.0.0.1:${server.address().port}/hook`, '{}', 'sig', new AbortController().signal)
  t.deepEqual(outcome, { delivered: true, done: false })
})

test('a webhook delivery aborted before it starts is not sent', async (t) => {
  const hook = await receiver(t)
  const aborted = new AbortController()
  aborted.abort()
  const outcome = await postWebhook(hook.url, '{}', 'sig', aborted.signal)
  t.false(outcome.delivered)
  t.is(hook.received.length, 0)
})

test('a wake finished by callback while its delivery is retried leaves no retry schedule behind', async (t) => {
  const hook = await receiver(t, () => [500, {}])
  const { subs, streams } = await open(t)
  await put(subs, 'rc', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url } })
  streams.create('events/a', 'one')
  await waitFor(async () => (await get(subs, 'rc')).json.status === 'failed', 'status failed')
  // The receiver answered 500 but did the work, and calls back with the token it was sent.
  const wake = hook.received[0].body
  const body = { wake_id: wake.wake_id, generation: wake.generation, acks: [{ stream: 'events/a', offset: offset(1) }], done: true }
  const done = await call(subs, 'POST', 'subscriptions/rc/callback', body, bearer(wake.callback_token))
  t.deepEqual(done.json, { ok: true, next_wake: false })
  const sub = (await get(subs, 'rc')).json
  t.is(sub.status, 'active')
  t.is(linkOf(sub, 'events/a').acked_offset, offset(1))
})

test('glob links to deleted streams are dropped when the subscription is next saved', async (t) => {
  const { subs, streams, dir } = await open(t)
  streams.create('wake/pool')
  streams.create('events/a', 'one')
  streams.create('events/b', 'one')
  await put(subs, 'prune', { type: 'pull-wake', pattern: 'events/*', streams: ['events/gone-explicit'], wake_stream: 'wake/pool' })
  streams.delete('events/a')
  t.is((await call(subs, 'POST', 'subscriptions/prune/streams', { streams: ['manual/x'] })).status, 204)
  const expected = ['events/b', 'events/gone-explicit', 'manual/x']
  t.deepEqual((await get(subs, 'prune')).json.streams.map((s) => s.path), expected)
  await subs.close()
  const reopened = await open(t, { dir, streams })
  t.deepEqual((await get(reopened.subs, 'prune')).json.streams.map((s) => s.path), expected)
  // Created again, the stream is linked afresh and delivered from its start.
  streams.create('events/a', 'new')
  const claimed = await call(reopened.subs, 'POST', 'subscriptions/prune/claim', { worker: 'w' })
  t.is(claimed.status, 200)
  t.like(linkOf(claimed.json, 'events/a'), { acked_offset: '-1', has_pending: true })
})

test('a stream deleted and created again while the service was down is delivered from its start', async (t) => {
  const first = await open(t)
  const { streams, dir } = first
  streams.create('wake/pool')
  await put(first.subs, 'again', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/pool' })
  streams.create('events/a', 'one', 'two')
  const claimed = await call(first.subs, 'POST', 'subscriptions/again/claim', { worker: 'w' })
  const base = { wake_id: claimed.json.wake_id, generation: claimed.json.generation }
  const acked = await call(first.subs, 'POST', 'subscriptions/again/ack', { ...base, acks: [{ stream: 'events/a', offset: offset(2) }], done: true }, bearer(claimed.json.token))
  t.is(acked.status, 200)
  await first.subs.close()

  // Meanwhile the stream is replaced by a shorter one: its offsets start over below the cursor.
  streams.delete('events/a')
  streams.create('events/a', 'new')
  const { subs } = await open(t, { dir, streams })
  const again = await call(subs, 'POST', 'subscriptions/again/claim', { worker: 'w' })
  t.is(again.status, 200)
  t.like(linkOf(again.json, 'events/a'), { acked_offset: '-1', tail_offset: offset(1), has_pending: true })
})

test('an https webhook whose host name resolves to a local address is not contacted', async (t) => {
  // The URL check sees only a name; `localhost` stands for any name that points inside the network.
  const hook = await receiver(t)
  const port = new URL(hook.url).port
  const outcome = await postWebhook(`https://localhost:${port}/hook`, '{}', 'sig', new AbortController().signal)
  t.false(outcome.delivered)
  t.regex(outcome.reason, /localhost resolves to .*a private, loopback or link-local address/)
  t.is(hook.received.length, 0)
})

test('a linked stream deleted and created again with more data than the cursor is delivered from its start', async (t) => {
  const { subs, streams } = await open(t)
  streams.create('events/a', 'm1', 'm2', 'm3')
  streams.create('wake/w')
  t.is((await put(subs, 'p', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/w' })).status, 201)
  t.is(linkOf((await get(subs, 'p')).json, 'events/a').acked_offset, offset(3))
  streams.delete('events/a')
  streams.create('events/a', 'n1', 'n2', 'n3', 'n4', 'n5') // a new stream: its offsets start over
  await waitFor(() => streams.messages('wake/w').length === 1, 'a wake event')
  const link = linkOf((await get(subs, 'p')).json, 'events/a')
  t.true(link.acked_offset < offset(0), `the cursor starts over (${link.acked_offset}), so all five new messages are pending`)
})

test('a copy of the signing key left by a crash during its first save is removed at open', async (t) => {
  const dir = path.join(tmpDir(t), 'subs')
  fs.mkdirSync(dir, { recursive: true })
  const stray = path.join(dir, 'signing-key.json.tmp-0123456789abcdef')
  fs.writeFileSync(stray, '{"version":1}', { mode: 0o600 })
  const other = path.join(dir, 'notes.tmp-0123456789abcdef')
  fs.writeFileSync(other, 'not ours')
  const { subs } = await open(t, { dir })
  t.false(fs.existsSync(stray))
  t.true(fs.existsSync(other), 'only the key file\'s own temporaries are removed')
  t.true(fs.existsSync(path.join(dir, 'signing-key.json')))
  const kid = (await put(subs, 'hook', { type: 'webhook', streams: ['manual/x'], webhook: { url: 'https://worker.example/h' } })).json.webhook.signing.kid
  t.regex(kid, /^ds_/)
})

test('a cursor started over for a re-created stream is saved even with a wake in flight, so a restart keeps it', async (t) => {
  const dir = path.join(tmpDir(t), 'subs')
  const streams = new FakeStreams()
  const first = await open(t, { dir, streams })
  streams.create('events/a', 'm1', 'm2')
  streams.create('wake/w')
  await put(first.subs, 'p', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/w' })
  streams.create('events/b', 'x') // a wake now in flight, unclaimed
  await waitFor(() => streams.messages('wake/w').length === 1, 'a wake event')
  // events/a deleted and created again, longer: its cursor starts over in memory...
  streams.delete('events/a')
  streams.create('events/a', 'n1', 'n2', 'n3', 'n4')
  await waitFor(async () => linkOf((await get(first.subs, 'p')).json, 'events/a').acked_offset === '-1', 'the reset')
  await first.subs.close()
  // ...and on disk: after a restart, the new stream's offsets are not mistaken for the old one's.
  const second = await open(t, { dir, streams })
  t.is(linkOf((await get(second.subs, 'p')).json, 'events/a').acked_offset, '-1')
})

test("pull-wake subscriptions never link each other's wake streams, so their wakes cannot feed each other", async (t) => {
  const { subs, streams } = await open(t)
  streams.create('w/a')
  streams.create('w/b')
  await put(subs, 'A', { type: 'pull-wake', pattern: '**', wake_stream: 'w/a' })
  await put(subs, 'B', { type: 'pull-wake', pattern: '**', wake_stream: 'w/b' })
  streams.create('events/kick', 'k')
  await waitFor(() => streams.messages('w/a').length === 1 && streams.messages('w/b').length === 1, 'one wake each')
  // Each worker acks the data stream only; wake events appended to the other's wake stream are
  // not work for it.
  for (const id of ['A', 'B']) {
    const c = await call(subs, 'POST', `subscriptions/${id}/claim`, { worker: id })
    t.is(c.status, 200)
    t.deepEqual(c.json.streams.map((s) => s.path).sort(), ['events/kick'])
    const done = await call(subs, 'POST', `subscriptions/${id}/ack`, { wake_id: c.json.wake_id, generation: c.json.generation, acks: [{ stream: 'events/kick', offset: offset(1) }], done: true }, bearer(c.json.token))
    t.deepEqual(done.json, { ok: true, next_wake: false })
  }
  t.deepEqual([streams.messages('w/a').length, streams.messages('w/b').length], [1, 1])
})

test('a wake issued before its wake stream exists is announced once the stream is created', async (t) => {
  const { subs, streams, errors } = await open(t)
  await put(subs, 'p', { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/late' })
  streams.create('events/a', 'one')
  await waitFor(() => errors.length > 0, 'the unannounced wake to be reported')
  streams.create('wake/late')
  await waitFor(() => streams.messages('wake/late').length === 1, 'the wake announced on the new wake stream')
  t.is(streams.messages('wake/late')[0].type, 'wake')
})

test('plain-http webhooks to this machine can be turned off, and never point at the server itself', async (t) => {
  const streams = new FakeStreams()
  const dir = path.join(tmpDir(t), 'subs')
  const strict = await Subscriptions.open({ dir, streams, localWebhooks: false, onError: () => {} })
  t.teardown(() => strict.close())
  const refused = await put(strict, 'local', { type: 'webhook', pattern: 'events/*', webhook: { url: 'http://127.0.0.1:9999/hook' } })
  t.is(refused.status, 400)
  t.is(refused.json.error.code, 'WEBHOOK_URL_REJECTED')
  t.is((await put(strict, 'public', { type: 'webhook', pattern: 'events/*', webhook: { url: 'https://example.com/hook' } })).status, 201)
  // The server's own port (ROOT is http://127.0.0.1:4437/...), by any local name.
  const { subs } = await open(t)
  for (const url of ['http://127.0.0.1:4437/v1/stream/loop/a', 'http://localhost:4437/x']) {
    const self = await put(subs, 'self', { type: 'webhook', pattern: 'loop/*', webhook: { url } })
    t.is(self.json?.error?.code, 'WEBHOOK_URL_REJECTED', url)
  }
  t.is((await put(subs, 'dev', { type: 'webhook', pattern: 'events/*', webhook: { url: 'http://127.0.0.1:9999/hook' } })).status, 201)
})

test('subscriptions are bounded: their number, streams per request, pattern segments and description size', async (t) => {
  const streams = new FakeStreams()
  const subs = await Subscriptions.open({ dir: path.join(tmpDir(t), 'subs'), streams, maxSubscriptions: 2, onError: () => {} })
  t.teardown(() => subs.close())
  const ok = { type: 'pull-wake', pattern: 'events/*', wake_stream: 'wake/w' }
  const refusedWith = async (id, config) => {
    const r = await put(subs, id, config)
    return [r.status, r.json?.error?.code]
  }
  t.deepEqual(await refusedWith('d', { ...ok, description: 'x'.repeat(4097) }), [400, 'INVALID_REQUEST'])
  t.deepEqual(await refusedWith('s', { ...ok, streams: Array.from({ length: 1001 }, (_, i) => `s/${i}`) }), [400, 'INVALID_REQUEST'])
  t.deepEqual(await refusedWith('p', { ...ok, pattern: Array(33).fill('*').join('/') }), [400, 'INVALID_REQUEST'])
  t.is((await put(subs, 'one', { ...ok, description: 'x'.repeat(4096), pattern: Array(32).fill('*').join('/') })).status, 201)
  t.is((await put(subs, 'two', ok)).status, 201)
  t.deepEqual(await refusedWith('three', ok), [400, 'INVALID_REQUEST'])
  t.is((await put(subs, 'two', ok)).status, 200, 'an existing one is still confirmed')
})

test('a webhook delivery names the callback where the server is reached now, not where the subscription was made', async (t) => {
  const hook = await receiver(t, () => [200, { done: true }])
  const streams = new FakeStreams()
  const dir = path.join(tmpDir(t), 'subs')
  const first = await Subscriptions.open({ dir, streams, onError: () => {} })
  t.is((await put(first, 'w', { type: 'webhook', pattern: 'events/*', webhook: { url: hook.url } })).status, 201)
  await first.close()
  // Restarted behind a proxy (or on another port): the callback follows.
  const moved = 'https://streams.example.com/v1/stream/'
  const second = await Subscriptions.open({ dir, streams, rootUrl: moved, onError: () => {} })
  t.teardown(() => second.close())
  streams.create('events/a', 'one')
  await waitFor(() => hook.received.length > 0, 'a delivery')
  t.is(hook.received[0].body.callback_url, `${moved}__ds/subscriptions/w/callback`)
})
