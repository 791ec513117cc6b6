// `directWrites`: the same log, written past the page cache. Records of every size (one larger
// than the native 8 MiB ring), concurrent groups, truncation at both ends and reopens read back
// exactly; a clean close leaves nothing to recover; a torn tail over a direct write's padding
// is still cut. A RaftLog writes this way unless told not to, and reads back entries both from
// the ring (the newest) and from the disk.
import fs from 'node:fs'

import test from 'ava'

import { RaftLog } from '../dist/index.mjs'

import { Wal, tmpDir, bytes, readAll, rejectsWith, segments, locate, FRAME_HEADER, MARKER_LEN } from './helpers.mjs'

const DIRECT = Object.freeze({ directWrites: true, segmentBytes: 16 << 20 })

/** Sizes around the 4 KiB block and past the 8 MiB ring. */
const SIZES = [0, 1, 7, 100, 4095, 4096, 4097, 8191, 65536, 300_000, (9 << 20) + 4099, 12]

test("directWrites must be a boolean or 'auto'", async (t) => {
  for (const bad of ['yes', 'always', 1, null]) {
    const e = await rejectsWith(t, Wal.open(tmpDir(t), { directWrites: bad }), 'ERR_INVALID_ARG')
    t.regex(e.message, /directWrites must be a boolean or 'auto'/)
  }
})

/** Every record of `w` is `expected`'s, in order; `readMany` of the records at indexes `some` too. */
async function checkRecords(t, w, expected, some, when) {
  const records = await readAll(w)
  t.is(records.length, expected.length, when)
  records.forEach((r, i) => {
    if (r.lsn !== expected[i].lsn || !r.data.equals(expected[i].data)) t.fail(`${when}: record ${i} differs`)
  })
  const many = await w.readMany(some.map((i) => expected[i].lsn))
  some.forEach((i, k) => t.true(many[k].equals(expected[i].data), `${when}: readMany ${i}`))
}

test('records of every size, appended alone and in concurrent groups, read back before and after reopen', async (t) => {
  const dir = tmpDir(t)
  const expected = []
  let wal = await Wal.open(dir, DIRECT)
  for (const [i, n] of SIZES.entries()) {
    const data = bytes(n, i + 1)
    expected.push({ lsn: await wal.append(data), data })
  }
  for (let round = 0; round < 20; round++) {
    const group = Array.from({ length: 1 + (round % 9) }, (_, k) => bytes(1 + ((round * 977 + k * 131) % 9000), 100 + round * 10 + k))
    const lsns = await Promise.all(group.map((d) => wal.append(d)))
    group.forEach((data, k) => expected.push({ lsn: lsns[k], data }))
  }
  const check = (w, when) => checkRecords(t, w, expected, [expected.length - 1, 0, 11, 12], when)
  await check(wal, 'while open')
  await wal.close()

  wal = await Wal.open(dir, DIRECT)
  t.is(wal.recovery.tornBytes, 0, 'a direct write pads with zeros, which are not a torn write')
  t.is(wal.recovery.droppedBytes, 0)
  await check(wal, 'after reopen')
  // And once more through the page cache: the files are the same log either way.
  await wal.close()
  wal = await Wal.open(dir, { segmentBytes: DIRECT.segmentBytes, directWrites: false })
  await check(wal, 'reopened without directWrites')
  await wal.close()

  if (process.platform === 'linux') {
    // The option took effect: direct writes leave the file ending on a block boundary.
    for (const s of segments(dir)) t.is(s.size % 4096, 0, `${s.name} is ${s.size} bytes`)
  }
})

test('truncateFrom and truncateBefore, then more appends, across segments and reopens', async (t) => {
  const dir = tmpDir(t)
  const opts = { directWrites: true, segmentBytes: 64 * 1024 }
  let wal = await Wal.open(dir, opts)
  const lsns = []
  for (let i = 0; i < 200; i++) lsns.push(await wal.append(bytes(1 + ((i * 613) % 3000), i)))
  // Cut inside a block that direct writes have already rewritten.
  await wal.truncateFrom(lsns[150])
  const more = []
  for (let i = 0; i < 40; i++) more.push(await wal.append(bytes(1 + ((i * 911) % 5000), 1000 + i)))
  const first = await wal.truncateBefore(lsns[100])
  t.true(first <= lsns[100])
  await wal.close()

  wal = await Wal.open(dir, opts)
  t.is(wal.recovery.tornBytes, 0)
  const records = await readAll(wal, { from: lsns[100] })
  const want = [...lsns.slice(100, 150).map((lsn, k) => ({ lsn, seed: 100 + k })), ...more.map((lsn, k) => ({ lsn, seed: 1000 + k }))]
  t.deepEqual(
    records.map((r) => r.lsn),
    want.map((w) => w.lsn),
  )
  records.forEach((r, i) => {
    const seed = want[i].seed
    const n = seed < 1000 ? 1 + ((seed * 613) % 3000) : 1 + (((seed - 1000) * 911) % 5000)
    if (!r.data.equals(bytes(n, seed))) t.fail(`record ${i} differs`)
  })
  await wal.close()
})

