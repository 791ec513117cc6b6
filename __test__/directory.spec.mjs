// Every Directory operation, as one suite run against both backends: FsDirectory on a temp
// directory and MemoryDirectory. Same inputs, same results, same error codes.
import fs from 'node:fs'
import path from 'node:path'

import test from 'ava'

import { FsDirectory, MemoryDirectory, SturdyError } from '../dist/index.mjs'
import { tmpDir } from './helpers.mjs'

const BACKENDS = [
  { name: 'fs', open: (t) => FsDirectory.open(path.join(tmpDir(t), 'root')) },
  { name: 'memory', open: async () => new MemoryDirectory({ seed: 1 }) },
]

const ENOTDIR = 20
const EISDIR = 21

function both(title, fn) {
  for (const backend of BACKENDS) test(`${backend.name}: ${title}`, async (t) => fn(t, await backend.open(t), backend.name))
}

const text = async (dir, p) => (await dir.readFile(p)).toString()
async function rejects(t, promise, code, errno) {
  const e = await t.throwsAsync(promise, { instanceOf: SturdyError, code })
  if (errno !== undefined) t.is(e?.errno, errno, `errno of: ${e?.message}`)
}

async function put(dir, p, content) {
  const w = await dir.createFile(p)
  await w.append(content)
  await w.close()
}

both('createFile writes a new file, creating missing parents', async (t, dir) => {
  const w = await dir.createFile('a/b/c.txt')
  t.is(w.path, 'a/b/c.txt')
  await w.append('hello ')
  await w.append(Buffer.from('world'))
  await w.close()
  t.true(w.closed)
  t.is(await text(dir, 'a/b/c.txt'), 'hello world')
  t.deepEqual(await dir.listDir('a'), ['b'])
})

both('createFile truncates an existing file', async (t, dir) => {
  await put(dir, 'f', 'a long first version')
  await put(dir, 'f', 'short')
  t.is(await text(dir, 'f'), 'short')
  const w = await dir.createFile('f')
  await w.close()
  t.is((await dir.readFile('f')).length, 0)
})

both('createFile on a directory fails with EISDIR', async (t, dir) => {
  await dir.createDirAll('d')
  await rejects(t, dir.createFile('d'), 'ERR_IO', EISDIR)
})

both('a path through a file fails with ENOTDIR', async (t, dir) => {
  await put(dir, 'f', 'x')
  await rejects(t, dir.createFile('f/g'), 'ERR_IO', ENOTDIR)
  await rejects(t, dir.openFile('f/g'), 'ERR_IO', ENOTDIR)
  t.false(await dir.exists('f/g'))
})

both('appendFile creates, then appends after what is there', async (t, dir) => {
  const w1 = await dir.appendFile('log/events')
  await w1.append('one\n')
  await w1.close()
  const w2 = await dir.appendFile('log/events')
  await Promise.all(['two\n', 'three\n', 'four\n'].map((l) => w2.append(l))) // kept in call order
  await w2.close()
  t.is(await text(dir, 'log/events'), 'one\ntwo\nthree\nfour\n')
})

both('writers copy the bytes, refuse bad data and reject after close', async (t, dir) => {
  const w = await dir.createFile('w')
  const buf = Buffer.from('abc')
  const pending = w.append(buf)
  buf.fill(0x7a) // reusing the buffer at once is allowed
  await pending
  await rejects(t, w.append(42), 'ERR_INVALID_ARG')
  await w.close()
  await w.close() // harmless
  await rejects(t, w.append('x'), 'ERR_CLOSED')
  await rejects(t, w.sync(), 'ERR_CLOSED')
  t.is(await text(dir, 'w'), 'abc')
})

both('flushPolicy is validated', async (t, dir) => {
  for (const flushPolicy of ['sometimes', { everyN: 0 }, { everyN: 1.5 }, { intervalMs: -1 }, { everyN: 2, intervalMs: 5 }, null]) {
    await rejects(t, dir.createFile('p', { flushPolicy }), 'ERR_INVALID_ARG')
  }
  t.false(await dir.exists('p'))
  for (const flushPolicy of ['per-append', 'manual', { everyN: 3 }, { intervalMs: 1000 }]) {
    const w = await dir.appendFile('p', { flushPolicy })
    await w.append('.')
    await w.sync()
    await w.close()
  }
  t.is(await text(dir, 'p'), '....')
})

both('openFile reads ranges and sees later writes', async (t, dir) => {
  await put(dir, 'r', '0123456789')
  const r = await dir.openFile('r')
  t.is(r.path, 'r')
  t.is(await r.size(), 10)
  t.is((await r.read(2, 3)).toString(), '234')
  t.is((await r.read(8, 10)).toString(), '89')
  t.is((await r.read(20, 4)).length, 0)
  await rejects(t, r.read(-1, 2), 'ERR_INVALID_ARG')
  const w = await dir.appendFile('r')
  await w.append('ab')
  await w.close()
  t.is((await r.readAll()).toString(), '0123456789ab')
  t.is((await r.readAll()).toString(), '0123456789ab') // readAll does not move a cursor
  await r.close()
  await r.close()
})

