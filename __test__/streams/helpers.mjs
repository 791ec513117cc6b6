// Shared helpers for the Durable Streams tests: start the server under test (in process or as a
// child process through the CLI), free ports, raw reads, process memory.
//
// STREAMS_TARGET picks the server: `sturdy` (default) is ours, from the built dist/ of this
// repository; `reference` is the upstream @durable-streams/server, which is not a dependency of
// this package (it pulls in lmdb): install it with
//   npm i --no-save @durable-streams/server@0.3.7 --prefix __test__/streams
// or point STREAMS_REFERENCE_DIR at a folder whose node_modules holds it.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const HERE = path.dirname(fileURLToPath(import.meta.url))
export const REPO = path.resolve(HERE, '..', '..')
export const TARGET = process.env.STREAMS_TARGET ?? 'sturdy'
if (TARGET !== 'sturdy' && TARGET !== 'reference') throw new Error(`STREAMS_TARGET must be sturdy or reference, not ${TARGET}`)

export const HOST = '127.0.0.1'

/** A fresh temporary directory; `cleanup()` removes it. */
export function tempDir(prefix = 'sturdy-streams-') {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** The upstream reference server's module (only for STREAMS_TARGET=reference). */
export async function referenceModule() {
  try {
    return await import('@durable-streams/server')
  } catch (err) {
    const from = process.env.STREAMS_REFERENCE_DIR
    if (!from) {
      throw new Error(
        'STREAMS_TARGET=reference needs @durable-streams/server: npm i --no-save @durable-streams/server@0.3.7 --prefix __test__/streams (or set STREAMS_REFERENCE_DIR)',
        { cause: err },
      )
    }
    const require = createRequire(path.join(path.resolve(from), 'noop.js'))
    const pkgJson = require.resolve('@durable-streams/server/package.json')
    return import(pathToFileURL(path.join(path.dirname(pkgJson), 'dist', 'index.js')).href)
  }
}

/**
 * Start the server under test in this process on `dir`, port 0.
 * Resolves to `{ url, streamsUrl, close }`.
 */
export async function startServer({ dir, longPollTimeoutMs, maxBodyBytes } = {}) {
  if (TARGET === 'reference') {
    const { DurableStreamTestServer } = await referenceModule()
    const server = new DurableStreamTestServer({
      port: 0,
      host: HOST,
      dataDir: dir,
      webhooks: true,
      ...(longPollTimeoutMs !== undefined ? { longPollTimeout: longPollTimeoutMs } : {}),
    })
    await server.start()
    const url = server.url.replace(/\/$/, '')
    return { url, streamsUrl: `${url}/v1/stream/`, close: () => server.stop(), reference: true }
  }
  const mod = await import(pathToFileURL(path.join(REPO, 'dist', 'index.mjs')).href)
  if (typeof mod.createStreamServer !== 'function') {
    throw new Error('dist/index.mjs does not export createStreamServer: build the repository first (npm run build)')
  }
  const opts = { dir, host: HOST, port: 0 }
  if (longPollTimeoutMs !== undefined) opts.longPollTimeoutMs = longPollTimeoutMs
  if (maxBodyBytes !== undefined) opts.maxBodyBytes = maxBodyBytes
  const server = await mod.createStreamServer(opts)
  return { ...server, url: server.url.replace(/\/$/, ''), close: () => server.close(), reference: false }
}

/** Listen on `port` (0: any) and close again: the port it listened on, or undefined if taken. */
async function probePort(port) {
  const srv = net.createServer()
  const listening = await new Promise((resolve) => {
    srv.once('error', () => resolve(false))
    srv.listen(port, HOST, () => resolve(true))
  })
  if (!listening) return undefined
  const bound = srv.address().port
  srv.close()
  await once(srv, 'close')
  return bound
}

/**
 * A TCP port that was free a moment ago, below the ephemeral range: a server restarted on it must
 * not find it taken by a client's outgoing connection (a connection to our own port can even
 * connect to itself). Any free port if there is no room below the range.
 */
export async function freePort() {
  let low = 32768
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low
  } catch {
    // not Linux: keep the usual lower bound
  }
  const from = Math.max(1024, Math.min(20000, low - 1000))
  for (let attempt = 0; from < low && attempt < 100; attempt++) {
    const port = await probePort(from + Math.floor(Math.random() * (low - from)))
    if (port !== undefined) return port
  }
  return probePort(0)
}

