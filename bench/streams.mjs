// Durable Streams over HTTP: sturdy's createStreamServer against the reference server
// (@durable-streams/server with a dataDir), measured in the same run on the same disk.
//
// Each server runs in its own child process, so the load generator (64 undici connections in
// this process) does not share an event loop with it. Every append is a POST of an
// application/octet-stream body and counts only once the server has answered 2xx, which for both
// servers means the bytes were fdatasync'd (see DURABILITY below). After each run the stream is
// read back over HTTP and must hold exactly the acknowledged appends; otherwise no number is
// printed for that run.
//
//   node bench/streams.mjs                    # one-1k many-1k one-100 many-100, both servers
//   node bench/streams.mjs one-1k json        # only some shapes (json: 64 conns, one JSON stream)
//   BENCH_SECONDS=5 BENCH_ROUNDS=3 node bench/streams.mjs
//   BENCH_SERVERS=reference node bench/streams.mjs
//   BENCH_SERVERS=sturdy,reference,memory node bench/streams.mjs   # + the in-memory ceiling
//
// Env: BENCH_SECONDS (measured, default 3), BENCH_WARMUP (default 1), BENCH_ROUNDS (default 1;
// rounds alternate the servers, medians are reported), BENCH_CONNECTIONS (default 64).
import { fork } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { scratchDir } from './scratch.mjs'

const self = fileURLToPath(import.meta.url)
const here = path.dirname(self)

// ---------------------------------------------------------------------------------------------
// Child: one server, driven over IPC.
const servers = {
  async sturdy(dir) {
    const m = await import('../dist/index.mjs')
    if (typeof m.createStreamServer !== 'function') throw new Error('dist/index.mjs has no createStreamServer export (run npm run build)')
    const s = await m.createStreamServer({ dir, host: '127.0.0.1', port: 0 })
    return { url: s.url, close: () => s.close() }
  },
  async reference(dir) {
    const { DurableStreamTestServer } = await import('@durable-streams/server')
    const s = new DurableStreamTestServer({ port: 0, host: '127.0.0.1', dataDir: dir })
    await s.start()
    return { url: s.url, close: () => s.stop() }
  },
  // Opt-in (BENCH_SERVERS=...,memory): the reference without a dataDir, nothing durable; the
  // ceiling of HTTP + this load generator on this machine.
  async memory() {
    const { DurableStreamTestServer } = await import('@durable-streams/server')
    const s = new DurableStreamTestServer({ port: 0, host: '127.0.0.1' })
    await s.start()
    return { url: s.url, close: () => s.stop() }
  },
}

if (process.argv[2] === '--serve') {
  const [, , , kind, dir] = process.argv
  try {
    const server = await servers[kind](dir)
    process.on('message', async (msg) => {
      if (msg === 'cpu') process.send({ cpu: process.cpuUsage() })
      if (msg === 'stop') {
        await server.close()
        process.send({ stopped: true }, () => process.exit(0))
      }
    })
    process.on('disconnect', () => process.exit(0))
    process.send({ url: server.url })
  } catch (e) {
    process.send({ error: String(e?.message ?? e).split('\n')[0] }, () => process.exit(1))
  }
} else {
  await main()
}

