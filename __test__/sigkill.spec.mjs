// Real crashes: a child process appends with group commit and reports every acknowledged LSN;
// the parent kills it with SIGKILL at random moments, reopens the log and checks that every
// acknowledged record is there with its bytes, in order, and nothing else is.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { Wal } from '../dist/index.mjs'
import { body } from './fixtures/record-body.mjs'
import { tmpDir as tempDir } from './helpers.mjs'

const KILLS = Number(process.env.STURDY_KILLS ?? 100)
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'appender.mjs')

/**
 * Start the appender and kill it `delayMs` after it is ready or, with `afterFirstAck`, after its
 * first acknowledgement: on a slow, loaded machine a child may not acknowledge anything within
 * the delay, and every other kill must land while acknowledgements are coming.
 */
async function runAndKill(dir, firstSeq, delayMs, mode, afterFirstAck) {
  const proc = spawn(process.execPath, [child, dir, String(firstSeq), mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acked = []
  let buffered = ''
  let ready, acking
  const isReady = new Promise((resolve) => (ready = resolve))
  const firstAck = new Promise((resolve) => (acking = resolve))
  proc.stdout.on('data', (chunk) => {
    buffered += chunk
    const lines = buffered.split('\n')
    buffered = lines.pop()
    for (const line of lines) {
      if (line === 'ready') ready()
      else {
        const [lsn, seq] = line.split(' ').map(Number)
        acked.push({ lsn, seq })
        acking()
      }
    }
  })
  // 'close', not 'exit': every acknowledgement the child printed must be read before checking.
  const exited = once(proc, 'close')
  await Promise.race([isReady, exited])
  if (afterFirstAck) {
    let timer
    const silent = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('the child acknowledged nothing within 60 s')), 60_000)
    })
    try {
      await Promise.race([firstAck, exited, silent])
    } finally {
      clearTimeout(timer)
    }
  }
  await new Promise((resolve) => setTimeout(resolve, delayMs))
  proc.kill('SIGKILL')
  const [code, signal] = await exited
  return { acked, signal, code }
}

// Writes through the page cache (`directWrites: false`) and past it (`directWrites: true`, which
// is also what the default, 'auto', does with groups this small).
for (const mode of ['buffered', 'direct']) test(`acknowledged appends survive ${KILLS} SIGKILLs (${mode} writes)`, async (t) => {
  const dir = tempDir(t)
  const recorded = new Map() // lsn -> seq, every acknowledgement ever reported
  let nextSeq = 0
  let killedWhileAppending = 0
  for (let kill = 0; kill < KILLS; kill++) {
    const { acked, signal } = await runAndKill(dir, nextSeq, 5 + Math.floor(Math.random() * 60), mode, kill % 2 === 1)
    t.is(signal, 'SIGKILL')
    for (const { lsn, seq } of acked) recorded.set(lsn, seq)
    if (acked.length) killedWhileAppending++

    const wal = await Wal.open(dir)
    const records = []
    for await (const { lsn, data } of wal.entries()) records.push({ lsn, text: data.toString() })
    await wal.close()
    // Nothing that was never appended: the records are seq 0, 1, 2, ... with their exact bytes.
    records.forEach((r, i) => {
      if (r.text !== body(i)) t.fail(`kill ${kill}: record ${i} at LSN ${r.lsn} holds ${JSON.stringify(r.text.slice(0, 20))}`)
    })
    // Every acknowledged record is there, at its LSN.
    const bySeq = records.map((r) => r.lsn)
    for (const [lsn, seq] of recorded) {
      if (bySeq[seq] !== lsn) {
        t.fail(`kill ${kill}: acknowledged seq ${seq} at LSN ${lsn} is missing after recovery`)
        return
      }
    }
    nextSeq = records.length
  }
  t.log(`${KILLS} kills, ${killedWhileAppending} while appending; ${recorded.size} acknowledged records checked, ${nextSeq} in the log`)
  // (Every other kill waits for the child's first acknowledgement, failing if none comes, so the
  // checks above always cover kills in the middle of acknowledged appending.)
})