/**
 * Start the server as a child process through its CLI on `dir` and `port`; resolves once it has
 * printed its listening URL. Returns `{ proc, pid, url, streamsUrl, exited, stop(signal) }`.
 */
export async function spawnServer({ dir, port, readyTimeoutMs = 30_000 }) {
  const args =
    TARGET === 'reference'
      ? [path.join(HERE, 'reference-cli.mjs'), 'serve', '--dir', dir, '--host', HOST, '--port', String(port)]
      : [path.join(REPO, 'dist', 'cli', 'main.js'), 'serve', '--dir', dir, '--host', HOST, '--port', String(port)]
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const url = `http://${HOST}:${port}`
  let out = ''
  let err = ''
  // 'close' comes after the child's output has been read, so a failure message shows all of it.
  const exited = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })))
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d) => {
    err += d
    if (err.length > 20_000) err = err.slice(-10_000)
  })
  proc.stdout.setEncoding('utf8')
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not print ${url} within ${readyTimeoutMs} ms; stdout: ${out} stderr: ${err}`)), readyTimeoutMs)
    proc.stdout.on('data', (d) => {
      if (out.length < 20_000) out += d
      if (out.includes(url)) {
        clearTimeout(timer)
        resolve()
      }
    })
    exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening; stdout: ${out} stderr: ${err}`))
    })
  })
  ready.catch(() => {})
  try {
    await ready
  } catch (e) {
    proc.kill('SIGKILL')
    throw e
  }
  return {
    proc,
    pid: proc.pid,
    url,
    streamsUrl: `${url}/v1/stream/`,
    exited,
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    },
  }
}

/** Resident set size of a (Linux) process in bytes, from /proc. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (!m) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1]) * 1024
}

/**
 * Read a whole stream from offset -1 with plain catch-up GETs, following Stream-Next-Offset until
 * Stream-Up-To-Date. Returns `{ body: Buffer, chunks: Buffer[], offset, contentType, status }`.
 */
export async function readAll(streamUrl, { maxRequests = 100_000 } = {}) {
  let offset = '-1'
  const chunks = []
  let contentType
  for (let i = 0; i < maxRequests; i++) {
    const res = await fetch(`${streamUrl}?offset=${encodeURIComponent(offset)}`)
    if (res.status !== 200) {
      const text = await res.text()
      return { status: res.status, body: Buffer.from(text), chunks, offset, contentType }
    }
    contentType = res.headers.get('content-type')
    chunks.push(Buffer.from(await res.arrayBuffer()))
    const next = res.headers.get('stream-next-offset')
    if (!next) throw new Error(`${streamUrl}: 200 without Stream-Next-Offset`)
    const upToDate = res.headers.get('stream-up-to-date') === 'true'
    offset = next
    if (upToDate) return { status: 200, body: Buffer.concat(chunks), chunks, offset, contentType }
  }
  throw new Error(`${streamUrl}: not up to date after ${maxRequests} reads`)
}

/** All messages of a JSON stream, read from offset -1 (each catch-up response is a JSON array). */
export async function readAllJson(streamUrl) {
  const r = await readAll(streamUrl)
  if (r.status !== 200) throw new Error(`${streamUrl}: GET answered ${r.status}: ${r.body}`)
  const items = []
  for (const chunk of r.chunks) {
    const text = chunk.toString('utf8')
    if (text.trim() === '') continue
    const arr = JSON.parse(text)
    if (!Array.isArray(arr)) throw new Error(`${streamUrl}: JSON read is not an array: ${text.slice(0, 200)}`)
    items.push(...arr)
  }
  return items
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