both('read: a length past the end reads to the end; a bad range is ERR_INVALID_ARG', async (t, dir) => {
  await put(dir, 'r', 'hello')
  const r = await dir.openFile('r')
  // Before, FsDirectory threw a RangeError here (it allocated the whole length first).
  t.is((await r.read(0, 2 ** 33)).toString(), 'hello')
  t.is((await r.read(3, Number.MAX_SAFE_INTEGER)).toString(), 'lo')
  t.is((await r.read(2 ** 40, 10)).length, 0)
  for (const [position, length] of [[0, -1], [0, 1.5], [0, 2 ** 53], [Number.NaN, 1], [0, '5'], [-1, 0]]) {
    await rejects(t, r.read(position, length), 'ERR_INVALID_ARG')
  }
  await r.close()
})

both('a closed reader refuses to read with ERR_CLOSED', async (t, dir) => {
  await put(dir, 'r', 'hello')
  const r = await dir.openFile('r')
  await r.close()
  await rejects(t, r.read(0, 5), 'ERR_CLOSED')
  await rejects(t, r.size(), 'ERR_CLOSED')
  await rejects(t, r.readAll(), 'ERR_CLOSED')
  await r.close()
})

both('openFile and readFile: missing is ERR_NOT_FOUND, a directory EISDIR', async (t, dir) => {
  await rejects(t, dir.openFile('nope'), 'ERR_NOT_FOUND')
  await rejects(t, dir.readFile('no/such/file'), 'ERR_NOT_FOUND')
  await dir.createDirAll('d')
  await rejects(t, dir.openFile('d'), 'ERR_IO', EISDIR)
})

both('exists', async (t, dir) => {
  await put(dir, 'a/f', 'x')
  t.true(await dir.exists('a/f'))
  t.true(await dir.exists('a'))
  t.true(await dir.exists(''))
  t.false(await dir.exists('a/g'))
  t.false(await dir.exists('b/f'))
})

both('delete removes files and whole directories; missing is fine', async (t, dir) => {
  await put(dir, 'f', 'x')
  await put(dir, 'd/e/g', 'y')
  await dir.delete('f')
  await dir.delete('d')
  await dir.delete('never-there')
  await dir.delete('f/under-a-deleted-file')
  t.false(await dir.exists('f'))
  t.false(await dir.exists('d/e/g'))
  t.deepEqual(await dir.listDir(''), [])
  await rejects(t, dir.delete(''), 'ERR_INVALID_PATH') // never the root
})

for (const durable of [false, true]) {
  const op = durable ? 'atomicRenameDurable' : 'atomicRename'
  both(`${op} moves and replaces, across directories`, async (t, dir) => {
    await put(dir, 'src', 'new')
    await put(dir, 'dst', 'old')
    await dir[op]('src', 'dst')
    t.is(await text(dir, 'dst'), 'new')
    t.false(await dir.exists('src'))
    await dir[op]('dst', 'x/y/moved') // the destination's parents are created
    t.is(await text(dir, 'x/y/moved'), 'new')
    t.deepEqual(await dir.listDir(''), ['x'])
    await dir.createDirAll('tree/sub')
    await put(dir, 'tree/sub/leaf', 'l')
    await dir[op]('tree', 'moved-tree')
    t.is(await text(dir, 'moved-tree/sub/leaf'), 'l')
  })

  both(`${op}: a missing source is ERR_NOT_FOUND and changes nothing`, async (t, dir) => {
    await put(dir, 'dst', 'old')
    await rejects(t, dir[op]('missing', 'dst'), 'ERR_NOT_FOUND')
    t.is(await text(dir, 'dst'), 'old')
    t.false(await dir.exists('missing'))
  })

  both(`${op}: a file over a directory fails with EISDIR`, async (t, dir) => {
    await put(dir, 'f', 'x')
    await put(dir, 'd/inner', 'y')
    await rejects(t, dir[op]('f', 'd'), 'ERR_IO', EISDIR)
    t.is(await text(dir, 'd/inner'), 'y')
    t.is(await text(dir, 'f'), 'x')
  })
}

both('createDirAll creates nested directories, is idempotent, refuses to go through a file', async (t, dir) => {
  await dir.createDirAll('a/b/c')
  await dir.createDirAll('a/b/c')
  await dir.createDirAll('')
  t.deepEqual(await dir.listDir('a/b'), ['c'])
  await put(dir, 'f', 'x')
  await rejects(t, dir.createDirAll('f/g'), 'ERR_IO', ENOTDIR)
})

