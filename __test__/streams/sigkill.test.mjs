// Real crashes under load: the server runs as a child process through its CLI; writers append
// numbered messages to a few streams while the parent SIGKILLs the server at random moments and
// restarts it on the same directory and port. At the end every stream is read from offset -1:
// every acknowledged append must be there exactly once and in order.
//
// Two kinds of writer:
// - idempotent producers (@durable-streams/client IdempotentProducer) behind a fetch that retries
//   every failed request (connection refused or reset, 5xx) with the same Producer-Epoch and
//   Producer-Seq until the server answers. A batch can be committed and its response lost to the
//   kill; the retry must then be recognised as a duplicate (204) from producer state that was
//   committed atomically with the data. So each message must end up in its stream exactly once,
//   acknowledged or not, with nothing lost.
// - plain appends (DurableStream.append, no producer headers) that are never retried: an
//   unacknowledged one may be there or not, an acknowledged one must be there, none twice.
import { DurableStream, IdempotentProducer } from '@durable-streams/client'
import { afterAll, beforeAll, expect, test } from 'vitest'

import { freePort, readAll, readAllJson, sleep, spawnServer, TARGET, tempDir } from './helpers.mjs'

const KILLS = Number(process.env.STREAMS_KILLS ?? 10)
const RETRY_GIVE_UP_MS = 60_000 // a request still failing after this long fails the test
const MAX_UNACKED = 200 // per idempotent producer: stop appending while this many are unacknowledged

const STREAMS = [
  { name: 'crash-json-a', contentType: 'application/json', producers: ['P0', 'P1'], plain: ['W0'] },
  { name: 'crash-json-b', contentType: 'application/json', producers: ['P2'], plain: ['W1'] },
  { name: 'crash-text-c', contentType: 'text/plain', producers: ['P3'], plain: ['W2'] },
]

let tmp
let port
let server

beforeAll(async () => {
  tmp = tempDir('sturdy-streams-sigkill-')
  port = await freePort()
  server = await spawnServer({ dir: tmp.dir, port })
})

afterAll(async () => {
  await server?.stop('SIGKILL')
  tmp?.cleanup()
})

/** Encode message `n` of writer `id` for a stream of `contentType`. */
function encode(contentType, id, n) {
  return contentType === 'application/json' ? JSON.stringify({ w: id, n }) : `${id}:${n}\n`
}

/** The `{ w, n }` messages in a request body or a stream's content. */
function decodeMessages(contentType, text) {
  if (contentType === 'application/json') {
    const v = JSON.parse(text)
    return Array.isArray(v) ? v : [v]
  }
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const m = /^([A-Z]\d+):(\d+)$/.exec(line)
      if (!m) throw new Error(`unexpected line in text stream: ${JSON.stringify(line)}`)
      return { w: m[1], n: Number(m[2]) }
    })
}

function bodyText(body) {
  if (typeof body === 'string') return body
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')
  if (body instanceof ArrayBuffer) return Buffer.from(body).toString('utf8')
  throw new Error(`unexpected request body type ${Object.prototype.toString.call(body)}`)
}

