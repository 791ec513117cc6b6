// Simulated power loss on MemoryDirectory: a crash inside every storage step of
// atomicWriteDurable and atomicRenameDurable leaves the old or the new content, never neither
// and never a mix, and the new content once the call resolved. The model itself is checked
// too: it must punish the classic mistakes (no data barrier before a rename, no directory sync).
import test from 'ava'

import { MemoryDirectory, SturdyError } from '../dist/index.mjs'

const SEEDS = Number(process.env.STURDY_DIR_SEEDS ?? 60)

/** Contents spanning several 512-byte sectors, so a torn write would show as a mix. */
function content(len, tag) {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = (tag * 31 + i * 7) & 0xff
  return b
}
const OLD = content(2600, 1)
const NEW = content(3100, 2)

async function read(dir, p) {
  try {
    return await dir.readFile(p)
  } catch (e) {
    if (e.code === 'ERR_NOT_FOUND') return undefined
    throw e
  }
}

function describe(buf) {
  if (buf === undefined) return 'missing'
  if (buf.equals(OLD)) return 'old'
  if (buf.equals(NEW)) return 'new'
  return `a mix of ${buf.length} bytes`
}

/** Storage operations `run` takes on a fresh setup (the crash points to try). */
async function stepsOf(setup, run) {
  const dir = await setup(0)
  const before = dir.stats.ops
  await run(dir)
  return dir.stats.ops - before
}

/**
 * For every seed and every storage step of `run`: crash inside that step, then let `check`
 * judge what survived. Finally crash after `run` resolved. Returns the outcomes seen.
 */
async function crashEverywhere(t, setup, run, check) {
  const steps = await stepsOf(setup, run)
  t.true(steps >= 2, `the operation has ${steps} steps`)
  const seen = {}
  for (let seed = 1; seed <= SEEDS; seed++) {
    for (let step = 1; step <= steps + 1; step++) {
      const dir = await setup(seed)
      const crashed = step <= steps
      if (crashed) {
        dir.crashAfter(step)
        const e = await t.throwsAsync(run(dir), { instanceOf: SturdyError, code: 'ERR_IO' }, `seed ${seed} step ${step}`)
        if (!e) return seen
      } else {
        await run(dir)
        dir.crash()
      }
      const outcome = await check(dir, { acknowledged: !crashed })
      if (outcome === undefined) return t.fail(`seed ${seed}, crash in step ${step} of ${steps}: unacceptable state`)
      seen[outcome] = (seen[outcome] ?? 0) + 1
    }
  }
  return seen
}

test('atomicWriteDurable: a crash in any step leaves the old or the new content, and the new once acknowledged', async (t) => {
  const setup = async (seed) => {
    const dir = new MemoryDirectory({ seed })
    await dir.atomicWriteDurable('data/file', OLD)
    return dir
  }
  const seen = await crashEverywhere(t, setup, (dir) => dir.atomicWriteDurable('data/file', NEW), async (dir, { acknowledged }) => {
    const got = describe(await read(dir, 'data/file'))
    if (got !== 'old' && got !== 'new') return t.log(`data/file is ${got}`)
    if (acknowledged && got !== 'new') return t.log('acknowledged but reverted')
    return got
  })
  t.log(seen)
  t.true(seen.old > 0 && seen.new > 0, 'both outcomes are reached')
})

test('atomicWriteDurable of a new file: a crash leaves it missing or complete', async (t) => {
  const setup = async (seed) => new MemoryDirectory({ seed })
  const seen = await crashEverywhere(t, setup, (dir) => dir.atomicWriteDurable('a/b/new', NEW), async (dir, { acknowledged }) => {
    const got = describe(await read(dir, 'a/b/new'))
    if (got !== 'missing' && got !== 'new') return t.log(`a/b/new is ${got}`)
    if (acknowledged && got !== 'new') return t.log('acknowledged but missing')
    return got
  })
  t.true(seen.missing > 0 && seen.new > 0)
})

for (const [title, from, to] of [
  ['in one directory', 'd/staged', 'd/current'],
  ['across directories', 'staging/next', 'live/current'],
]) {
  test(`atomicRenameDurable ${title}: the destination holds the old or the new file, and the new one survives somewhere`, async (t) => {
    const setup = async (seed) => {
      const dir = new MemoryDirectory({ seed })
      await dir.atomicWriteDurable(to, OLD)
      await dir.atomicWriteDurable(from, NEW)
      return dir
    }
    const seen = await crashEverywhere(t, setup, (dir) => dir.atomicRenameDurable(from, to), async (dir, { acknowledged }) => {
      const dst = describe(await read(dir, to))
      const src = describe(await read(dir, from))
      if (dst !== 'old' && dst !== 'new') return t.log(`${to} is ${dst}`)
      if (src !== 'missing' && src !== 'new') return t.log(`${from} is ${src}`)
      if (dst !== 'new' && src !== 'new') return t.log('the new file is gone')
      if (acknowledged && (dst !== 'new' || src !== 'missing')) return t.log(`acknowledged but ${to} is ${dst}, ${from} is ${src}`)
      return `${dst}/${src}`
    })
    t.log(seen)
    t.true(seen['old/new'] > 0 && seen['new/missing'] > 0)
  })
}

