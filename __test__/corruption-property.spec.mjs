// Property tests of the recovery scan: random and mutated segment files never crash the process
// and never yield a record with wrong bytes. Damage before the last write is refused with
// ERR_CORRUPT naming the damaged segment; a cut is made only where the damage is the tail.
import test from 'ava'
import fc from 'fast-check'

import { Wal } from '../dist/index.mjs'
import { SimulatedDisk } from '../dist/testing.mjs'

const OPTIONS = { segmentBytes: 4096 }

/** A valid multi-segment log: its files and its records. */
async function buildLog() {
  const disk = new SimulatedDisk({ seed: 1 })
  const wal = await Wal.open('log', { disk, ...OPTIONS })
  const records = []
  for (let g = 0; g < 40; g++) {
    const batch = Array.from({ length: 1 + (g % 4) }, (_, i) => Buffer.from(`g${g}r${i}:` + 'abcdefgh'.repeat((g * 7 + i * 13) % 40)))
    const lsns = await wal.appendBatch(batch)
    lsns.forEach((lsn, i) => records.push([lsn, batch[i]]))
  }
  await wal.close()
  const files = disk.files('log').map((f) => [f.name, disk.readFile('log', f.name)])
  return { files, records }
}

async function openOn(files, recovery) {
  const disk = new SimulatedDisk({ seed: 2 })
  for (const [name, bytes] of files) disk.writeFile('log', name, bytes)
  const wal = await Wal.open('log', { disk, ...OPTIONS, recovery })
  const got = []
  for await (const { lsn, data } of wal.entries()) got.push([lsn, Buffer.from(data)])
  for (const [lsn, data] of got) {
    if (!(await wal.read(lsn)).equals(data)) throw new Error(`read(${lsn}) disagrees with entries()`)
  }
  await wal.close()
  return got
}

const isPrefix = (got, records) => got.length <= records.length && got.every(([l, d], i) => l === records[i][0] && d.equals(records[i][1]))

const mutation = (size) =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip'), at: fc.nat(size - 1), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('zero'), at: fc.nat(size - 1), len: fc.integer({ min: 1, max: 600 }) }),
    fc.record({ kind: fc.constant('garbage'), at: fc.nat(size - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
    fc.record({ kind: fc.constant('cut'), at: fc.nat(size - 1) }),
  )

function apply(bytes, m) {
  const b = Buffer.from(bytes)
  switch (m.kind) {
    case 'flip':
      b[m.at] ^= 1 << m.bit
      return b
    case 'zero':
      b.fill(0, m.at, Math.min(b.length, m.at + m.len))
      return b
    case 'garbage':
      Buffer.from(m.bytes).copy(b, m.at)
      return b
    case 'cut':
      return b.subarray(0, m.at)
  }
}

test('mutated segment files: ERR_CORRUPT or a prefix of the true records, never wrong bytes', async (t) => {
  const { files, records } = await buildLog()
  t.true(files.length >= 4)
  const dataFiles = files.filter(([, b]) => b.length > 64)
  const lastData = dataFiles.at(-1)[0]
  // The clean close sealed the log just past its last record: the seal vouches for the newest
  // write, so strict recovery may drop records silently only where the damage reached the seal
  // too (then the newest write has nothing after it that vouches for it, as after a crash).
  const [lastLsn, lastBytes] = records.at(-1)
  const sealAt = lastLsn - Number(lastData.slice(0, 20)) + 8 + lastBytes.length
  const reachesSeal = (m) => (m.kind === 'cut' ? m.at < sealAt + 24 : m.at < sealAt + 24 && m.at + (m.kind === 'flip' ? 1 : m.kind === 'zero' ? m.len : m.bytes.length) > sealAt)
  let corrupt = 0
  let cut = 0
  await fc.assert(
    fc.asyncProperty(fc.nat(dataFiles.length - 1), fc.array(mutation(4096), { minLength: 1, maxLength: 3 }), fc.boolean(), async (which, ms, tolerant) => {
      const [name, original] = dataFiles[which]
      const mutated = ms.reduce((b, m) => (m.at < b.length ? apply(b, m) : b), original)
      if (mutated.equals(original)) return
      const damaged = files.map(([n, b]) => [n, n === name ? mutated : b])
      let got
      try {
        got = await openOn(damaged, tolerant ? 'truncate' : 'strict')
      } catch (e) {
        if (e.code !== 'ERR_CORRUPT') throw e
        if (tolerant) throw new Error(`truncate mode refused to open: ${e.message}`)
        // The location names a real segment file at or after the damaged one.
        if (!(e.segment >= name && files.some(([n]) => n === e.segment))) throw new Error(`bad location ${e.segment} for damage in ${name}`)
        if (typeof e.offset !== 'number') throw new Error('no offset')
        corrupt++
        return
      }
      if (!isPrefix(got, records)) throw new Error('recovery returned records that were never written')
      const sealDamaged = name === lastData && ms.some(reachesSeal)
      if (!tolerant && !sealDamaged && got.length < records.length) {
        throw new Error(`strict recovery silently dropped ${records.length - got.length} records after damage in segment ${name} that left the seal intact`)
      }
      if (got.length < records.length) cut++
    }),
    { numRuns: 400, seed: 42 },
  )
  t.log(`${corrupt} refused as corrupt, ${cut} cut to a prefix`)
  t.true(corrupt > 0 && cut > 0)
})

test('random segment files never crash the process', async (t) => {
  const header = (await buildLog()).files[0][1].subarray(0, 64)
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.boolean(), fc.boolean(), async (body, withHeader, tolerant) => {
      const bytes = withHeader ? Buffer.concat([header, body]) : Buffer.from(body)
      try {
        const got = await openOn([['00000000000000000000.wal', bytes]], tolerant ? 'truncate' : 'strict')
        // Random bytes cannot hold a valid record (the odds of a matching CRC32C are negligible).
        if (got.length !== 0) throw new Error(`found ${got.length} records in random bytes`)
      } catch (e) {
        if (e.code !== 'ERR_CORRUPT') throw e
      }
    }),
    { numRuns: 500, seed: 7 },
  )
  t.pass()
})
