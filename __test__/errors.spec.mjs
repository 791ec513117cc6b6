// Error contract: wrong arguments, oversized records, use after close, missing records. Async
// methods report errors as rejected promises (never a synchronous throw), and nothing stored
// changes.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import {
  Wal,
  SturdyError,
  tmpDir,
  freshPath,
  readAll,
  assertRecords,
  openFails,
  throwsWith,
  segments,
  MARKER_LEN,
} from './helpers.mjs'

/** Call `fn`; it must return a promise (not throw) that rejects with `code`. */
async function rejectsNotThrows(t, label, fn, code) {
  let p
  try {
    p = fn()
  } catch (e) {
    t.fail(`${label} threw synchronously (${e?.code ?? e}) instead of returning a rejected promise`)
    return
  }
  t.true(p instanceof Promise, `${label} returns a promise`)
  await t.throwsAsync(p, { instanceOf: SturdyError, code }, label)
}

/** A log with a few records; returns it open plus what it holds. */
async function seeded(t, options = {}) {
  const dir = tmpDir(t)
  const wal = await Wal.open(dir, options)
  const expected = []
  for (const d of ['one', 'two', 'three ✓']) expected.push({ lsn: await wal.append(d), data: d })
  return { dir, wal, expected }
}

/** Reopen `dir` and check it holds exactly `expected`. */
async function untouched(t, dir, expected, options = {}) {
  const wal = await Wal.open(dir, options)
  t.is(wal.recovery.tornBytes, 0)
  t.is(wal.recovery.droppedBytes, 0)
  await assertRecords(t, wal, expected, 'stored data untouched:')
  await wal.close()
}

const notRecords = [
  ['a number', 123],
  ['null', null],
  ['undefined', undefined],
  ['an object', {}],
  ['an array of numbers', [1, 2, 3]],
  ['a boolean', true],
  ['a bigint', 5n],
  ['a Uint16Array', new Uint16Array([1, 2])],
  ['an ArrayBuffer', new ArrayBuffer(4)],
  ['a DataView', new DataView(new ArrayBuffer(4))],
  ['a String object', new String('boxed')],
  ['a symbol', Symbol('x')],
  // Passes `instanceof Uint8Array`, but has no memory behind it.
  ['an object made from Uint8Array.prototype', Object.create(Uint8Array.prototype)],
  ['an array holding one', [Object.create(Buffer.prototype)]],
]

test('append, appendBatch and appendSync reject values that are not records', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  for (const [label, v] of notRecords) {
    await rejectsNotThrows(t, `append(${label})`, () => wal.append(v), 'ERR_INVALID_ARG')
    await rejectsNotThrows(t, `appendBatch([${label}])`, () => wal.appendBatch([v]), 'ERR_INVALID_ARG')
    throwsWith(t, () => wal.appendSync(v), 'ERR_INVALID_ARG', `appendSync(${label})`)
  }
  for (const [label, v] of [
    ['a string', 'abc'],
    ['null', null],
    ['undefined', undefined],
    ['a number', 3],
    ['an object', { 0: 'a', length: 1 }],
    ['a Uint8Array', new Uint8Array(3)],
  ]) {
    await rejectsNotThrows(t, `appendBatch(${label})`, () => wal.appendBatch(v), 'ERR_INVALID_ARG')
  }
  // One bad record rejects the whole batch: none of it is stored (the large one too, which the
  // native side would stage).
  await rejectsNotThrows(t, 'appendBatch([ok, 123, ok])', () => wal.appendBatch(['ok 1', 123, 'ok 2']), 'ERR_INVALID_ARG')
  const large = Array.from({ length: 100_000 }, () => Buffer.alloc(100))
  large[90_000] = Object.create(Uint8Array.prototype)
  await rejectsNotThrows(t, 'appendBatch(10 MB with a fake Uint8Array)', () => wal.appendBatch(large), 'ERR_INVALID_ARG')
  t.is((await readAll(wal)).length, expected.length)
  // The log still works afterwards.
  const lsn = await wal.append('still fine')
  expected.push({ lsn, data: 'still fine' })
  await wal.close()
  await untouched(t, dir, expected)
})

