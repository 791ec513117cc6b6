// On a platform with no binary, loading sturdy fails with an error that names the platform and
// what to do about it.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js')

function loadAs(platform, arch) {
  const script = `Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} });
Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} });
try { require(${JSON.stringify(entry)}); console.log('loaded') } catch (e) { console.log(e.message) }`
  return execFileSync(process.execPath, ['-e', script]).toString().trim()
}

test('an unsupported platform is named, with the prebuilt list and the build-from-source way', (t) => {
  const msg = loadAs('sunos', 'x64')
  t.regex(msg, /sunos-x64/)
  t.regex(msg, /no prebuilt binary exists/)
  t.regex(msg, /win32-x64-msvc/)
  t.regex(msg, /npm run build/)
})

test('a supported platform without its package installed names the package to install', (t) => {
  const msg = loadAs('darwin', 'arm64')
  t.regex(msg, /darwin-arm64/)
  t.regex(msg, /install the package sturdy-darwin-arm64/)
})
