// The directory lock: one open log per directory, across processes and within one.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

import test from 'ava'

import { Wal, SturdyError, tmpDir, assertRecords, openFails } from './helpers.mjs'

const distUrl = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.mjs')).href

// The child opens the log, appends one record, prints "ready <lsn>", and holds the log until its
// stdin ends; then it closes the log and prints "closed". In "try" mode it only reports what
// opening the log did.
const CHILD = `
import { Wal } from ${JSON.stringify(distUrl)}
const dir = process.env.STURDY_DIR
if (process.env.STURDY_MODE === 'try') {
  try {
    const wal = await Wal.open(dir)
    await wal.close()
    console.log('opened')
  } catch (e) {
    console.log('error ' + e.code)
  }
} else {
  const wal = await Wal.open(dir)
  const lsn = await wal.append('written by the child')
  console.log('ready ' + lsn)
  process.stdin.on('data', () => {})
  process.stdin.on('end', async () => {
    await wal.close()
    console.log('closed')
  })
}
`

/** Start a child node process running CHILD; resolves lines of its stdout through `nextLine`. */
function startChild(dir, mode = 'hold') {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, STURDY_DIR: dir, STURDY_MODE: mode },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  const waiters = []
  const lines = []
  // 'close', not 'exit': 'exit' may come before the last of the child's output has been read.
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  child.stderr.on('data', (d) => (err += d))
  child.stdout.on('data', (d) => {
    out += d
    let i
    while ((i = out.indexOf('\n')) >= 0) {
      lines.push(out.slice(0, i))
      out = out.slice(i + 1)
    }
    while (waiters.length && lines.length) waiters.shift().resolve(lines.shift())
  })
  exited.then(({ code, signal }) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`child exited (${code ?? signal}) before printing a line: ${err}`))
  })
  const nextLine = () =>
    lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject }))
  return { child, nextLine, exited, stderr: () => err }
}

test('a second process cannot open a log that another process holds', async (t) => {
  const dir = tmpDir(t)
  const holder = startChild(dir)
  t.teardown(() => holder.child.kill('SIGKILL'))
  const ready = await holder.nextLine()
  t.regex(ready, /^ready \d+$/)
  const lsn = Number(ready.split(' ')[1])

  const err = await openFails(t, dir, {}, 'ERR_LOCKED', 'async open:')
  t.regex(err?.message ?? '', /lock/i)
  t.throws(() => Wal.openSync(dir), { instanceOf: SturdyError, code: 'ERR_LOCKED' })
  await openFails(t, dir, { recovery: 'truncate' }, 'ERR_LOCKED', 'truncate-mode open:')

  // Once the holder closes the log, it opens here, with the holder's record intact.
  holder.child.stdin.end()
  t.is(await holder.nextLine(), 'closed')
  const { code } = await holder.exited
  t.is(code, 0, holder.stderr())
  const wal = await Wal.open(dir)
  await assertRecords(t, wal, [{ lsn, data: 'written by the child' }])
  await wal.close()
})

test('the lock dies with a killed process', async (t) => {
  const dir = tmpDir(t)
  const holder = startChild(dir)
  const ready = await holder.nextLine()
  const lsn = Number(ready.split(' ')[1])
  await openFails(t, dir, {}, 'ERR_LOCKED')
  holder.child.kill('SIGKILL')
  const { signal } = await holder.exited
  t.is(signal, 'SIGKILL')
  const wal = await Wal.open(dir)
  // The child's append was acknowledged before it printed "ready", so it survived the kill.
  await assertRecords(t, wal, [{ lsn, data: 'written by the child' }])
  t.is(wal.recovery.records, 1)
  await wal.close()
})