test('delete of a directory: a crash leaves it whole, gone, or its rest under a temporary name', async (t) => {
  const setup = async (seed) => {
    const dir = new MemoryDirectory({ seed })
    for (const f of ['tree/a', 'tree/sub/b']) await dir.atomicWriteDurable(f, NEW)
    return dir
  }
  const run = async (dir) => {
    await dir.delete('tree')
    await dir.syncParentDir('tree')
  }
  const seen = await crashEverywhere(t, setup, run, async (dir, { acknowledged }) => {
    const names = await dir.listDir('')
    const leftovers = names.filter((n) => n !== 'tree')
    if (leftovers.some((n) => !/^tree\.tmp-[0-9a-f]{16}$/.test(n))) return t.log(`unexpected names ${names}`)
    if (names.includes('tree')) {
      const whole = describe(await read(dir, 'tree/a')) === 'new' && describe(await read(dir, 'tree/sub/b')) === 'new'
      if (!whole || acknowledged) return t.log(acknowledged ? 'acknowledged but still there' : 'tree is there, but not whole')
    }
    if (acknowledged && leftovers.length > 0) return t.log('acknowledged, but its rest is still there')
    return names.includes('tree') ? 'whole' : leftovers.length > 0 ? 'leftover' : 'gone'
  })
  t.log(seen)
  // Before, the model deleted a tree in one step: a crash never showed what FsDirectory leaves.
  t.true(seen.whole > 0 && seen.gone > 0 && seen.leftover > 0)
})

test('the temporary of an atomic write of a long name fits in 255 bytes and starts with the name', async (t) => {
  const name = 'k'.repeat(250)
  const seen = await crashEverywhere(t, async (seed) => new MemoryDirectory({ seed }), (dir) => dir.atomicWriteDurable(name, NEW), async (dir) => {
    const temps = (await dir.listDir('')).filter((n) => n !== name)
    if (temps.some((n) => !/\.tmp-[0-9a-f]{16}$/.test(n) || !n.startsWith(name.slice(0, 200)) || Buffer.byteLength(n) > 255)) return t.log(`temporaries ${temps}`)
    return temps.length > 0 ? 'leftover' : 'clean'
  })
  t.true(seen.leftover > 0)
})

test('the model punishes a rename without a data barrier first: the file comes back empty', async (t) => {
  const dir = new MemoryDirectory({ seed: 5 })
  await dir.atomicWriteDurable('f', OLD)
  const w = await dir.createFile('f.tmp', { flushPolicy: 'manual' })
  await w.append(NEW)
  await w.close() // 'manual': no barrier
  await dir.atomicRenameDurable('f.tmp', 'f') // the name is durable, the data is not
  dir.crash({ keep: 'none' })
  t.is(describe(await read(dir, 'f')), 'a mix of 0 bytes')
})

test('the model undoes an unsynced rename; atomicWrite is atomic across a crash but not durable', async (t) => {
  const dir = new MemoryDirectory({ seed: 6 })
  await dir.atomicWriteDurable('f', OLD)
  await dir.atomicWrite('f', NEW)
  t.is(describe(await read(dir, 'f')), 'new')
  dir.crash({ keep: 'none' })
  t.is(describe(await read(dir, 'f')), 'old')
  t.deepEqual(await dir.listDir(''), ['f'], 'the temporary name was never durable either')
})

test('a created file survives only once its directory is synced', async (t) => {
  for (const syncDir of [false, true]) {
    const dir = new MemoryDirectory({ seed: 7 })
    const w = await dir.createFile('x/f') // 'per-append': data durable at each append
    await w.append('data')
    await w.close()
    if (syncDir) await dir.syncParentDir('x/f')
    dir.crash({ keep: 'none' })
    t.is(await dir.exists('x/f'), syncDir)
    t.true(await dir.exists('x'), 'directories this layer creates are durable at once')
  }
})

test('a delete survives only once its directory is synced', async (t) => {
  for (const syncDir of [false, true]) {
    const dir = new MemoryDirectory({ seed: 8 })
    await dir.atomicWriteDurable('f', OLD)
    await dir.delete('f')
    if (syncDir) await dir.syncParentDir('f')
    dir.crash({ keep: 'none' })
    t.is(await dir.exists('f'), !syncDir)
  }
})

test('unsynced data may be lost, kept in part or torn; synced data is kept', async (t) => {
  const seen = { lost: 0, partial: 0, torn: 0, whole: 0 }
  for (let seed = 1; seed <= 200; seed++) {
    const dir = new MemoryDirectory({ seed })
    const w = await dir.createFile('f', { flushPolicy: 'manual' })
    await w.append(OLD)
    await w.sync()
    await dir.syncParentDir('f')
    for (let i = 0; i < 4; i++) await w.append(content(700, 10 + i))
    const report = dir.crash()
    const got = await dir.readFile('f')
    t.true(got.subarray(0, OLD.length).equals(OLD), `seed ${seed}: synced bytes kept`)
    if (report.torn) seen.torn++
    if (got.length === OLD.length) seen.lost++
    else if (got.length === OLD.length + 2800) seen.whole++
    else seen.partial++
    await t.throwsAsync(w.append('x'), { instanceOf: SturdyError, code: 'ERR_IO' }, 'a writer from before the crash is dead')
  }
  t.log(seen)
  t.true(seen.lost > 0 && seen.partial > 0 && seen.torn > 0 && seen.whole > 0)
})