test('a torn write over the padding of the last direct write is cut, and appends go on', async (t) => {
  const dir = tmpDir(t)
  let wal = await Wal.open(dir, DIRECT)
  const kept = []
  for (let i = 0; i < 5; i++) kept.push(await wal.append(bytes(1000, i)))
  await wal.close()
  // Garbage where the next record would have begun, inside the padded block.
  const last = locate(dir, kept.at(-1))
  const end = last.pos + FRAME_HEADER + 1000
  const fd = fs.openSync(last.path, 'r+')
  fs.writeSync(fd, Buffer.alloc(37, 0xab), 0, 37, end)
  fs.closeSync(fd)

  wal = await Wal.open(dir, DIRECT)
  t.is(wal.recovery.tornBytes, 37)
  const lsn = await wal.append(bytes(50, 99))
  t.is(lsn, kept.at(-1) + FRAME_HEADER + 1000 + MARKER_LEN, 'the next epoch starts where the cut left the log, after its marker')
  await wal.close()
  wal = await Wal.open(dir, DIRECT)
  t.is(wal.recovery.tornBytes, 0)
  t.deepEqual(
    (await readAll(wal)).map((r) => r.lsn),
    [...kept, lsn],
  )
  await wal.close()
})

// Linux's O_DIRECT: 0o200000 on arm64 (where 0o40000 is O_DIRECTORY), 0o40000 on x86-64.
const O_DIRECT = process.arch === 'arm64' ? 0o200000 : 0o40000

/** How many of this process's descriptors on files in `dir` were opened with O_DIRECT. */
function directDescriptors(dir) {
  let n = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue // closed meanwhile
    }
    if (!target.startsWith(dir + '/')) continue
    const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
    if (flags && (parseInt(flags[1], 8) & O_DIRECT) !== 0) n++
  }
  return n
}

test('a RaftLog writes past the page cache by default and reads back from the ring and from the disk', async (t) => {
  const dir = fs.realpathSync(tmpDir(t))
  const opts = { segmentBytes: 4 << 20 }
  let log = await RaftLog.open(dir, opts)
  const data = (i) => bytes(3000 + (i % 7) * 211, i)
  // 12 MiB of entries over three segments, more than the ring holds.
  const appends = []
  for (let first = 1; first <= 4096; first += 64) {
    appends.push(log.append(Array.from({ length: 64 }, (_, k) => ({ index: first + k, term: 1 + (first >> 11), data: data(first + k) }))))
  }
  await Promise.all(appends)
  if (process.platform === 'linux') t.true(directDescriptors(dir) > 0, 'no segment was opened with O_DIRECT')
  const check = async (l, when) => {
    for (const [lo, hi] of [[4033, 4097], [4000, 4001], [3000, 3100], [1, 65], [1, 4097]]) {
      const got = await l.entries(lo, hi)
      t.is(got.length, hi - lo, `${when}: entries(${lo}, ${hi})`)
      got.forEach((e, k) => {
        if (e.index !== lo + k || !Buffer.from(e.data).equals(data(lo + k))) t.fail(`${when}: entry ${lo + k} reads back differently`)
      })
    }
    t.deepEqual(Buffer.from((await l.entry(4096)).data), data(4096))
    t.deepEqual(Buffer.from((await l.entry(2)).data), data(2))
  }
  await check(log, 'before reopen')
  await log.close()
  log = await RaftLog.open(dir, opts)
  await check(log, 'after reopen')
  await log.close()

  const buffered = fs.realpathSync(tmpDir(t))
  log = await RaftLog.open(buffered, { directWrites: false })
  await log.append([{ index: 1, term: 1, data: 'a' }])
  if (process.platform === 'linux') t.is(directDescriptors(buffered), 0, 'directWrites: false opened a segment with O_DIRECT')
  await log.close()
})

// Which writes go direct under 'auto' is checked against a model in crate/direct_io_tests.rs.
test("by default ('auto') segments are written with O_DIRECT; group commits mixed with bulk batches all read back", async (t) => {
  const dir = fs.realpathSync(tmpDir(t))
  const opts = { segmentBytes: 16 << 20 }
  const expected = []
  let wal = await Wal.open(dir, opts)
  const small = async (round) => {
    const group = Array.from({ length: 1 + (round % 5) }, (_, k) => bytes(1 + ((round * 613 + k * 89) % 5000), round * 7 + k))
    const lsns = await Promise.all(group.map((d) => wal.append(d)))
    group.forEach((data, k) => expected.push({ lsn: lsns[k], data }))
  }
  const bulk = async (n, seed) => {
    // Over 1 MiB in one write: through the page cache.
    const batch = Array.from({ length: n }, (_, k) => bytes(4000 + (k % 13), seed + k))
    const lsns = await wal.appendBatch(batch)
    batch.forEach((data, k) => expected.push({ lsn: lsns[k], data }))
  }
  for (let round = 0; round < 12; round++) {
    await small(round)
    if (round % 4 === 1) await bulk(300 + round, 1000 * round)
  }
  if (process.platform === 'linux') t.true(directDescriptors(dir) > 0, 'no segment was opened with O_DIRECT')
  const check = (w, when) => checkRecords(t, w, expected, [0, expected.length - 1, expected.length >> 1, 7], when)
  await check(wal, 'while open')
  await wal.close()
  wal = await Wal.open(dir, opts)
  t.is(wal.recovery.tornBytes, 0)
  await check(wal, 'after reopen')
  await wal.close()
  wal = await Wal.open(dir, { ...opts, directWrites: false })
  await check(wal, 'reopened through the page cache')
  await wal.close()
})