test('a rejected append writes nothing', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  await wal.sync()
  const next = wal.nextLsn
  const before = new Map(segments(dir).map((s) => [s.name, fs.readFileSync(s.path)]))
  await t.throwsAsync(wal.append(123), { code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(wal.appendBatch([null]), { code: 'ERR_INVALID_ARG' })
  await wal.sync()
  t.is(wal.nextLsn, next, 'nextLsn unchanged')
  for (const s of segments(dir)) {
    const bytes = fs.readFileSync(s.path)
    if (before.has(s.name)) {
      t.true(bytes.equals(before.get(s.name)), `${s.name}: no bytes (not even a commit marker) written`)
    } else {
      // The next segment, prepared in the background meanwhile: a header and zeros, no frames.
      t.true(bytes.subarray(64).every((b) => b === 0), `${s.name} is an empty prepared segment`)
    }
  }
  const lsn = await wal.append('next')
  t.is(lsn, next + MARKER_LEN, 'the next append lands right after the last write')
  expected.push({ lsn, data: 'next' })
  await wal.close()
  await untouched(t, dir, expected)
})

test('read, readSync, truncateFrom, truncateBefore and entries reject bad LSNs', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  const badLsns = [
    ['a string', 'x'],
    ['a numeric string', String(expected[0].lsn)],
    ['-1', -1],
    ['1.5', 1.5],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['-Infinity', -Infinity],
    ['2^53', 2 ** 53],
    ['null', null],
    ['undefined', undefined],
    ['an object', {}],
    ['a bigint', 88n],
  ]
  for (const [label, v] of badLsns) {
    await rejectsNotThrows(t, `read(${label})`, () => wal.read(v), 'ERR_INVALID_ARG')
    throwsWith(t, () => wal.readSync(v), 'ERR_INVALID_ARG', `readSync(${label})`)
    await rejectsNotThrows(t, `truncateFrom(${label})`, () => wal.truncateFrom(v), 'ERR_INVALID_ARG')
    await rejectsNotThrows(t, `truncateBefore(${label})`, () => wal.truncateBefore(v), 'ERR_INVALID_ARG')
    if (v !== undefined) {
      let it
      t.notThrows(() => {
        it = wal.entries({ from: v })
      }, `entries({from: ${label}}) does not throw synchronously`)
      await t.throwsAsync(it.next(), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }, `entries({from: ${label}})`)
    }
  }
  for (const chunkBytes of [0, -1, 1.5, NaN, 'big', 2 ** 32]) {
    const it = wal.entries({ chunkBytes })
    await t.throwsAsync(it.next(), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }, `entries({chunkBytes: ${String(chunkBytes)}})`)
  }
  for (const options of [null, 5, 'from']) {
    await t.throwsAsync(wal.entries(options).next(), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' }, `entries(${String(options)})`)
  }
  const last = expected[expected.length - 1]
  t.is(wal.nextLsn, last.lsn + 8 + Buffer.byteLength(last.data), 'nothing was written')
  await wal.close()
  await untouched(t, dir, expected)
})

test('Wal.open and Wal.openSync reject bad options and directories without touching disk', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  await wal.close()
  const missing = freshPath(t, 'never-created')
  const file = path.join(tmpDir(t), 'a-file')
  fs.writeFileSync(file, 'not a directory')

  const badOptions = [
    ['null options', null],
    ['numeric options', 5],
    ['string options', 'strict'],
    ['segmentBytes: 100', { segmentBytes: 100 }],
    ['segmentBytes: 4095', { segmentBytes: 4095, maxRecordBytes: 100 }],
    ['segmentBytes: 0', { segmentBytes: 0 }],
    ['segmentBytes: -4096', { segmentBytes: -4096 }],
    ['segmentBytes: 4096.5', { segmentBytes: 4096.5 }],
    ['segmentBytes: NaN', { segmentBytes: NaN }],
    ['segmentBytes: "4096"', { segmentBytes: '4096' }],
    ['segmentBytes: 2^60', { segmentBytes: 2 ** 60 }],
    ['maxRecordBytes: 0', { maxRecordBytes: 0 }],
    ['maxRecordBytes: -1', { maxRecordBytes: -1 }],
    ['maxRecordBytes: "10"', { maxRecordBytes: '10' }],
    ['maxRecordBytes > segmentBytes', { segmentBytes: 4096, maxRecordBytes: 5000 }],
    ['maxRecordBytes = segmentBytes', { segmentBytes: 8192, maxRecordBytes: 8192 }],
    ['maxRecordBytes >= 2^31', { segmentBytes: 2 ** 33, maxRecordBytes: 2 ** 31 }],
    ["recovery: 'lenient'", { recovery: 'lenient' }],
    ['recovery: true', { recovery: true }],
    ['preallocate: 1', { preallocate: 1 }],
    ["preallocate: 'yes'", { preallocate: 'yes' }],
    ['disk: {}', { disk: {} }],
    ['disk: 5', { disk: 5 }],
  ]
  for (const [label, opts] of badOptions) {
    for (const target of [missing, dir]) {
      await rejectsNotThrows(t, `open(${label})`, () => Wal.open(target, opts), 'ERR_INVALID_ARG')
      throwsWith(t, () => Wal.openSync(target, opts), 'ERR_INVALID_ARG', `openSync(${label})`)
    }
  }
  for (const [label, d] of [
    ['a number', 123],
    ['an empty string', ''],
    ['a path with NUL', `${dir}\0x`],
    ['null', null],
    ['undefined', undefined],
    ['an object', {}],
    ['a regular file', file],
  ]) {
    await rejectsNotThrows(t, `open(${label})`, () => Wal.open(d), 'ERR_INVALID_ARG')
    throwsWith(t, () => Wal.openSync(d), 'ERR_INVALID_ARG', `openSync(${label})`)
  }
  t.false(fs.existsSync(missing), 'a rejected open creates nothing')
  t.is(fs.readFileSync(file, 'utf8'), 'not a directory')
  await untouched(t, dir, expected)
})

