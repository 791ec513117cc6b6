// FsDirectory under real OS failures: system calls made to fail (or stall) with strace, and a
// read-only file. Each case runs in a child process; the strace cases are skipped where strace
// is missing or cannot trace.
import { execFile, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

import test from 'ava'

import { tmpDir } from './helpers.mjs'

const DIST = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.mjs')).href
const STRACE = spawnSync('strace', ['-qq', '-o', '/dev/null', 'true']).status === 0
const straceTest = STRACE ? test : test.skip

/**
 * Run `body` (the inside of an async function given `dir`, an FsDirectory on `root`, and
 * `outcome`, which turns a promise into 'ok' or its error code) in a child process, under
 * `strace` with `straceArgs` if given. Returns what the body returns.
 */
async function child(root, body, { straceArgs, uid } = {}) {
  const script = `
    import { FsDirectory } from ${JSON.stringify(DIST)}
    const root = process.argv[1]
    const outcome = (p) => p.then(() => 'ok', (e) => e.code ?? String(e))
    const dir = await FsDirectory.open(root)
    const result = await (async () => { ${body} })()
    process.stdout.write(JSON.stringify(result))`
  const node = [process.execPath, '--input-type=module', '-e', script, root]
  const [file, ...args] = straceArgs ? ['strace', '-f', '-qq', '-o', '/dev/null', ...straceArgs, ...node] : node
  const { stdout } = await promisify(execFile)(file, args, { uid, gid: uid })
  return JSON.parse(stdout)
}

straceTest('a directory whose parent sync failed is not called durable by a second attempt', async (t) => {
  const root = tmpDir(t)
  // Every sync of the root fails: d's entry never becomes durable.
  const got = await child(
    root,
    `const put = async () => { const w = await dir.createFile('d/x'); await w.append('precious'); await w.close(); await dir.syncParentDir('d/x') }
     return [await outcome(put()), await outcome(put())]`,
    { straceArgs: ['-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO', '-P', root] },
  )
  // Before, the second attempt found d there and took it as durable; the root's failed sync is
  // not retried either.
  t.deepEqual(got, ['ERR_IO', 'ERR_POISONED'])
})

/**
 * A child body: a first writer creates d/x (making d); once d exists, a second writer creates
 * d/y and makes it durable. Whether the first was still running when d appeared, and when the
 * second finished, tell whether the second waited for the first one's sync of d's entry.
 */
const TWO_WRITERS = `const fs = await import('node:fs')
  let firstDone = false
  const first = outcome(dir.createFile('d/x')).finally(() => { firstDone = true })
  while (!fs.existsSync(root + '/d')) await new Promise((r) => setTimeout(r, 2))
  const overlapped = !firstDone
  const second = await outcome((async () => { const w = await dir.createFile('d/y'); await w.append('precious'); await w.close(); await dir.syncParentDir('d/y') })())
  const firstDoneBeforeSecond = firstDone
  return { first: await first, second, overlapped, firstDoneBeforeSecond }`

straceTest('a directory whose parent sync is still running is not taken as durable', async (t) => {
  const root = tmpDir(t)
  // The root's syncs stall, then fail; the second writer comes while the first sync stalls.
  const got = await child(root, TWO_WRITERS, { straceArgs: ['-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:delay_enter=1000000', '-P', root] })
  t.true(got.overlapped, 'the second writer came while the first sync stalled')
  // Before, the second writer found d there and was told its file was durable. It waits for the
  // first one's sync, which fails, and is not retried.
  t.deepEqual([got.first, got.second], ['ERR_IO', 'ERR_POISONED'])
})

straceTest('a directory that exists but whose mkdir has not yet returned is not taken as durable', async (t) => {
  const root = tmpDir(t)
  // The first writer's mkdir of d returns to JavaScript 1.5 s after d exists.
  const got = await child(root, TWO_WRITERS, { straceArgs: ['-e', 'trace=mkdir', '-e', 'inject=mkdir:delay_exit=1500000'] })
  t.deepEqual([got.first, got.second], ['ok', 'ok'])
  // Before, the second writer was told its file was durable while the first one's mkdir had
  // not even returned, let alone the root been synced.
  t.true(got.firstDoneBeforeSecond)
})

straceTest('deleting a directory whose removal fails leaves the rest under a temporary name, not its own', async (t) => {
  const root = tmpDir(t)
  fs.mkdirSync(path.join(root, 'tree', 'sub'), { recursive: true })
  for (const f of ['a', 'b', 'sub/c']) fs.writeFileSync(path.join(root, 'tree', f), f)
  const got = await child(root, `return { deleted: await outcome(dir.delete('tree')), exists: await dir.exists('tree'), names: await dir.listDir('') }`, {
    straceArgs: ['-e', 'trace=unlink', '-e', 'inject=unlink:error=EIO:when=1'],
  })
  t.is(got.deleted, 'ERR_IO')
  // Before, the tree stayed under its name with some of its files gone.
  t.false(got.exists)
  t.is(got.names.length, 1)
  t.regex(got.names[0], /^tree\.tmp-[0-9a-f]{16}$/)
})

straceTest('a durable write whose directory sync fails after the rename leaves the new content, as documented', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'cfg.json'), 'OLD')
  const got = await child(root, `return { write: await outcome(dir.atomicWriteDurable('cfg.json', 'NEW')), names: await dir.listDir('') }`, {
    straceArgs: ['-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO', '-P', root],
  })
  t.deepEqual(got, { write: 'ERR_IO', names: ['cfg.json'] })
  t.is(fs.readFileSync(path.join(root, 'cfg.json'), 'utf8'), 'NEW')
})