test('handles from before a crash fail with ERR_IO; the directory goes on', async (t) => {
  const dir = new MemoryDirectory({ seed: 9 })
  await dir.atomicWriteDurable('f', 'x')
  const r = await dir.openFile('f')
  const w = await dir.appendFile('g')
  const idle = await dir.appendFile('h', { flushPolicy: 'manual' })
  await idle.append('unsynced')
  dir.crash()
  await t.throwsAsync(r.read(0, 1), { instanceOf: SturdyError, code: 'ERR_IO' })
  await t.throwsAsync(w.append('y'), { instanceOf: SturdyError, code: 'ERR_IO' })
  await t.throwsAsync(w.close(), { instanceOf: SturdyError, code: 'ERR_POISONED' }) // released, but it says so
  await t.throwsAsync(idle.sync(), { instanceOf: SturdyError, code: 'ERR_IO' })
  t.is((await dir.readFile('f')).toString(), 'x')
  await dir.atomicWriteDurable('f', 'after')
  t.is((await dir.readFile('f')).toString(), 'after')
  t.is(dir.stats.crashes, 1)
})

test('the same seed and operations replay the same crash', async (t) => {
  const run = async () => {
    const dir = new MemoryDirectory({ seed: 1234 })
    const w = await dir.createFile('f', { flushPolicy: 'manual' })
    for (let i = 0; i < 6; i++) await w.append(content(600, i))
    await dir.atomicWrite('g', NEW)
    const report = dir.crash()
    return { report, f: await read(dir, 'f'), g: describe(await read(dir, 'g')) }
  }
  t.deepEqual(await run(), await run())
})

test('crashAfter counts storage operations; cancelCrash calls it off; plans are validated', async (t) => {
  const dir = new MemoryDirectory({ seed: 10 })
  dir.crashAfter(1)
  dir.cancelCrash()
  await dir.atomicWriteDurable('f', 'safe')
  t.is(dir.stats.crashes, 0)
  dir.crashAfter(2)
  await t.throwsAsync(dir.atomicWriteDurable('f', 'boom'), { instanceOf: SturdyError, code: 'ERR_IO' })
  t.is(dir.stats.crashes, 1)
  t.is((await dir.readFile('f')).toString(), 'safe')
  for (const bad of [0, -1, 1.5]) t.throws(() => dir.crashAfter(bad), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.throws(() => dir.crash({ keep: 'most' }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.throws(() => dir.crash({ tear: 2 }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  t.throws(() => dir.crash({ fill: 'ones' }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
})

test('model: after a crash, an unsynced rewrite of a surviving file is not kept by the next crash', async (t) => {
  const dir = new MemoryDirectory({ seed: 5 })
  await dir.atomicWriteDurable('f', 'AAAAAAAA')
  dir.crash()
  // Rewritten in place, shorter, never synced.
  const w = await dir.createFile('f', { flushPolicy: 'manual' })
  await w.append('BBBB')
  dir.crash({ keep: 'none' })
  t.is((await dir.readFile('f')).toString(), 'AAAAAAAA')
})

test('model: a torn write may lose any of its sectors, its first one too, and keep the ones after', async (t) => {
  const shapes = new Set()
  for (let seed = 1; seed <= 200; seed++) {
    const dir = new MemoryDirectory({ seed })
    await dir.atomicWriteDurable('f', Buffer.alloc(100, 0x41)) // the append below starts mid-sector
    const w = await dir.appendFile('f', { flushPolicy: 'manual' })
    await w.append(Buffer.alloc(1500, 0x42))
    dir.crash({ keep: 'prefix', tear: 1, fill: 'zeros' })
    const got = await dir.readFile('f')
    if (got.length < 1600) continue // the write was not kept at all
    // One letter per piece of the write: its leading partial sector, then each sector.
    const pieces = [[100, 512], [512, 1024], [1024, 1536], [1536, 1600]]
    shapes.add(pieces.map(([a, b]) => (got.subarray(a, b).every((x) => x === 0x42) ? 'B' : got.subarray(a, b).every((x) => x === 0) ? '0' : '?')).join(''))
  }
  t.false([...shapes].some((s) => s.includes('?')), 'each piece is wholly new or wholly lost')
  t.true([...shapes].some((s) => s.startsWith('0') && s.includes('B')), `a lost first piece with later ones kept: ${[...shapes]}`)
  t.true([...shapes].some((s) => /B0+B/.test(s)), `a hole between kept pieces: ${[...shapes]}`)
})
