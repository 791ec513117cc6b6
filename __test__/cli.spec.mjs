// The `sturdy` CLI, run as a child process against small logs in temp directories.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { Wal, SMALL, tmpDir, segments, locate, flipBit } from './helpers.mjs'

const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))

function cli(...args) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A log of `n` records over several 4 KiB segments; returns its dir and the records' LSNs. */
function smallLog(t, n = 40) {
  const dir = path.join(tmpDir(t), 'wal')
  const wal = Wal.openSync(dir, SMALL)
  const lsns = []
  for (let i = 0; i < n; i++) lsns.push(wal.appendSync(`record ${i} `.padEnd(200, '.')))
  wal.closeSync()
  return { dir, lsns }
}

test('--help for the CLI and every command', (t) => {
  const top = cli('--help')
  t.is(top.code, 0)
  for (const c of ['inspect', 'verify', 'probe', 'bench', 'serve']) t.true(top.stdout.includes(c), `lists ${c}`)
  for (const c of ['inspect', 'verify', 'probe', 'bench', 'serve']) {
    const r = cli(c, '--help')
    t.is(r.code, 0, `${c} --help exit code`)
    t.true(r.stdout.startsWith(`Usage: sturdy ${c}`), `${c} --help usage line`)
  }
})

test('usage errors are one line on stderr with exit code 2', (t) => {
  const cases = [[], ['frobnicate'], ['inspect'], ['verify', 'a', 'b'], ['inspect', '--bogus', 'x'], ['probe', '--seconds', 'soon']]
  for (const args of cases) {
    const r = cli(...args)
    t.is(r.code, 2, `${args.join(' ')}: exit code`)
    if (args.length > 0) t.is(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line: ${r.stderr}`)
  }
})

/** Start `sturdy serve` on a free port; resolves once it prints its URL. */
function serve(t, dir, ...extra) {
  const child = spawn(process.execPath, [MAIN, 'serve', '--dir', dir, '--port', '0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  // 'close', not 'exit': 'exit' can come before the last of the child's output has been read.
  const exited = new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
  const listening = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d
      const m = /listening on (http:\/\/\S+)/.exec(stdout)
      if (m) resolve(m[1])
    })
    exited.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)))
  })
  return { child, listening, exited }
}

test('serve: streams over HTTP from a data directory; a second server on it is refused; SIGTERM stops it cleanly', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const first = serve(t, dir)
  const url = await first.listening
  const stream = `${url}/v1/stream/cli-test`
  t.is((await fetch(stream, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hello ' })).status, 201)
  t.is((await fetch(stream, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'world' })).status, 204)
  t.is(await (await fetch(`${stream}?offset=-1`)).text(), 'hello world')

  const second = serve(t, dir)
  await t.throwsAsync(second.listening, { message: /exited 3: .*ERR_LOCKED/ })

  first.child.kill('SIGTERM')
  const r = await first.exited
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /stopped/)

  const again = serve(t, dir)
  const url2 = await again.listening
  t.is(await (await fetch(`${url2}/v1/stream/cli-test?offset=-1`)).text(), 'hello world', 'data survives a restart')
  again.child.kill('SIGTERM')
  t.is((await again.exited).code, 0)
})

test('serve: bad options are usage errors (exit 2, one line)', (t) => {
  for (const args of [['--port', 'x'], ['--port', '65536'], ['--long-poll-ms', String(2 ** 31)], ['--bogus'], ['extra']]) {
    const r = cli('serve', ...args)
    t.is(r.code, 2, args.join(' '))
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  }
})

test('inspect: segments, LSN range, record counts (table and --json)', async (t) => {
  const { dir, lsns } = smallLog(t)
  const text = cli('inspect', dir)
  t.is(text.code, 0, text.stderr)
  // Every segment holding a record is listed (an empty prepared segment may or may not be: the
  // open renames it in the background).
  for (const name of new Set(lsns.map((l) => locate(dir, l).name))) t.true(text.stdout.includes(name), `lists ${name}`)
  t.regex(text.stdout, /records\s+40 /)

  const r = cli('inspect', '--json', dir)
  t.is(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  t.is(j.records, 40)
  t.is(j.firstLsn, lsns[0])
  t.true(j.nextLsn > lsns[39])
  t.true(j.segments.length >= 3)
  t.is(j.segments.reduce((n, s) => n + s.records, 0), 40, 'per-segment counts add up')
  t.is(j.segments[0].firstLsn, lsns[0])
  for (const s of j.segments) {
    t.is(s.capacityBytes, SMALL.segmentBytes, `${s.file} capacity`)
    if (s.records > 0) t.true(s.firstLsn >= s.baseLsn && s.lastLsn < s.baseLsn + SMALL.segmentBytes, `${s.file} LSN range`)
  }
  t.is(j.payloadBytes, 40 * 200)

  // The log is still whole and writable afterwards.
  const wal = await Wal.open(dir)
  t.is(wal.firstLsn, lsns[0])
  await wal.close()
})

test('inspect and verify never create a log where there is none', (t) => {
  const root = tmpDir(t)
  const missing = path.join(root, 'nope')
  for (const c of ['inspect', 'verify']) {
    const r = cli(c, missing)
    t.is(r.code, 3, `${c}: exit code`)
    t.regex(r.stderr, /no such directory/)
    t.false(fs.existsSync(missing), `${c} did not create the directory`)
  }
  const empty = path.join(root, 'empty')
  fs.mkdirSync(empty)
  const r = cli('verify', empty)
  t.is(r.code, 3)
  t.regex(r.stderr, /not a sturdy log/)
  t.deepEqual(fs.readdirSync(empty), [])
})

test('verify: a whole log passes', (t) => {
  const { dir } = smallLog(t)
  const r = cli('verify', dir)
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^ok: 40 records/)
  const j = cli('verify', '--json', dir)
  t.is(j.code, 0)
  t.like(JSON.parse(j.stdout), { ok: true, records: 40 })
})

test('verify: a flipped bit in a middle record of a sealed segment fails with its location and exit 1', (t) => {
  const { dir, lsns } = smallLog(t)
  const copy = path.join(tmpDir(t), 'copy')
  fs.cpSync(dir, copy, { recursive: true })
  const first = segments(copy)[0]
  const inFirst = lsns.filter((l) => l < first.base + SMALL.segmentBytes)
  t.true(segments(copy).length > 1 && inFirst.length >= 3)
  const victim = inFirst[Math.floor(inFirst.length / 2)]
  const at = locate(copy, victim)
  t.is(at.name, first.name, 'the damaged record is in a non-last segment')
  flipBit(at.path, at.pos + 8 + 20) // a payload byte

  const r = cli('verify', copy)
  t.is(r.code, 1, r.stderr)
  const line = r.stderr.trim()
  t.is(line.split('\n').length, 1, 'one line')
  t.true(line.includes(path.join(copy, at.name)), `names the segment file: ${line}`)
  t.true(line.includes(`offset ${at.pos}`), `names the offset ${at.pos}: ${line}`)

  const j = cli('verify', '--json', copy)
  t.is(j.code, 1)
  t.like(JSON.parse(j.stdout), { ok: false, corrupt: { segment: at.name, offset: at.pos } })

  const i = cli('inspect', copy)
  t.is(i.code, 1, 'inspect reports the damage too')
  t.true(i.stderr.includes(`offset ${at.pos}`))

  t.is(cli('verify', dir).code, 0, 'the original is untouched')
})

test('verify and inspect on a log another process holds: locked, exit 3', async (t) => {
  const { dir } = smallLog(t, 5)
  const wal = await Wal.open(dir)
  t.teardown(() => wal.close())
  for (const c of ['verify', 'inspect']) {
    const r = cli(c, dir)
    t.is(r.code, 3, `${c}: exit code`)
    t.regex(r.stderr, /is locked: another process/)
    t.is(r.stderr.trim().split('\n').length, 1)
  }
})

test('probe runs to completion in a temp dir and cleans up', (t) => {
  const dir = tmpDir(t)
  const r = cli('probe', dir, '--seconds', '0.01', '--file-size', '65536', '--block-size', '4096', '--json')
  t.is(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  const barriers = new Set(j.results.map((x) => x.barrier))
  for (const b of ['none', 'fdatasync', 'fsync', 'sturdy']) t.true(barriers.has(b), `measured ${b}`)
  t.deepEqual([...new Set(j.results.map((x) => x.mode))].sort(), ['appending', 'preallocated'])
  for (const x of j.results) t.true(x.ops >= 1 && x.opsPerSec > 0 && x.p50Us >= 0, `${x.mode} ${x.barrier}`)
  for (const w of j.warnings) t.is(typeof w, 'string')
  t.deepEqual(fs.readdirSync(dir), [], 'no probe file left behind')

  const text = cli('probe', dir, '--seconds', '0.01', '--file-size', '65536')
  t.is(text.code, 0, text.stderr)
  t.regex(text.stdout, /write \+ fdatasync/)
  t.regex(text.stdout, /Preallocated file/)
  t.regex(text.stdout, /Appending/)
})

test('bench runs a short group-commit vs naive comparison and cleans up', (t) => {
  const dir = tmpDir(t)
  const r = cli('bench', dir, '--seconds', '0.2', '--writers', '8', '--json')
  t.is(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  t.deepEqual(j.runs.map((x) => x.name), ['naive', 'group commit'])
  for (const x of j.runs) t.true(x.records > 0)
  t.deepEqual(fs.readdirSync(dir), [], 'the temporary log is removed')
})

test('inspect and verify open read-only: the log is left byte for byte, torn tail included', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, { ...SMALL, preallocate: false })
  for (let i = 0; i < 30; i++) await wal.append(`record ${i}`)
  await wal.close()
  // A torn tail: garbage after the last record.
  const last = segments(dir).at(-1)
  fs.appendFileSync(last.path, Buffer.alloc(50, 0xab))
  const snapshot = () => fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')])
  const before = snapshot()
  for (const command of ['inspect', 'verify']) {
    const r = cli(command, dir, '--json')
    t.is(r.code, 0, `${command}: ${r.stderr}`)
  }
  t.regex(cli('inspect', dir).stdout, /50 bytes of an unacknowledged \(torn\) write/)
  // verify reports it too, as its help says, without calling it damage.
  t.regex(cli('verify', dir).stdout, /^ok: 30 records .*\nnote: 50 B of a write that was never acknowledged/)
  t.is(JSON.parse(cli('verify', dir, '--json').stdout).tornBytes, 50)
  t.deepEqual(snapshot(), before)
})

test('options are looked up by their own names, and numbers past what a command can use are usage errors', (t) => {
  const { dir } = smallLog(t, 3)
  for (const args of [
    ['inspect', '--constructor', '1', dir],
    ['inspect', '--toString=5', dir],
    ['verify', '--hasOwnProperty', dir],
    ['probe', '--seconds', '1e300'],
    ['probe', '--block-size', '5000000000'],
    ['probe', '--file-size', String(2 ** 40)],
    ['bench', '--size', '5000000000'],
    ['bench', '--writers', '1e9'],
  ]) {
    const r = cli(...args)
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    t.is(r.stderr.trim().split('\n').length, 1)
  }
})

test('probe stops on Ctrl-C, removing its file', async (t) => {
  const dir = tmpDir(t)
  const child = spawn(process.execPath, [MAIN, 'probe', dir, '--seconds', '30', '--file-size', '65536', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  // Wait for its file: the probe is running.
  while (!fs.readdirSync(dir).some((f) => f.startsWith('sturdy-probe-'))) await new Promise((r) => setTimeout(r, 20))
  child.kill('SIGINT')
  const [code] = await new Promise((resolve) => child.on('close', (...a) => resolve(a)))
  t.is(code, 130)
  t.deepEqual(fs.readdirSync(dir), [])
})
