// Paths that would leave the root are refused with ERR_INVALID_PATH by every operation on both
// backends, before anything is touched: nothing appears outside the root or inside it.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import { FsDirectory, MemoryDirectory, SturdyError } from '../dist/index.mjs'
import { tmpDir } from './helpers.mjs'

const ATTACKS = [
  '..',
  '../escape',
  'a/../../escape',
  'a/b/../../../escape',
  './../escape',
  '/etc/passwd',
  '/',
  '\\escape',
  '\\\\server\\share\\x',
  '..\\escape',
  'a\\..\\..\\escape',
  'C:',
  'C:escape',
  'c:\\Windows\\x',
  'z:/x',
  'a/...',
  'a/.. ',
  'nul\0byte',
  'a/b\0/../c',
]

// Every operation that takes a path, with the path in each position it can be in.
const OPERATIONS = [
  ['createFile', (d, p) => d.createFile(p)],
  ['appendFile', (d, p) => d.appendFile(p)],
  ['openFile', (d, p) => d.openFile(p)],
  ['readFile', (d, p) => d.readFile(p)],
  ['exists', (d, p) => d.exists(p)],
  ['delete', (d, p) => d.delete(p)],
  ['atomicRename from', (d, p) => d.atomicRename(p, 'inside')],
  ['atomicRename to', (d, p) => d.atomicRename('victim', p)],
  ['atomicRenameDurable from', (d, p) => d.atomicRenameDurable(p, 'inside')],
  ['atomicRenameDurable to', (d, p) => d.atomicRenameDurable('victim', p)],
  ['createDirAll', (d, p) => d.createDirAll(p)],
  ['listDir', (d, p) => d.listDir(p)],
  ['atomicWrite', (d, p) => d.atomicWrite(p, 'x')],
  ['atomicWriteDurable', (d, p) => d.atomicWriteDurable(p, 'x')],
  ['filePath', async (d, p) => d.filePath(p)],
  ['syncFile', (d, p) => d.syncFile(p)],
  ['syncParentDir', (d, p) => d.syncParentDir(p)],
]

const BACKENDS = [
  {
    name: 'fs',
    async open(t) {
      const outer = tmpDir(t)
      const dir = await FsDirectory.open(path.join(outer, 'jail', 'root'))
      return { dir, outside: () => walk(outer).filter((p) => !p.startsWith(path.join('jail', 'root'))) }
    },
  },
  { name: 'memory', open: async () => ({ dir: new MemoryDirectory({ seed: 3 }), outside: () => [] }) },
]

function walk(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return [path.relative(base, p), ...(e.isDirectory() ? walk(p, base) : [])]
  })
}

async function tree(dir, p = '') {
  const out = []
  for (const name of await dir.listDir(p)) {
    const child = p ? `${p}/${name}` : name
    out.push(child)
    if ((await dir.listDir(child).catch(() => null)) !== null) out.push(...(await tree(dir, child)))
  }
  return out
}

for (const backend of BACKENDS) {
  test(`${backend.name}: every operation refuses ${ATTACKS.length} escaping paths and touches nothing`, async (t) => {
    const { dir, outside } = await backend.open(t)
    await dir.atomicWriteDurable('victim', 'original')
    const before = await tree(dir)
    const outsideBefore = outside()
    let refused = 0
    for (const [name, op] of OPERATIONS) {
      for (const attack of ATTACKS) {
        // Some attacks are the root itself once normalised ('/' and the like): refused too.
        const e = await op(dir, attack).then(
          () => undefined,
          (err) => err,
        )
        if (e instanceof SturdyError && e.code === 'ERR_INVALID_PATH') refused++
        else t.fail(`${name}(${JSON.stringify(attack)}) was not refused: ${e ? e.code ?? e.message : 'it succeeded'}`)
      }
    }
    t.is(refused, OPERATIONS.length * ATTACKS.length)
    t.deepEqual(await tree(dir), before)
    t.is((await dir.readFile('victim')).toString(), 'original')
    t.deepEqual(outside(), outsideBefore)
  })

  test(`${backend.name}: harmless spellings stay inside and name the same file`, async (t) => {
    const { dir } = await backend.open(t)
    await dir.atomicWrite('a/b/file', 'same')
    for (const p of ['a//b/file', './a/b/./file', 'a\\b\\file', 'a/b/file/', 'a/b\\./file']) {
      t.is((await dir.readFile(p)).toString(), 'same', p)
    }
    // Dots inside names are ordinary characters.
    await dir.atomicWrite('..hidden', 'h')
    await dir.atomicWrite('a/x..y', 'xy')
    t.deepEqual(await dir.listDir(''), ['..hidden', 'a'])
    t.is((await dir.readFile('a/x..y')).toString(), 'xy')
  })

  test(`${backend.name}: a path that is not a string is ERR_INVALID_ARG`, async (t) => {
    const { dir } = await backend.open(t)
    for (const bad of [undefined, null, 42, {}, ['a']]) {
      await t.throwsAsync(dir.readFile(bad), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
      await t.throwsAsync(dir.atomicWriteDurable(bad, 'x'), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
    }
  })
}
