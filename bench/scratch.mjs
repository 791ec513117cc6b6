// A temporary directory for one benchmark run, removed on exit and on Ctrl-C / SIGTERM.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/**
 * Make `sturdy-<name>-*` under the system temp dir; `beforeRemove` runs first on exit (to stop
 * child processes). Returns the directory and a function handing out fresh subdirectories.
 */
export function scratchDir(name, beforeRemove = () => {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sturdy-${name}-`))
  const cleanup = () => {
    beforeRemove()
    fs.rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      cleanup()
      process.exit(130)
    })
  }
  let n = 0
  const fresh = (label = '') => {
    const d = path.join(dir, `${label}${n++}`)
    fs.mkdirSync(d)
    return d
  }
  return { dir, fresh }
}