test('another process cannot open a log this process holds', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  const lsn = await wal.append('mine')
  const probe = startChild(dir, 'try')
  t.is(await probe.nextLine(), 'error ERR_LOCKED')
  t.is((await probe.exited).code, 0)
  t.is((await wal.read(lsn)).toString(), 'mine', 'the holder is unaffected')
  await wal.close()
  const again = startChild(dir, 'try')
  t.is(await again.nextLine(), 'opened')
  t.is((await again.exited).code, 0)
})

test('a second open in the same process fails with ERR_LOCKED until the first closes', async (t) => {
  const dir = tmpDir(t)
  const first = await Wal.open(dir)
  const a = await first.append('a')

  await openFails(t, dir, {}, 'ERR_LOCKED', 'same path:')
  await openFails(t, `${dir}/`, {}, 'ERR_LOCKED', 'trailing slash:')
  await openFails(t, path.join(dir, '..', path.basename(dir)), {}, 'ERR_LOCKED', 'via ..:')
  await openFails(t, path.relative(process.cwd(), dir), {}, 'ERR_LOCKED', 'relative path:')
  t.throws(() => Wal.openSync(dir), { instanceOf: SturdyError, code: 'ERR_LOCKED' })

  // The failed opens did not disturb the holder.
  const b = await first.append('b')
  t.is((await first.read(a)).toString(), 'a')
  await first.close()

  const second = await Wal.open(dir)
  await assertRecords(t, second, [
    { lsn: a, data: 'a' },
    { lsn: b, data: 'b' },
  ])
  second.closeSync()
  const third = Wal.openSync(dir)
  t.is(third.recovery.records, 2)
  third.closeSync()
})

test('concurrent opens of one directory: exactly one wins', async (t) => {
  const dir = tmpDir(t)
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => Wal.open(dir)))
  const won = results.filter((r) => r.status === 'fulfilled')
  const lost = results.filter((r) => r.status === 'rejected')
  t.is(won.length, 1)
  t.true(lost.every((r) => r.reason instanceof SturdyError && r.reason.code === 'ERR_LOCKED'))
  await won[0].value.close()
})

test('open and close many times in a row', async (t) => {
  const dir = tmpDir(t)
  const expected = []
  for (let i = 0; i < 25; i++) {
    const wal = i % 2 ? Wal.openSync(dir) : await Wal.open(dir)
    t.is(wal.recovery.records, i)
    expected.push({ lsn: await wal.append(`cycle ${i}`), data: `cycle ${i}` })
    if (i % 3) await wal.close()
    else wal.closeSync()
  }
  const wal = await Wal.open(dir)
  await assertRecords(t, wal, expected)
  await wal.close()
})

test('a second open in this process is refused, and says so, by any name of the directory', async (t) => {
  const dir = tmpDir(t)
  const link = `${dir}-link`
  fs.symlinkSync(dir, link)
  t.teardown(() => fs.rmSync(link, { force: true }))
  const first = await Wal.open(dir)
  for (const name of [dir, link]) {
    const e = await t.throwsAsync(Wal.open(name), { instanceOf: SturdyError, code: 'ERR_LOCKED' })
    t.regex(e.message, /another open log in this process holds it/, name)
  }
  await first.close()
})

test('a read-only open of a log whose LOCK file is missing still keeps writers out', async (t) => {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir)
  await wal.append('kept')
  await wal.close()
  // A copy of the segments without the LOCK file (a backup of *.wal, say).
  fs.rmSync(path.join(dir, 'LOCK'))
  const reader = await Wal.open(dir, { readOnly: true })
  const child = startChild(dir, 'try')
  t.is(await child.nextLine(), 'error ERR_LOCKED')
  await child.exited
  const got = []
  for await (const { data } of reader.entries()) got.push(Buffer.from(data).toString())
  t.deepEqual(got, ['kept'])
  t.false(fs.existsSync(path.join(dir, 'LOCK')), 'the read-only open created nothing')
  await reader.close()
  // Released: a writer opens it now.
  const again = startChild(dir, 'try')
  t.is(await again.nextLine(), 'opened')
  await again.exited
})