test('maxRecordBytes may be at most segmentBytes - 96', async (t) => {
  const dir = tmpDir(t)
  const ok = await Wal.open(dir, { segmentBytes: 4096, maxRecordBytes: 4096 - 96 })
  // A record of exactly that size fills a fresh segment to the last byte.
  const big = Buffer.alloc(4000, 3)
  const lsn = await ok.append(big)
  await ok.close()
  await openFails(t, dir, { segmentBytes: 4096, maxRecordBytes: 4096 - 95 }, 'ERR_INVALID_ARG', 'segmentBytes - 95:')
  await openFails(t, dir, { segmentBytes: 65536, maxRecordBytes: 65536 - 90 }, 'ERR_INVALID_ARG', '65536 - 90:')
  const wal = await Wal.open(dir, { segmentBytes: 4096, maxRecordBytes: 4000 })
  t.true((await wal.read(lsn)).equals(big))
  await wal.close()
})

test('the default maxRecordBytes is 16 MiB, or what small segments allow', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, { segmentBytes: 4096 })
  const lsn = await wal.append(Buffer.alloc(4000, 1))
  await rejectsNotThrows(t, 'append(4001 bytes)', () => wal.append(Buffer.alloc(4001)), 'ERR_RECORD_TOO_LARGE')
  await wal.close()
  wal = await Wal.open(dir)
  t.is((await wal.read(lsn)).length, 4000)
  const big = await wal.append(Buffer.alloc(16 << 20, 2))
  t.is((await wal.read(big)).length, 16 << 20)
  await rejectsNotThrows(t, 'append(16 MiB + 1)', () => wal.append(Buffer.alloc((16 << 20) + 1)), 'ERR_RECORD_TOO_LARGE')
  await wal.close()
})

test('records over maxRecordBytes are rejected with ERR_RECORD_TOO_LARGE', async (t) => {
  const options = { segmentBytes: 8192, maxRecordBytes: 1000 }
  const { dir, wal, expected } = await seeded(t, options)
  const exact = Buffer.alloc(1000, 7)
  const l = await wal.append(exact)
  expected.push({ lsn: l, data: exact })
  const s = 'x'.repeat(1000)
  expected.push({ lsn: await wal.append(s), data: s })

  const over = Buffer.alloc(1001, 1)
  const wide = '€'.repeat(334) // 334 characters, 1002 bytes of UTF-8
  t.true(wide.length < 1000)
  for (const [label, v] of [
    ['1001 bytes', over],
    ['a 1002-byte UTF-8 string of 334 characters', wide],
    ['1 MiB', Buffer.alloc(1 << 20)],
  ]) {
    await rejectsNotThrows(t, `append(${label})`, () => wal.append(v), 'ERR_RECORD_TOO_LARGE')
    await rejectsNotThrows(t, `appendBatch([ok, ${label}])`, () => wal.appendBatch(['fine', v]), 'ERR_RECORD_TOO_LARGE')
    throwsWith(t, () => wal.appendSync(v), 'ERR_RECORD_TOO_LARGE', `appendSync(${label})`)
  }
  // Other appends in the same turn are unaffected.
  const [pa, pb, pc] = [wal.append('before'), wal.append(over), wal.append('after')]
  await t.throwsAsync(pb, { code: 'ERR_RECORD_TOO_LARGE' })
  const la = await pa
  const lc = await pc
  expected.push({ lsn: la, data: 'before' }, { lsn: lc, data: 'after' })
  await wal.close()
  await untouched(t, dir, expected, options)
})

test('every method fails with ERR_CLOSED after close', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  const lsn = expected[0].lsn
  await wal.close()
  t.true(wal.closed)
  await rejectsNotThrows(t, 'append', () => wal.append('x'), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'appendBatch', () => wal.appendBatch(['x']), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'sync', () => wal.sync(), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'read', () => wal.read(lsn), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'truncateFrom', () => wal.truncateFrom(lsn), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'truncateBefore', () => wal.truncateBefore(lsn), 'ERR_CLOSED')
  let it
  t.notThrows(() => {
    it = wal.entries()
  })
  await t.throwsAsync(it.next(), { instanceOf: SturdyError, code: 'ERR_CLOSED' }, 'entries')
  throwsWith(t, () => wal.appendSync('x'), 'ERR_CLOSED', 'appendSync')
  throwsWith(t, () => wal.syncSync(), 'ERR_CLOSED', 'syncSync')
  throwsWith(t, () => wal.readSync(lsn), 'ERR_CLOSED', 'readSync')
  await t.notThrowsAsync(wal.close(), 'close again')
  t.notThrows(() => wal.closeSync(), 'closeSync again')
  await untouched(t, dir, expected)
})