// ---------------------------------------------------------------------------------------------
// Parent: the load generator.
async function main() {
  const { Client } = await import('undici')

  const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
  const WARMUP = Number(process.env.BENCH_WARMUP ?? 1)
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1)
  const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64)
  const serverNames = (process.env.BENCH_SERVERS ?? 'sturdy,reference').split(',')

  const SHAPES = {
    'one-1k': { title: `${CONNECTIONS} connections → one stream, 1 KiB octet-stream`, streams: 1, size: 1024 },
    'many-1k': { title: `${CONNECTIONS} connections → ${CONNECTIONS} streams (one each), 1 KiB`, streams: CONNECTIONS, size: 1024 },
    'one-100': { title: `${CONNECTIONS} connections → one stream, 100 B octet-stream`, streams: 1, size: 100 },
    'many-100': { title: `${CONNECTIONS} connections → ${CONNECTIONS} streams (one each), 100 B`, streams: CONNECTIONS, size: 100 },
    json: { title: `${CONNECTIONS} connections → one application/json stream, ~100 B objects`, streams: 1, size: 100, json: true },
  }
  const DEFAULT_SHAPES = ['one-1k', 'many-1k', 'one-100', 'many-100']
  const args = process.argv.slice(2)
  for (const a of args) if (!SHAPES[a]) throw new Error(`unknown shape ${a}: one of ${Object.keys(SHAPES).join(', ')}`)
  const shapes = args.length ? args : DEFAULT_SHAPES

  // What a 2xx to an append means, for each server (the comparison's honesty depends on it).
  const DURABILITY = {
    sturdy: 'one WAL record per append (data, offset and producer state together) in its shard\'s WAL, fdatasync\'d by group commit before the 2xx',
    reference:
      'fdatasync of the stream\'s segment file before the 2xx, one per append, appends to one stream serialised; ' +
      'its LMDB metadata (offset, producer state) is committed without waiting for its flush (lmdb overlappingSync) and is reconciled from the file on restart',
    memory: 'nothing durable (the reference without a dataDir): the HTTP + load-generator ceiling, not a peer',
  }

  const children = new Set()
  const { fresh } = scratchDir('streams-bench', () => {
    for (const c of children) c.kill('SIGKILL')
  })

  /** Starts `kind` in a child process with a fresh data dir; resolves to its handle. */
  async function start(kind) {
    const dir = fresh(`${kind}-`)
    const child = fork(self, ['--serve', kind, dir], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    children.add(child)
    // Keep the tail of its output for error reports; a pipe nobody reads would block the child.
    let log = ''
    const keep = (d) => {
      log = (log + d).slice(-4000)
    }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    const next = () =>
      new Promise((resolve, reject) => {
        const onExit = (code) => reject(new Error(`${kind} server exited (${code}): ${log.trim().split('\n').slice(-5).join(' | ')}`))
        child.once('exit', onExit)
        child.once('message', (m) => {
          child.off('exit', onExit)
          resolve(m)
        })
      })
    const hello = await next()
    if (hello.error) {
      children.delete(child)
      fs.rmSync(dir, { recursive: true, force: true })
      return { error: hello.error }
    }
    return {
      url: hello.url,
      log: () => log,
      async cpu() {
        child.send('cpu')
        const { cpu } = await next()
        return (cpu.user + cpu.system) / 1e6
      },
      async stop() {
        child.send('stop')
        await next()
        await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)))
        children.delete(child)
        fs.rmSync(dir, { recursive: true, force: true }) // the disk may be small: one store at a time
      },
    }
  }

  const streamPath = (shape, i) => `/v1/stream/bench-${shape}-${i}`

  /** Reads a whole stream back over HTTP, following Stream-Next-Offset until up to date. */
  async function readAll(client, p, json) {
    let offset = '-1'
    let bytes = 0
    let items = 0
    let bad = 0
    for (let i = 0; i < 1e6; i++) {
      const res = await client.request({ path: `${p}?offset=${encodeURIComponent(offset)}`, method: 'GET', headers: { 'accept-encoding': 'identity' } })
      const body = Buffer.from(await res.body.arrayBuffer())
      if (res.statusCode !== 200 && res.statusCode !== 204) throw new Error(`GET ${p}: HTTP ${res.statusCode} ${body.toString().slice(0, 200)}`)
      if (json) {
        const arr = body.length ? JSON.parse(body.toString()) : []
        items += arr.length
        for (const o of arr) if (o?.pad?.length === undefined) bad++
      } else {
        bytes += body.length
        for (const b of body) if (b !== 0x61) bad++
      }
      const next = res.headers['stream-next-offset']
      const upToDate = res.headers['stream-up-to-date'] === 'true'
      if (upToDate || next === offset || next === undefined) return { bytes, items, bad, offset: next }
      offset = next
    }
    throw new Error(`GET ${p}: never up to date`)
  }

  async function head(client, p) {
    const res = await client.request({ path: p, method: 'HEAD' })
    await res.body.dump()
    if (res.statusCode !== 200) throw new Error(`HEAD ${p}: HTTP ${res.statusCode}`)
    return res.headers['stream-next-offset']
  }

  /** One run of one shape against one server. Returns the numbers, or { failed }. */
  async function run(kind, shapeName) {
    const shape = SHAPES[shapeName]
    const server = await start(kind)
    if (server.error) return { skipped: server.error }
    const clients = Array.from({ length: CONNECTIONS }, () => new Client(server.url, { pipelining: 1, keepAliveTimeout: 60_000 }))
    try {
      const contentType = shape.json ? 'application/json' : 'application/octet-stream'
      const body = shape.json
        ? Buffer.from(JSON.stringify({ pad: 'a'.repeat(shape.size - 10) }))
        : Buffer.alloc(shape.size, 0x61)
      const paths = Array.from({ length: shape.streams }, (_, i) => streamPath(shapeName, i))
      const before = []
      for (const p of paths) {
        const res = await clients[0].request({ path: p, method: 'PUT', headers: { 'content-type': contentType } })
        const text = await res.body.text()
        if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`PUT ${p}: HTTP ${res.statusCode} ${text.slice(0, 200)}`)
        before.push(await head(clients[0], p))
      }

      const acked = new Array(shape.streams).fill(0)
      const lat = []
      let failures = 0
      let firstFailure
      let measured = 0
      const t0 = performance.now()
      const tMeasure = t0 + WARMUP * 1000
      const tEnd = tMeasure + SECONDS * 1000
      let cpu0
      let clientCpu0
      const cpuAtMeasure = (async () => {
        await new Promise((r) => setTimeout(r, Math.max(0, tMeasure - performance.now())))
        cpu0 = await server.cpu()
        clientCpu0 = process.cpuUsage()
      })()
      await Promise.all(
        clients.map(async (client, c) => {
          const s = c % shape.streams
          const p = paths[s]
          for (;;) {
            const t = performance.now()
            if (t >= tEnd) return
            const inWindow = t >= tMeasure
            let res
            try {
              res = await client.request({ path: p, method: 'POST', headers: { 'content-type': contentType }, body })
              await res.body.dump()
            } catch (e) {
              failures++
              firstFailure ??= e.message
              continue
            }
            if (res.statusCode !== 204 && res.statusCode !== 200) {
              failures++
              firstFailure ??= `HTTP ${res.statusCode}`
              continue
            }
            acked[s]++
            const done = performance.now()
            // Counted if it was sent inside the window and answered before its end.
            if (inWindow && done <= tEnd) {
              measured++
              lat.push(done - t)
            }
          }
        }),
      )
      await cpuAtMeasure
      const clientCpu = process.cpuUsage(clientCpu0)
      const cpu1 = await server.cpu()
      const rate = measured / SECONDS
      lat.sort((a, b) => a - b)

      // Check: the server holds exactly the acknowledged appends, and the tail moved.
      const problems = []
      if (failures) problems.push(`${failures} appends failed (first: ${firstFailure})`)
      for (let s = 0; s < shape.streams; s++) {
        const got = await readAll(clients[0], paths[s], shape.json)
        const after = await head(clients[0], paths[s])
        if (acked[s] > 0 && after === before[s]) problems.push(`${paths[s]}: Stream-Next-Offset did not move (${after})`)
        if (got.offset !== after) problems.push(`${paths[s]}: read ended at ${got.offset}, HEAD says ${after}`)
        if (shape.json) {
          if (got.items !== acked[s]) problems.push(`${paths[s]}: ${got.items} JSON messages read back, ${acked[s]} acknowledged`)
        } else if (got.bytes !== acked[s] * shape.size) {
          problems.push(`${paths[s]}: ${got.bytes} bytes read back, ${acked[s]} × ${shape.size} = ${acked[s] * shape.size} acknowledged`)
        }
        if (got.bad) problems.push(`${paths[s]}: ${got.bad} corrupt bytes/messages read back`)
      }
      if (measured === 0) problems.push('no append acknowledged in the measured window')
      if (problems.length) return { failed: problems.slice(0, 5).join('; ') }
      return {
        rate,
        p50: lat[lat.length >> 1],
        p99: lat[Math.floor(lat.length * 0.99)],
        cpuPerAppend: ((cpu1 - cpu0) / measured) * 1e6,
        clientCpuPerAppend: (clientCpu.user + clientCpu.system) / measured,
        total: acked.reduce((a, b) => a + b, 0),
      }
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})))
      await server.stop()
    }
  }

  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const fmt = (v) => Math.round(v).toLocaleString('en-US')
  const ms = (v) => (v >= 10 ? v.toFixed(1) : v.toFixed(2))

  console.log('\nDurable Streams over HTTP: durable appends/s, each POST acknowledged (2xx) and then read back')
  console.log(
    `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, load avg ${os.loadavg()[0].toFixed(2)}; ` +
      `${CONNECTIONS} undici connections, ${WARMUP}s warm-up + ${SECONDS}s measured × ${ROUNDS} round(s)${ROUNDS > 1 ? ' (medians)' : ''}`,
  )
  console.log('each server in its own process, the client in this one (they share the machine\'s cores)\n')

  const names = { sturdy: 'sturdy createStreamServer', reference: '@durable-streams/server (dataDir)', memory: '@durable-streams/server (in memory)' }
  const skipped = {}
  for (const shapeName of shapes) {
    const runs = Object.fromEntries(serverNames.map((k) => [k, []]))
    const failed = {}
    for (let r = 0; r < ROUNDS; r++) {
      for (const kind of serverNames) {
        if (skipped[kind] || failed[kind]) continue
        let res
        try {
          res = await run(kind, shapeName)
        } catch (e) {
          res = { failed: String(e?.message ?? e).split('\n')[0] }
        }
        if (res.skipped) skipped[kind] = res.skipped
        else if (res.failed) failed[kind] = res.failed
        else runs[kind].push(res)
      }
    }
    console.log(SHAPES[shapeName].title)
    const summary = {}
    for (const kind of serverNames) {
      const label = (names[kind] ?? kind).padEnd(36)
      if (skipped[kind]) {
        console.log(`  ${label} skipped: ${skipped[kind]}`)
        continue
      }
      if (failed[kind]) {
        console.log(`  ${label} FAILED verification, no number: ${failed[kind]}`)
        continue
      }
      const rs = runs[kind]
      const s = (summary[kind] = { rate: median(rs.map((x) => x.rate)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), cpu: median(rs.map((x) => x.cpuPerAppend)), clientCpu: median(rs.map((x) => x.clientCpuPerAppend)) })
      const all = rs.length > 1 ? `   (runs: ${rs.map((x) => fmt(x.rate)).join(', ')})` : ''
      console.log(`  ${label} ${fmt(s.rate).padStart(8)} appends/s   p50 ${ms(s.p50).padStart(6)} ms   p99 ${ms(s.p99).padStart(6)} ms   CPU/append: server ${fmt(s.cpu).padStart(4)} µs, client ${fmt(s.clientCpu).padStart(3)} µs${all}`)
    }
    if (summary.sturdy && summary.reference) console.log(`  ratio sturdy/reference              ${(summary.sturdy.rate / summary.reference.rate).toFixed(2)}×`)
    console.log()
  }
  console.log('What a 2xx means:')
  for (const kind of serverNames) if (!skipped[kind]) console.log(`  ${kind}: ${DURABILITY[kind]}`)
  console.log('Every acknowledged append was read back over HTTP (GET from offset -1 until Stream-Up-To-Date) and counted before a number was printed.')
}
