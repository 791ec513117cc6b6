// Opening an existing log for `inspect` and `verify`: never create one, and turn the library's
// errors into one clear CLI line.
import fs from 'node:fs'
import path from 'node:path'

import { SturdyError } from '../errors.js'
import { Wal } from '../wal.js'
import { CliError, EXIT } from './args.js'

const SEGMENT_NAME = /^\d{20}\.wal(\.tmp)?$/
const HEADER_BYTES = 64

/** One segment file as found on disk, with what its header says. */
export interface SegmentFile {
  file: string
  baseLsn: number
  sizeBytes: number
  /** Capacity from the header, or null if the header is unreadable (the open will report it). */
  capacityBytes: number | null
  /**
   * A prepared, still empty segment (`<base>.wal.tmp`): an open log keeps its next segment under
   * this name until it needs it.
   */
  prepared: boolean
}

/** Segment files in `dir`, ascending by base LSN. */
export function segmentFiles(dir: string): SegmentFile[] {
  const out: SegmentFile[] = []
  for (const file of fs.readdirSync(dir)) {
    if (!SEGMENT_NAME.test(file)) continue
    const p = path.join(dir, file)
    let fd: number
    try {
      fd = fs.openSync(p, 'r')
    } catch (e) {
      // An open log renames its prepared segment in the background: skip a file that moved.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw e
    }
    try {
      const sizeBytes = fs.fstatSync(fd).size
      let capacityBytes: number | null = null
      const h = Buffer.alloc(HEADER_BYTES)
      if (fs.readSync(fd, h, 0, HEADER_BYTES, 0) === HEADER_BYTES && h.toString('latin1', 0, 8) === 'STURDYWL') {
        capacityBytes = Number(h.readBigUInt64LE(24))
      }
      out.push({ file, baseLsn: Number(file.slice(0, 20)), sizeBytes, capacityBytes, prepared: file.endsWith('.tmp') })
    } finally {
      fs.closeSync(fd)
    }
  }
  return out
    .sort((a, b) => a.baseLsn - b.baseLsn)
}

/** Check that `dir` holds a log; never let `Wal.open` create one where none was. */
export function checkLogDir(command: string, dir: string): SegmentFile[] {
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    throw new CliError(code === 'ENOENT' ? `${dir}: no such directory` : `${dir}: ${(e as Error).message}`)
  }
  if (!st.isDirectory()) throw new CliError(`${dir}: not a directory`)
  const segs = segmentFiles(dir)
  if (!segs.some((s) => !s.prepared)) throw new CliError(`${dir}: not a sturdy log (no segment files)`)
  return segs
}

/** Where damage is, as reported by an `ERR_CORRUPT` SturdyError. */
export function corruptionLocation(dir: string, e: SturdyError): string {
  if (e.segment === undefined) return dir
  return `${path.join(dir, e.segment)}${e.offset !== undefined ? ` at offset ${e.offset}` : ''}`
}

/** A CliError for a SturdyError met while reading `dir`. */
export function cliErrorFor(dir: string, e: unknown): unknown {
  if (!(e instanceof SturdyError)) return e
  switch (e.code) {
    case 'ERR_LOCKED':
      return new CliError(`${dir} is locked: another process (or open handle) is using this log; stop it, or run on a copy of the directory`)
    case 'ERR_CORRUPT':
      return new CliError(`corrupt: ${corruptionLocation(dir, e)}: ${e.message}`, EXIT.CORRUPT, { cause: e })
    case 'ERR_IO':
      return new CliError(`${dir}: I/O error${e.errno !== undefined ? ` (errno ${e.errno})` : ''}: ${e.message}`)
    default:
      return new CliError(`${dir}: ${e.code}: ${e.message}`)
  }
}

/**
 * Open the existing log in `dir` read-only with strict recovery: every checksum is checked, a
 * shared lock keeps writers out meanwhile, and nothing is written — a torn tail is reported in
 * `wal.recovery`, not cut.
 */
export function openExistingLog(command: string, dir: string): { wal: Wal; segments: SegmentFile[] } {
  const before = checkLogDir(command, dir)
  let wal: Wal
  try {
    wal = Wal.openSync(dir, { recovery: 'strict', readOnly: true })
  } catch (e) {
    throw cliErrorFor(dir, e)
  }
  return { wal, segments: before }
}