test(`acknowledged appends survive ${KILLS} SIGKILLs of the ${TARGET} server, exactly once and in order`, async () => {
  const base = `http://127.0.0.1:${port}/v1/stream/`
  const acked = new Map() // writer id -> Set of acknowledged n
  const sent = new Map() // writer id -> how many messages it appended (n = 0 .. sent-1)
  const failedPlain = new Map() // plain writer id -> appends that failed (not acknowledged)
  const producerErrors = []
  let inFlight = 0
  let killedInFlight = 0 // requests in flight at the moments of the kills
  let retries = 0
  let duplicates = 0 // producer batches the server answered 204: already stored, e.g. before a kill
  const ack = (id, n) => acked.get(id).add(n)

  // A fetch for the idempotent producers: retries failed requests as they are, records acks.
  const retryingFetch = (contentType) => async (url, init) => {
    const started = Date.now()
    for (;;) {
      inFlight++
      let res
      try {
        res = await fetch(url, init)
      } catch (err) {
        res = undefined
        if (Date.now() - started > RETRY_GIVE_UP_MS) throw err
      } finally {
        inFlight--
      }
      if (res && res.status < 500) {
        if (res.status === 204) duplicates++
        if ((res.status === 200 || res.status === 204) && init?.method === 'POST' && init.body !== undefined) {
          for (const m of decodeMessages(contentType, bodyText(init.body))) ack(m.w, m.n)
        }
        return res
      }
      if (res) {
        await res.arrayBuffer().catch(() => {})
        if (Date.now() - started > RETRY_GIVE_UP_MS) return res
      }
      retries++
      await sleep(20 + Math.random() * 30)
    }
  }

  for (const s of STREAMS) {
    const res = await fetch(base + s.name, { method: 'PUT', headers: { 'content-type': s.contentType } })
    expect(res.status).toBe(201)
    for (const id of [...s.producers, ...s.plain]) {
      acked.set(id, new Set())
      sent.set(id, 0)
    }
    for (const id of s.plain) failedPlain.set(id, 0)
  }

  let stop = false
  const producers = []
  const loops = []
  for (const s of STREAMS) {
    for (const id of s.producers) {
      const stream = new DurableStream({ url: base + s.name, contentType: s.contentType })
      const producer = new IdempotentProducer(stream, `crash-${id}`, {
        fetch: retryingFetch(s.contentType),
        lingerMs: 2,
        maxInFlight: 3,
        maxBatchBytes: 2048,
        onError: (err) => producerErrors.push(`${id}: ${err?.message ?? err}`),
      })
      producers.push({ id, producer })
      loops.push(
        (async () => {
          let n = 0
          while (!stop) {
            while (!stop && n - acked.get(id).size >= MAX_UNACKED) await sleep(5)
            if (stop) break
            producer.append(encode(s.contentType, id, n))
            n++
            sent.set(id, n)
            if (n % 10 === 0) await sleep(Math.random() * 4)
          }
        })(),
      )
    }
    for (const id of s.plain) {
      const stream = new DurableStream({
        url: base + s.name,
        contentType: s.contentType,
        batching: false,
        // No retries: a plain append is not idempotent, so a retry could store it twice.
        backoffOptions: { initialDelay: 1, maxDelay: 1, multiplier: 1, maxRetries: 0 },
      })
      loops.push(
        (async () => {
          let n = 0
          while (!stop) {
            const body = encode(s.contentType, id, n)
            sent.set(id, n + 1)
            inFlight++
            try {
              await stream.append(body)
              ack(id, n)
            } catch {
              failedPlain.set(id, failedPlain.get(id) + 1)
              await sleep(10 + Math.random() * 20)
            } finally {
              inFlight--
            }
            n++
          }
        })(),
      )
    }
  }

  const totalAcks = () => [...acked.values()].reduce((sum, set) => sum + set.size, 0)
  const progress = []
  for (let kill = 0; kill < KILLS; kill++) {
    const before = totalAcks()
    // Let the writers make progress, then kill at a random moment.
    const until = Date.now() + 30_000
    while (totalAcks() < before + 50 && Date.now() < until) await sleep(20)
    await sleep(Math.random() * 400)
    killedInFlight += inFlight
    server.proc.kill('SIGKILL')
    const { signal } = await server.exited
    expect(signal).toBe('SIGKILL')
    progress.push(totalAcks() - before)
    await sleep(Math.random() * 200)
    server = await spawnServer({ dir: tmp.dir, port })
  }

  // Stop appending, wait for every idempotent batch to be acknowledged.
  await sleep(300)
  stop = true
  await Promise.all(loops)
  await Promise.all(producers.map(({ producer }) => producer.flush()))
  await Promise.all(producers.map(({ producer }) => producer.detach()))

  // One last crash after everything was acknowledged, so the final acks must be durable too.
  server.proc.kill('SIGKILL')
  await server.exited
  server = await spawnServer({ dir: tmp.dir, port })

  let checked = 0
  let unackedPresent = 0
  const report = []
  for (const s of STREAMS) {
    let messages
    if (s.contentType === 'application/json') {
      messages = await readAllJson(base + s.name)
    } else {
      const r = await readAll(base + s.name)
      expect(r.status).toBe(200)
      messages = decodeMessages(s.contentType, r.body.toString('utf8'))
    }
    const byWriter = new Map()
    for (const m of messages) {
      expect(acked.has(m.w), `${s.name}: message from unknown writer ${JSON.stringify(m)}`).toBe(true)
      if (!byWriter.has(m.w)) byWriter.set(m.w, [])
      byWriter.get(m.w).push(m.n)
    }
    for (const id of [...s.producers, ...s.plain]) {
      const ns = byWriter.get(id) ?? []
      const present = new Set(ns)
      // Never twice.
      const dups = ns.filter((n, i) => ns.indexOf(n) !== i)
      expect.soft(dups.slice(0, 20), `${s.name}/${id}: duplicated messages`).toEqual([])
      // In the order they were appended.
      const outOfOrder = ns.filter((n, i) => i > 0 && n <= ns[i - 1]).slice(0, 10)
      expect.soft(outOfOrder, `${s.name}/${id}: messages stored after a later one`).toEqual([])
      // Nothing that was never sent.
      const neverSent = ns.filter((n) => !(Number.isInteger(n) && n >= 0 && n < sent.get(id))).slice(0, 10)
      expect.soft(neverSent, `${s.name}/${id}: messages that were never sent`).toEqual([])
      // Every acknowledged one.
      const missing = [...acked.get(id)].filter((n) => !present.has(n))
      expect.soft(missing.slice(0, 20), `${s.name}/${id}: acknowledged messages missing after the crashes`).toEqual([])
      checked += acked.get(id).size
      unackedPresent += ns.filter((n) => !acked.get(id).has(n)).length
      if (s.producers.includes(id)) {
        // Retried until acknowledged: every message the producer appended is there, once.
        expect.soft(acked.get(id).size, `${s.name}/${id}: idempotent appends never acknowledged`).toBe(sent.get(id))
        expect.soft(ns.length, `${s.name}/${id}: stored count`).toBe(sent.get(id))
      }
      report.push(`${id} ${acked.get(id).size}/${sent.get(id)} acked, ${ns.length} stored`)
    }
  }

  console.log(
    `[sigkill ${TARGET}] ${KILLS + 1} kills, ${killedInFlight} requests in flight at the kills, ${retries} producer retries, ${duplicates} answered as duplicates; ` +
      `${checked} acknowledged appends checked (${unackedPresent} unacknowledged plain appends stored); ` +
      `acks between kills: ${progress.join(' ')}; ${report.join('; ')}; ` +
      `failed plain appends: ${[...failedPlain].map(([id, c]) => `${id}=${c}`).join(' ')}`,
  )
  expect(producerErrors).toEqual([])
  // The kills must have hit writers at work, or the test proved nothing.
  expect(progress.every((p) => p > 0)).toBe(true)
  expect(killedInFlight).toBeGreaterThan(0)
  expect(checked).toBeGreaterThan(KILLS * 50)
}, 600_000)
