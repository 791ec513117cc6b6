// The drop-in install: pack the main package and the linux-x64-gnu platform package, install
// both tarballs into an empty project with no Rust toolchain on PATH and no install scripts, and
// use the library from CommonJS, ESM and TypeScript.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = path.join(ROOT, '__test__', 'fixtures')
const PLATFORM = 'linux-x64-gnu'
const BINARY = `sturdy.${PLATFORM}.node`

/** PATH without any directory that holds cargo or rustc (or lives under .cargo / .rustup). */
function pathWithoutRust() {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((d) => d && !/[\\/]\.(cargo|rustup)([\\/]|$)/.test(d))
    .filter((d) => !['cargo', 'rustc'].some((exe) => fs.existsSync(path.join(d, exe))))
    .join(path.delimiter)
}

function run(cmd, args, options) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, ...options })
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error }
}

/** `npm pack` `dir` into `dest`; returns the tarball's path. */
function pack(t, dir, dest, env) {
  const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], { cwd: dir, env })
  if (r.error || r.code !== 0) return { error: r.error?.message ?? r.stderr }
  const info = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))
  return { tarball: path.join(dest, info[0].filename), files: info[0].files.map((f) => f.path) }
}

const supported = process.platform === 'linux' && process.arch === 'x64' && process.report?.getReport?.().header?.glibcVersionRuntime

test('npm pack + npm install --ignore-scripts: require, import and types work without Rust', (t) => {
  if (!supported) {
    t.pass()
    t.log(`skipped: the packed platform package is ${PLATFORM}; this is ${process.platform}-${process.arch}`)
    return
  }
  if (!fs.existsSync(path.join(ROOT, BINARY))) {
    t.fail(`${BINARY} is not built (npm run build:native)`)
    return
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sturdy-install-'))
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }))
  const env = {
    ...process.env,
    PATH: pathWithoutRust(),
    npm_config_cache: path.join(tmp, 'npm-cache'),
    npm_config_update_notifier: 'false',
    npm_config_loglevel: 'error',
  }
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  delete env.NODE_PATH
  for (const exe of ['cargo', 'rustc']) {
    t.is(run('sh', ['-c', `command -v ${exe}`], { env }).code === 0, false, `${exe} is not on the stripped PATH`)
  }

  // Main package, straight from the repo (package.json's `files` decides what ships).
  const tarballs = path.join(tmp, 'tarballs')
  fs.mkdirSync(tarballs)
  const main = pack(t, ROOT, tarballs, env)
  if (main.error) {
    if (/ENOENT|not found/i.test(main.error) && !main.tarball) {
      t.pass()
      t.log(`skipped: npm pack is unavailable: ${main.error}`)
      return
    }
    t.fail(`npm pack of the main package failed: ${main.error}`)
    return
  }
  for (const f of ['package.json', 'native.js', 'native.d.ts', 'dist/index.js', 'dist/index.mjs', 'dist/index.d.ts']) {
    t.true(main.files.includes(f), `the main tarball ships ${f}`)
  }
  t.false(main.files.some((f) => f.endsWith('.node')), 'the main tarball ships no binary')
  t.false(main.files.some((f) => f.startsWith('crate/') || f.startsWith('src/') || f.startsWith('__test__/')), 'no sources or tests')

  // Platform package: a temp copy of npm/linux-x64-gnu with the built binary in it.
  const platformDir = path.join(tmp, PLATFORM)
  fs.cpSync(path.join(ROOT, 'npm', PLATFORM), platformDir, { recursive: true })
  fs.copyFileSync(path.join(ROOT, BINARY), path.join(platformDir, BINARY))
  const plat = pack(t, platformDir, tarballs, env)
  if (plat.error) {
    t.fail(`npm pack of the platform package failed: ${plat.error}`)
    return
  }
  t.true(plat.files.includes(BINARY), 'the platform tarball ships the binary')

  // An empty project, outside the repo, so nothing resolves to the checkout.
  const project = path.join(tmp, 'consumer')
  fs.mkdirSync(project)
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2))
  const install = run(
    'npm',
    ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--offline', plat.tarball, main.tarball],
    { cwd: project, env },
  )
  t.is(install.code, 0, `npm install failed:\n${install.stderr}`)
  if (install.code !== 0) return
  t.true(fs.existsSync(path.join(project, 'node_modules', 'sturdy', 'native.js')))
  t.true(fs.existsSync(path.join(project, 'node_modules', `sturdy-${PLATFORM}`, BINARY)))

  for (const f of ['consumer.cjs', 'consumer.mjs', 'consumer.ts']) fs.copyFileSync(path.join(FIXTURES, f), path.join(project, f))
  fs.copyFileSync(path.join(FIXTURES, 'consumer-tsconfig.json'), path.join(project, 'tsconfig.json'))

  const nodeEnv = { ...env, NODE_OPTIONS: '' }
  const cjs = run(process.execPath, ['consumer.cjs'], { cwd: project, env: nodeEnv })
  t.is(cjs.code, 0, `require('sturdy') failed:\n${cjs.stderr}`)
  if (cjs.code === 0) {
    const out = JSON.parse(cjs.stdout)
    t.true(out.ok)
    t.true(out.resolved.startsWith(path.join(project, 'node_modules', 'sturdy')), `resolved inside the project: ${out.resolved}`)
  }
  const esm = run(process.execPath, ['consumer.mjs'], { cwd: project, env: nodeEnv })
  t.is(esm.code, 0, `import('sturdy') failed:\n${esm.stderr}`)
  if (esm.code === 0) t.true(JSON.parse(esm.stdout).ok)

  // Types: the repo's tsc, @types/node from the repo (the shipped .d.ts use Buffer).
  fs.mkdirSync(path.join(project, 'node_modules', '@types'), { recursive: true })
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(project, 'node_modules', '@types', 'node'), 'dir')
  const tsc = run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: project, env: nodeEnv })
  t.is(tsc.code, 0, `consumer.ts does not type-check:\n${tsc.stdout}${tsc.stderr}`)

  // The CLI, once package.json has a `bin` entry.
  const bin = path.join(project, 'node_modules', '.bin', 'sturdy')
  if (fs.existsSync(bin)) {
    const help = run(bin, ['--help'], { cwd: project, env: nodeEnv })
    t.is(help.code, 0, help.stderr)
    t.regex(help.stdout, /Usage: sturdy/)
  } else {
    t.log('note: no node_modules/.bin/sturdy: package.json has no "bin" entry yet')
  }
})
