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

// Symbolic links: the text of a path may stay inside while a link in the tree leads out.
async function linkedJail(t) {
  const outer = tmpDir(t)
  const outside = path.join(outer, 'outside')
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(outside, 'secret'), 'outside')
  const dir = await FsDirectory.open(path.join(outer, 'root'))
  await dir.atomicWriteDurable('victim', 'original')
  const snapshot = () =>
    walk(outer).map((p) => {
      const st = fs.lstatSync(path.join(outer, p))
      return `${p} ${st.isFile() ? fs.readFileSync(path.join(outer, p), 'utf8') : st.isSymbolicLink() ? `-> ${fs.readlinkSync(path.join(outer, p))}` : 'dir'}`
    })
  return { outer, outside, dir, snapshot }
}

async function refusal(op) {
  return op.then(
    () => 'it succeeded',
    (e) => (e instanceof SturdyError && e.code === 'ERR_INVALID_PATH' ? undefined : e.code ?? e.message),
  )
}

test('fs: a link to a directory outside the root refuses every operation through it, touching nothing', async (t) => {
  const { outside, dir, snapshot } = await linkedJail(t)
  fs.symlinkSync(outside, path.join(dir.root, 'out'))
  // A link inside a subdirectory, relative, climbing out.
  fs.mkdirSync(path.join(dir.root, 'sub'))
  fs.symlinkSync(path.join('..', '..', 'outside'), path.join(dir.root, 'sub', 'up'))
  const before = snapshot()
  for (const through of ['out/secret', 'out/new', 'out/a/b', 'sub/up/secret', 'sub/up/new/x']) {
    for (const [name, op] of OPERATIONS) {
      if (name === 'filePath') continue // no I/O: it names the path, it does not resolve it
      const why = await refusal(op(dir, through))
      if (why !== undefined) t.fail(`${name}(${JSON.stringify(through)}) was not refused: ${why}`)
    }
  }
  t.deepEqual(snapshot(), before)
  t.is(fs.readFileSync(path.join(outside, 'secret'), 'utf8'), 'outside')
  // The links themselves are names in the root like any other.
  t.true(await dir.exists('out'))
  await dir.atomicRenameDurable('out', 'moved')
  await dir.delete('moved')
  await dir.delete('sub/up')
  t.deepEqual(await dir.listDir(''), ['sub', 'victim'])
  t.deepEqual(fs.readdirSync(outside), ['secret'])
})

test('fs: a link to a file outside is not followed; replacing or deleting the link leaves its target', async (t) => {
  const { outside, dir, snapshot } = await linkedJail(t)
  fs.symlinkSync(path.join(outside, 'secret'), path.join(dir.root, 'lnk'))
  const before = snapshot()
  for (const op of ['openFile', 'readFile', 'createFile', 'appendFile', 'syncFile', 'listDir', 'createDirAll']) {
    const why = await refusal(OPERATIONS.find(([n]) => n === op)[1](dir, 'lnk'))
    if (why !== undefined) t.fail(`${op}("lnk") was not refused: ${why}`)
  }
  t.deepEqual(snapshot(), before)
  // An atomic write renames a new file over the link: the target keeps its content.
  await dir.atomicWriteDurable('lnk', 'inside now')
  t.is((await dir.readFile('lnk')).toString(), 'inside now')
  t.false(fs.lstatSync(path.join(dir.root, 'lnk')).isSymbolicLink())
  fs.symlinkSync(path.join(outside, 'secret'), path.join(dir.root, 'lnk2'))
  await dir.delete('lnk2')
  t.is(fs.readFileSync(path.join(outside, 'secret'), 'utf8'), 'outside')
})

test('fs: a dangling link is refused where following it would create its target', async (t) => {
  const { outside, dir, snapshot } = await linkedJail(t)
  fs.symlinkSync(path.join(outside, 'planted'), path.join(dir.root, 'dangling'))
  fs.symlinkSync(path.join(outside, 'planted-dir'), path.join(dir.root, 'dangling-dir'))
  const before = snapshot()
  for (const [op, p] of [
    ['createFile', 'dangling'],
    ['appendFile', 'dangling'],
    ['createDirAll', 'dangling-dir'],
    ['createDirAll', 'dangling-dir/a/b'],
    ['atomicWriteDurable', 'dangling-dir/x'],
    ['atomicRename to', 'dangling-dir/x'],
  ]) {
    const why = await refusal(OPERATIONS.find(([n]) => n === op)[1](dir, p))
    if (why !== undefined) t.fail(`${op}(${JSON.stringify(p)}) was not refused: ${why}`)
  }
  t.deepEqual(snapshot(), before)
  t.deepEqual(fs.readdirSync(outside), ['secret'])
})

test('fs: links that stay inside the root work, and so does a root reached through a link', async (t) => {
  const { outer, dir } = await linkedJail(t)
  await dir.createDirAll('real/deep')
  fs.symlinkSync(path.join(dir.root, 'real'), path.join(dir.root, 'abs'))
  fs.symlinkSync(path.join('real', 'deep'), path.join(dir.root, 'rel'))
  await dir.atomicWriteDurable('abs/a', 'via abs')
  await dir.atomicWriteDurable('rel/b', 'via rel')
  const w = await dir.createFile('rel/c')
  await w.append('c')
  await w.close()
  t.is((await dir.readFile('real/a')).toString(), 'via abs')
  t.deepEqual(await dir.listDir('real/deep'), ['b', 'c'])
  t.deepEqual(await dir.listDir('abs/deep'), ['b', 'c'])
  fs.symlinkSync(dir.root, path.join(outer, 'root-link'))
  const viaLink = await FsDirectory.open(path.join(outer, 'root-link'))
  t.is((await viaLink.readFile('rel/b')).toString(), 'via rel')
  await viaLink.atomicWriteDurable('abs/d', 'd')
  t.is((await dir.readFile('real/d')).toString(), 'd')
})

test('fs: a root reached through a link follows the link when it is pointed elsewhere', async (t) => {
  const outer = tmpDir(t)
  fs.mkdirSync(path.join(outer, 'v1'))
  fs.mkdirSync(path.join(outer, 'v2'))
  fs.symlinkSync(path.join(outer, 'v1'), path.join(outer, 'current'))
  const dir = await FsDirectory.open(path.join(outer, 'current'))
  await dir.atomicWriteDurable('k', 'one')
  // A release switch: the link now names another directory.
  fs.rmSync(path.join(outer, 'current'))
  fs.symlinkSync(path.join(outer, 'v2'), path.join(outer, 'current'))
  t.false(await dir.exists('k'))
  await dir.atomicWriteDurable('k', 'two')
  t.is((await dir.readFile('k')).toString(), 'two')
  t.is(fs.readFileSync(path.join(outer, 'v1', 'k'), 'utf8'), 'one')
  t.is(fs.readFileSync(path.join(outer, 'v2', 'k'), 'utf8'), 'two')
  // A link inside the new root into the old one leads out of the root now.
  fs.symlinkSync(path.join(outer, 'v1'), path.join(outer, 'v2', 'back'))
  await t.throwsAsync(dir.readFile('back/k'), { code: 'ERR_INVALID_PATH' })
  fs.rmSync(path.join(outer, 'v2', 'back'))
  // A root link to nothing answers as a deleted root does.
  fs.rmSync(path.join(outer, 'v2'), { recursive: true })
  t.false(await dir.exists('k'))
  await t.throwsAsync(dir.readFile('k'), { code: 'ERR_NOT_FOUND' })
})