/** strace arguments that fail the first fdatasync on `file` with EIO and let later ones succeed. */
const failFirstSync = (file) => ['-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=1', '-P', file]

straceTest('a directory sync that failed once is not retried and then called durable', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'z'), 'z')
  const got = await child(
    root,
    `const put = async () => { const w = await dir.createFile('d/x'); await w.append('precious'); await w.close() }
     return [await outcome(put()), await outcome(put()), await outcome(dir.syncParentDir('y')), await outcome(dir.syncFile('z'))]`,
    { straceArgs: failFirstSync(root) },
  )
  // Before, the second put synced the root again, which succeeded, and called d/x durable while
  // d's entry may have been lost with the first sync. A file elsewhere still syncs.
  t.deepEqual(got, ['ERR_IO', 'ERR_POISONED', 'ERR_POISONED', 'ok'])
})

straceTest('a file whose sync failed once is refused later, by syncFile and by a new writer', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'f'), 'first')
  const got = await child(
    root,
    `const more = async () => { const w = await dir.appendFile('f'); try { await w.append('more') } finally { await w.close().catch(() => {}) } }
     return [await outcome(dir.syncFile('f')), await outcome(dir.syncFile('f')), await outcome(more())]`,
    { straceArgs: failFirstSync(path.join(root, 'f')) },
  )
  t.deepEqual(got, ['ERR_IO', 'ERR_POISONED', 'ERR_POISONED'])
})

straceTest('a durable rename whose directory sync failed leaves later durable renames there refused', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'cfg.json'), 'OLD')
  const got = await child(
    root,
    `return [await outcome(dir.atomicWriteDurable('cfg.json', 'NEW')), await outcome(dir.atomicWriteDurable('cfg.json', 'NEWER')), await dir.listDir('')]`,
    { straceArgs: failFirstSync(root) },
  )
  t.deepEqual(got, ['ERR_IO', 'ERR_POISONED', ['cfg.json']])
  t.is(fs.readFileSync(path.join(root, 'cfg.json'), 'utf8'), 'NEW')
})

test('a durable rename that fails before renaming leaves nothing refused', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'a'), 'A')
  fs.mkdirSync(path.join(root, 'full'))
  fs.writeFileSync(path.join(root, 'full', 'inside'), 'x')
  const got = await child(root, `return [await outcome(dir.atomicRenameDurable('a', 'full')), await outcome(dir.atomicRenameDurable('a', 'b')), await dir.listDir('')]`)
  t.deepEqual(got, ['ERR_IO', 'ok', ['b', 'full']])
})

const unixTest = process.platform === 'win32' ? test.skip : test

unixTest('syncFile syncs a read-only file and a write-only one', async (t) => {
  const root = tmpDir(t)
  fs.writeFileSync(path.join(root, 'ro.dat'), 'x', { mode: 0o444 })
  fs.writeFileSync(path.join(root, 'wo.dat'), 'y', { mode: 0o200 })
  // Root may open any file for writing: run as nobody then, so that the mode counts.
  const uid = process.getuid?.() === 0 ? 65534 : undefined
  if (uid !== undefined) {
    // A checkout in a directory only root may enter (mktemp -d makes them 0700) is out of nobody's reach.
    const reachable = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(fileURLToPath(DIST))}, require('fs').constants.R_OK)`], { uid, gid: uid }).status === 0
    if (!reachable) return t.pass('skipped: the package cannot be read as nobody from here')
    fs.chownSync(root, uid, uid)
  }
  if (uid !== undefined) fs.chownSync(path.join(root, 'wo.dat'), uid, uid)
  // Opened for writing, the read-only file failed with EACCES (ERR_IO); opened for reading only,
  // the write-only one did.
  const got = await child(root, `return [await outcome(dir.syncFile('ro.dat')), (await dir.readFile('ro.dat')).toString(), await outcome(dir.syncFile('wo.dat'))]`, { uid })
  t.deepEqual(got, ['ok', 'x', 'ok'])
})
