import { invalidArg, SturdyError } from './errors.js'
import type { CrashPlan, CrashReport } from './simulated-disk.js'

/** Torn writes break at sector boundaries, as on the simulated disk of `sturdy/testing`. */
const SECTOR = 512

/** A change to a file's bytes that is not durable yet. */
type DataChange = { kind: 'write'; pos: number; bytes: Buffer } | { kind: 'truncate'; len: number }

/** A file's bytes: what is current, what is on stable storage, and the changes in between. */
export class Inode {
  #buf: Buffer = Buffer.alloc(0)
  #len = 0
  /** The bytes as of the last barrier (or crash). */
  durable: Buffer = Buffer.alloc(0)
  pending: DataChange[] = []

  get length(): number {
    return this.#len
  }

  /** The current bytes (a view: copy before handing out). */
  view(): Buffer {
    return this.#buf.subarray(0, this.#len)
  }

  /** Replace the current bytes (after a crash). */
  reset(bytes: Buffer): void {
    // Its own copy: later writes go into `#buf` in place and must not change what is durable.
    this.#buf = Buffer.from(bytes)
    this.#len = bytes.length
    this.durable = bytes
    this.pending = []
  }

  writeAt(pos: number, bytes: Buffer): void {
    const end = pos + bytes.length
    if (end > this.#buf.length) {
      const grown = Buffer.alloc(Math.max(end, this.#buf.length * 2, 64))
      this.#buf.copy(grown, 0, 0, this.#len)
      this.#buf = grown
    }
    // Space between the old end and `pos` reads as zeros, like a hole in a real file.
    if (pos > this.#len) this.#buf.fill(0, this.#len, pos)
    bytes.copy(this.#buf, pos)
    this.#len = Math.max(this.#len, end)
  }

  truncate(len: number): void {
    if (len > this.#len) this.writeAt(len, Buffer.alloc(0))
    this.#len = len
  }
}

/** What a name stands for: a directory, or a file (its inode, shared by every name for it). */
export type Entry = { kind: 'dir' } | { kind: 'file'; inode: Inode }

/** A change to the names, durable once every directory in `dirs` it touches is synced. */
export type NameChange =
  | { kind: 'link'; key: string; inode: Inode }
  | { kind: 'mkdir'; key: string }
  | { kind: 'remove'; key: string }
  | { kind: 'rename'; from: string; to: string }

interface PendingName {
  change: NameChange
  /** The directories whose entries it changes. */
  dirs: string[]
  /** Made durable by a sync of one of `dirs`. */
  durable: boolean
}

/** The key of the directory holding `key` (`''` is the root). */
export function parentKey(key: string): string {
  const at = key.lastIndexOf('/')
  return at < 0 ? '' : key.slice(0, at)
}

function isDir(names: Map<string, Entry>, key: string): boolean {
  return key === '' || names.get(key)?.kind === 'dir'
}

function under(key: string, dir: string): boolean {
  return key.startsWith(dir + '/')
}

/**
 * Apply `change` to `names` if it still makes sense there (after a crash, changes are replayed
 * on what survived, and one whose source or parent was lost does nothing). Returns whether it
 * was applied.
 */
function applyChange(names: Map<string, Entry>, change: NameChange): boolean {
  switch (change.kind) {
    case 'link':
    case 'mkdir': {
      const existing = names.get(change.key)
      if (!isDir(names, parentKey(change.key)) || existing?.kind === 'dir') return false
      names.set(change.key, change.kind === 'link' ? { kind: 'file', inode: change.inode } : { kind: 'dir' })
      return true
    }
    case 'remove': {
      if (!names.has(change.key)) return false
      names.delete(change.key)
      for (const key of [...names.keys()]) if (under(key, change.key)) names.delete(key)
      return true
    }
    case 'rename': {
      const { from, to } = change
      const entry = names.get(from)
      if (entry === undefined || !isDir(names, parentKey(to)) || under(to, from)) return false
      if (from === to) return true
      const target = names.get(to)
      if (entry.kind === 'file') {
        if (target?.kind === 'dir') return false
      } else {
        if (target?.kind === 'file') return false
        if (target && [...names.keys()].some((k) => under(k, to))) return false
        for (const key of [...names.keys()]) {
          if (!under(key, from)) continue
          names.set(to + key.slice(from.length), names.get(key)!)
          names.delete(key)
        }
      }
      names.set(to, entry)
      names.delete(from)
      return true
    }
  }
}

/** Deterministic pseudo-random numbers from a seed (mulberry32). */
function seededRandom(seed: number): () => number {
  let a = (seed ^ Math.floor(seed / 2 ** 32)) >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

type Keep = 'none' | 'prefix' | 'subset'
type Fill = 'zeros' | 'garbage' | 'old'

function checkPlan(plan: CrashPlan): Required<CrashPlan> {
  if (plan === null || typeof plan !== 'object') throw invalidArg('a crash plan must be an object')
  const { keep = 'any', tear = 0.5, fill = 'any' } = plan
  if (!['none', 'prefix', 'subset', 'any'].includes(keep)) throw invalidArg(`keep must be 'none', 'prefix', 'subset' or 'any'`)
  if (typeof tear !== 'number' || !(tear >= 0 && tear <= 1)) throw invalidArg('tear must be a probability between 0 and 1')
  if (!['zeros', 'garbage', 'old', 'any'].includes(fill)) throw invalidArg(`fill must be 'zeros', 'garbage', 'old' or 'any'`)
  return { keep, tear, fill }
}

/** The error every operation interrupted by (or begun before) a simulated power loss gets. */
export function powerLost(): SturdyError {
  return new SturdyError('ERR_IO', 'the simulated machine lost power', { errno: 5 })
}

/**
 * The storage under a `MemoryDirectory`: names and file bytes as they are now and as they are
 * on stable storage, and the power loss that turns the one into the other. The rules follow
 * the simulated disk of `sturdy/testing`:
 *
 * - A file's bytes are durable after a barrier on it. Unsynced writes and truncations survive
 *   a crash as none, a prefix or a subset of them, in order; one surviving write may be torn
 *   at a sector boundary, the rest of it zeros, garbage or the old bytes.
 * - A create, delete, rename or mkdir is durable once a directory it changes is synced (a
 *   rename across directories is one change, as in a journaling file system). Unsynced ones
 *   survive as none, a prefix or a subset, replayed in order on what survived; one whose source
 *   or parent did not survive does nothing.
 *
 * Every choice comes from the seed, so a schedule replays exactly.
 */
export class MemoryStorage {
  readonly seed: number
  readonly #random: () => number
  #names = new Map<string, Entry>()
  /** The names as on stable storage, before the changes still in `#pending`. */
  #durableNames = new Map<string, Entry>()
  #pending: PendingName[] = []
  /** Bumped by every crash: handles and operations from before it stop working. */
  generation = 0
  #ops = 0
  #syncs = 0
  #crashes = 0
  #crashAt: { op: number; plan: CrashPlan } | undefined
  lastCrash: CrashReport = { pendingOps: 0, keptOps: 0, torn: false }

  constructor(seed: number) {
    this.seed = seed
    this.#random = seededRandom(seed)
  }

  get stats(): { ops: number; syncs: number; crashes: number } {
    return { ops: this.#ops, syncs: this.#syncs, crashes: this.#crashes }
  }

  entry(key: string): Entry | undefined {
    return key === '' ? { kind: 'dir' } : this.#names.get(key)
  }

  /** The names directly inside directory `key`. */
  children(key: string): string[] {
    const out: string[] = []
    for (const k of this.#names.keys()) {
      if (parentKey(k) === key && k !== '') out.push(key === '' ? k : k.slice(key.length + 1))
    }
    return out
  }

  write(inode: Inode, pos: number, bytes: Buffer): void {
    this.#step('change', () => {
      inode.writeAt(pos, bytes)
      inode.pending.push({ kind: 'write', pos, bytes })
    })
  }

  truncate(inode: Inode, len: number): void {
    this.#step('change', () => {
      inode.truncate(len)
      inode.pending.push({ kind: 'truncate', len })
    })
  }

  syncFile(inode: Inode): void {
    this.#step('sync', () => {
      inode.durable = Buffer.from(inode.view())
      inode.pending = []
    })
  }

  syncDir(key: string): void {
    this.#step('sync', () => {
      for (const p of this.#pending) if (p.dirs.includes(key)) p.durable = true
      // Fold the durable head into the durable names; the order of changes is kept.
      while (this.#pending[0]?.durable) applyChange(this.#durableNames, this.#pending.shift()!.change)
    })
  }

  /** Apply a change to the names (the caller has checked it is valid); durable once synced. */
  change(change: NameChange): void {
    const dirs = change.kind === 'rename' ? [...new Set([parentKey(change.from), parentKey(change.to)])] : [parentKey(change.key)]
    this.#step('change', () => {
      applyChange(this.#names, change)
      this.#pending.push({ change, dirs, durable: false })
    })
  }