test('every method fails with ERR_CLOSED after closeSync', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  wal.closeSync()
  await rejectsNotThrows(t, 'append', () => wal.append('x'), 'ERR_CLOSED')
  await rejectsNotThrows(t, 'read', () => wal.read(expected[0].lsn), 'ERR_CLOSED')
  throwsWith(t, () => wal.readSync(expected[0].lsn), 'ERR_CLOSED', 'readSync')
  await t.throwsAsync(wal.entries().next(), { code: 'ERR_CLOSED' })
  await untouched(t, dir, expected)
})

test('an iterator left open across close fails with ERR_CLOSED', async (t) => {
  const { wal, expected } = await seeded(t)
  const it = wal.entries({ chunkBytes: 1 })
  const first = await it.next()
  t.is(first.value.lsn, expected[0].lsn)
  await wal.close()
  await t.throwsAsync(
    (async () => {
      for (;;) {
        const r = await it.next()
        if (r.done) throw new Error('iteration ended without an error')
      }
    })(),
    { instanceOf: SturdyError, code: 'ERR_CLOSED' },
  )
})

test('reading where no record starts fails with ERR_NOT_FOUND', async (t) => {
  const { dir, wal, expected } = await seeded(t)
  const [a, b] = expected
  const next = wal.nextLsn
  for (const [label, lsn] of [
    ['inside a record', a.lsn + 1],
    ['inside a record header', b.lsn + 4],
    ['at a commit marker', b.lsn - MARKER_LEN],
    ['inside a commit marker', b.lsn - 10],
    ['in the segment header', 0],
    ['in the segment header (end)', 63],
    ['at nextLsn', next],
    ['past the end', next + 1],
    ['far past the end', 2 ** 40],
    ['the largest safe integer', Number.MAX_SAFE_INTEGER],
  ]) {
    await rejectsNotThrows(t, `read(${label})`, () => wal.read(lsn), 'ERR_NOT_FOUND')
    throwsWith(t, () => wal.readSync(lsn), 'ERR_NOT_FOUND', `readSync(${label})`)
  }
  // A 16-byte record has the same frame size as a commit marker, and is still a record.
  const l16 = await wal.append('sixteen bytes!!!')
  t.is((await wal.read(l16)).toString(), 'sixteen bytes!!!')
  expected.push({ lsn: l16, data: 'sixteen bytes!!!' })
  await wal.close()
  await untouched(t, dir, expected)
})

test('errors are SturdyError instances with a message and a stable code', async (t) => {
  const { wal } = await seeded(t)
  const e = await t.throwsAsync(wal.read(1))
  t.true(e instanceof SturdyError)
  t.true(e instanceof Error)
  t.is(e.name, 'SturdyError')
  t.is(e.code, 'ERR_NOT_FOUND')
  t.is(typeof e.message, 'string')
  t.true(e.message.length > 0)
  t.false(e.message.startsWith('{'), 'the native JSON envelope is unwrapped')
  t.is(typeof e.stack, 'string')
  await wal.close()
})

test('a read-only log refuses writes through settled promises: the process still exits once it is closed', async (t) => {
  const { spawn } = await import('node:child_process')
  const { pathToFileURL, fileURLToPath } = await import('node:url')
  const dist = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.mjs')).href
  const dir = tmpDir(t)
  const w = await Wal.open(dir)
  await w.append('x')
  await w.close()
  // A child: refused writes, then close. A promise left unsettled by the addon would keep its
  // event loop alive, and the child would never exit (the test would then time out).
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { Wal } from ${JSON.stringify(dist)}
       const ro = await Wal.open(process.env.DIR, { readOnly: true })
       const codes = []
       for (const op of [() => ro.append('x'), () => ro.appendBatch(['a', 'b']), () => ro.sync(), () => ro.truncateFrom(ro.nextLsn), () => ro.truncateBefore(ro.firstLsn)]) {
         codes.push(await op().then(() => 'resolved', (e) => e.code))
       }
       await ro.close()
       console.log(codes.join(' '))`,
    ],
    { env: { ...process.env, DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const [code] = await new Promise((resolve) => child.on('close', (...a) => resolve(a)))
  t.is(code, 0)
  t.is(out.trim(), Array(5).fill('ERR_INVALID_ARG').join(' '))
})