for (const op of ['atomicWrite', 'atomicWriteDurable']) {
  both(`${op} takes every name createFile takes, up to 255 bytes`, async (t, dir) => {
    const names = ['n'.repeat(255), 'é'.repeat(127), '😀'.repeat(63)]
    for (const name of names) {
      await put(dir, name, 'created')
      // Before, FsDirectory failed here: the temporary name was 21 bytes longer.
      await dir[op](name, 'replaced')
      t.is(await text(dir, name), 'replaced')
    }
    t.deepEqual(await dir.listDir(''), [...names].sort())
  })
}

both('listDir is sorted, lists files and directories, and empty for a missing directory', async (t, dir) => {
  for (const n of ['b', 'a', 'C', 'b2', 'a.tmp']) await put(dir, n, n)
  await dir.createDirAll('dir')
  t.deepEqual(await dir.listDir(''), ['C', 'a', 'a.tmp', 'b', 'b2', 'dir'])
  t.deepEqual(await dir.listDir('.'), ['C', 'a', 'a.tmp', 'b', 'b2', 'dir'])
  t.deepEqual(await dir.listDir('nope'), [])
  await rejects(t, dir.listDir('a'), 'ERR_IO', ENOTDIR)
})

for (const durable of [false, true]) {
  const op = durable ? 'atomicWriteDurable' : 'atomicWrite'
  both(`${op} replaces content and leaves no temporary file`, async (t, dir) => {
    await dir[op]('cfg/settings.json', '{"v":1}')
    await dir[op]('cfg/settings.json', Buffer.from('{"v":2}'))
    await dir[op]('cfg/empty', '')
    t.is(await text(dir, 'cfg/settings.json'), '{"v":2}')
    t.is((await dir.readFile('cfg/empty')).length, 0)
    t.deepEqual(await dir.listDir('cfg'), ['empty', 'settings.json'])
  })

  both(`${op}: bad input and failures leave the old content and no temporary file`, async (t, dir) => {
    await dir[op]('f', 'old')
    await rejects(t, dir[op]('f', 42), 'ERR_INVALID_ARG')
    await rejects(t, dir[op]('../f', 'new'), 'ERR_INVALID_PATH')
    await rejects(t, dir[op]('', 'new'), 'ERR_INVALID_PATH')
    await dir.createDirAll('d')
    await put(dir, 'd/keep', 'k')
    await rejects(t, dir[op]('d', 'new'), 'ERR_IO', EISDIR) // the rename over a directory fails
    t.is(await text(dir, 'f'), 'old')
    t.deepEqual(await dir.listDir(''), ['d', 'f'])
    t.deepEqual(await dir.listDir('d'), ['keep'])
  })
}

both('syncFile and syncParentDir', async (t, dir) => {
  await put(dir, 'a/f', 'x')
  await dir.syncFile('a/f')
  await dir.syncParentDir('a/f')
  await dir.syncParentDir('a/not-yet-created') // the name need not exist; its directory must
  await dir.syncParentDir('top-level')
  await rejects(t, dir.syncFile('a/missing'), 'ERR_NOT_FOUND')
  await rejects(t, dir.syncParentDir('missing-dir/f'), 'ERR_NOT_FOUND')
})

test('fs: filePath is the absolute path inside the root; open creates the root', async (t) => {
  const root = path.join(tmpDir(t), 'new', 'root')
  const dir = await FsDirectory.open(root)
  t.true(fs.statSync(root).isDirectory())
  t.is(dir.root, root)
  t.is(dir.filePath('a/b'), path.join(root, 'a', 'b'))
  t.is(dir.filePath('a\\b'), path.join(root, 'a', 'b'))
  t.is(dir.filePath(''), root)
  await put(dir, 'a/b', 'on disk')
  t.is(fs.readFileSync(path.join(root, 'a', 'b'), 'utf8'), 'on disk')
  t.throws(() => dir.filePath('../x'), { instanceOf: SturdyError, code: 'ERR_INVALID_PATH' })
})

test('fs: open refuses a bad root', async (t) => {
  await t.throwsAsync(FsDirectory.open(''), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  await t.throwsAsync(FsDirectory.open('a\0b'), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  const file = path.join(tmpDir(t), 'file')
  fs.writeFileSync(file, 'x')
  await t.throwsAsync(FsDirectory.open(file), { instanceOf: SturdyError, code: 'ERR_IO' })
})

test('memory: filePath is undefined (there is no file system path)', (t) => {
  const dir = new MemoryDirectory()
  t.is(dir.filePath('a/b'), undefined)
  t.throws(() => dir.filePath('/etc'), { instanceOf: SturdyError, code: 'ERR_INVALID_PATH' })
  t.throws(() => new MemoryDirectory({ seed: -1 }), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
})