  crashAfter(ops: number, plan: CrashPlan): void {
    if (!Number.isSafeInteger(ops) || ops < 1) throw invalidArg('ops must be a positive integer')
    checkPlan(plan)
    this.#crashAt = { op: this.#ops + ops, plan }
  }

  cancelCrash(): void {
    this.#crashAt = undefined
  }

  crash(plan: CrashPlan): CrashReport {
    const { keep, tear, fill } = checkPlan(plan)
    const report: CrashReport = { pendingOps: 0, keptOps: 0, torn: false }

    const names = new Map(this.#durableNames)
    const undecided = this.#pending.filter((p) => !p.durable).length
    const chosen = this.#choose(keep, undecided)
    let i = 0
    for (const p of this.#pending) {
      let kept = p.durable
      if (!p.durable) {
        report.pendingOps++
        kept = chosen[i++]
        if (kept) report.keptOps++
      }
      if (kept) applyChange(names, p.change)
    }

    const inodes = new Set<Inode>()
    for (const e of names.values()) if (e.kind === 'file') inodes.add(e.inode)
    for (const inode of inodes) inode.reset(this.#survivingBytes(inode, keep, tear, fill, report))

    this.#names = names
    this.#durableNames = new Map(names)
    this.#pending = []
    this.generation++
    this.#crashes++
    this.#crashAt = undefined
    this.lastCrash = report
    return { ...report }
  }

  /** Count one storage operation; lose power in it if one is scheduled. */
  #step(kind: 'change' | 'sync', effect: () => void): void {
    this.#ops++
    if (kind === 'sync') this.#syncs++
    const at = this.#crashAt
    if (at !== undefined && this.#ops >= at.op) {
      // A change caught in the middle may or may not reach the disk; a barrier does not finish.
      if (kind === 'change') effect()
      this.crash(at.plan)
      throw powerLost()
    }
    effect()
  }

  #int(below: number): number {
    return Math.floor(this.#random() * below)
  }

  #choose(keep: string, n: number): boolean[] {
    const mode: Keep = keep === 'any' ? (['none', 'prefix', 'subset'] as const)[this.#int(3)] : (keep as Keep)
    if (mode === 'none') return new Array<boolean>(n).fill(false)
    if (mode === 'prefix') {
      const k = this.#int(n + 1)
      return Array.from({ length: n }, (_, i) => i < k)
    }
    return Array.from({ length: n }, () => this.#random() < 0.5)
  }

  /** The bytes of `inode` after a power loss: durable bytes plus the surviving changes. */
  #survivingBytes(inode: Inode, keep: string, tear: number, fill: string, report: CrashReport): Buffer {
    const changes = inode.pending
    report.pendingOps += changes.length
    const chosen = this.#choose(keep, changes.length)
    const keptWrites = changes.map((c, i) => (chosen[i] && c.kind === 'write' ? i : -1)).filter((i) => i >= 0)
    const torn = keptWrites.length > 0 && this.#random() < tear ? keptWrites[this.#int(keptWrites.length)] : -1

    const image = new Inode()
    image.writeAt(0, inode.durable)
    changes.forEach((c, i) => {
      if (!chosen[i]) return
      report.keptOps++
      if (c.kind === 'truncate') return image.truncate(c.len)
      const end = c.pos + c.bytes.length
      const old = Buffer.from(image.view().subarray(c.pos, end))
      image.writeAt(c.pos, c.bytes)
      if (i !== torn) return
      report.torn = true
      // The sectors of one write reach the disk in no particular order: each piece (the leading
      // partial sector too) holds the new bytes or not, at least one not.
      const pieces: [number, number][] = []
      for (let from = c.pos; from < end; ) {
        const to = Math.min(end, (Math.floor(from / SECTOR) + 1) * SECTOR)
        pieces.push([from, to])
        from = to
      }
      const lost = pieces.map(() => this.#random() < 0.5)
      if (pieces.length > 0 && !lost.includes(true)) lost[this.#int(pieces.length)] = true
      const how: Fill = fill === 'any' ? (['zeros', 'garbage', 'old'] as const)[this.#int(3)] : (fill as Fill)
      pieces.forEach(([from, to], k) => {
        if (!lost[k]) return
        const rest = Buffer.alloc(to - from)
        if (how === 'garbage') for (let j = 0; j < rest.length; j++) rest[j] = this.#int(256)
        // 'old': the bytes that were there (zeros where the file grew).
        if (how === 'old' && from - c.pos < old.length) old.copy(rest, 0, from - c.pos, Math.min(old.length, to - c.pos))
        image.writeAt(from, rest)
      })
    })
    return Buffer.from(image.view())
  }
}
