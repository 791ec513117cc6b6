// Shared plumbing for the `sturdy` CLI: argument parsing, usage errors, output helpers.

/** Exit codes used by every command. */
export const EXIT = {
  OK: 0,
  /** `verify` (or `inspect`) found damage in the log. */
  CORRUPT: 1,
  /** Bad command line, or a command that is not available. */
  USAGE: 2,
  /** The command could not run: no log there, locked, I/O error. */
  FAILED: 3,
} as const

/** An error the CLI reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number = EXIT.FAILED, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.USAGE)
}

/** How one option is parsed: a boolean flag, or an option taking a value. */
export interface OptionSpec {
  type: 'boolean' | 'string' | 'number'
  /** For numbers: smallest accepted value (inclusive). */
  min?: number
  /** For numbers: largest accepted value (inclusive). */
  max?: number
  /** For numbers: must be an integer. */
  integer?: boolean
}

export interface Parsed {
  options: Record<string, string | number | boolean | undefined>
  positionals: string[]
}

/**
 * Parse `argv` (the arguments after the command name) against `spec`. Accepts `--name value`,
 * `--name=value`, `-h`/`--help`, and `--` to end options. Unknown options are usage errors.
 */
export function parseArgs(command: string, argv: readonly string[], spec: Record<string, OptionSpec>): Parsed {
  const options: Parsed['options'] = {}
  const positionals: string[] = []
  const full: Record<string, OptionSpec> = { help: { type: 'boolean' }, ...spec }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1))
      break
    }
    if (arg === '-h') {
      options.help = true
      continue
    }
    if (!arg.startsWith('--') || arg === '-') {
      if (arg.startsWith('-') && arg !== '-') throw usageError(`unknown option ${arg} (see sturdy ${command} --help)`)
      positionals.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    // Own names only: `--constructor` must not find Object.prototype's.
    const s = Object.hasOwn(full, name) ? full[name] : undefined
    if (s === undefined) throw usageError(`unknown option --${name} (see sturdy ${command} --help)`)
    if (s.type === 'boolean') {
      if (eq !== -1) throw usageError(`--${name} takes no value`)
      options[name] = true
      continue
    }
    let value: string
    if (eq !== -1) value = arg.slice(eq + 1)
    else {
      if (i + 1 >= argv.length) throw usageError(`--${name} needs a value`)
      value = argv[++i]
    }
    if (s.type === 'string') {
      options[name] = value
      continue
    }
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n)) throw usageError(`--${name} must be a number, got '${value}'`)
    if (s.integer && !Number.isSafeInteger(n)) throw usageError(`--${name} must be an integer, got '${value}'`)
    if (s.min !== undefined && n < s.min) throw usageError(`--${name} must be at least ${s.min}, got ${value}`)
    if (s.max !== undefined && n > s.max) throw usageError(`--${name} must be at most ${s.max}, got ${value}`)
    options[name] = n
  }
  return { options, positionals }
}

/** At most `max` positionals, at least `min`. */
export function expectPositionals(command: string, positionals: string[], min: number, max: number, what: string): void {
  if (positionals.length < min) throw usageError(`missing ${what} (see sturdy ${command} --help)`)
  if (positionals.length > max) throw usageError(`unexpected argument '${positionals[max]}' (see sturdy ${command} --help)`)
}

/** Human-readable byte count: `512 B`, `4.0 KiB`, `64.0 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${v.toFixed(1)} ${units[u]}`
}

/** Latency in the unit that reads best: `12.3 µs`, `4.56 ms`. */
export function formatMicros(us: number): string {
  if (us < 1000) return `${us.toFixed(1)} µs`
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`
  return `${(us / 1e6).toFixed(2)} s`
}

/** Left-aligned table with two-space gutters. */
export function table(rows: readonly (readonly string[])[], rightAlign: readonly number[] = []): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows
    .map((row) =>
      row
        .map((cell, i) => (rightAlign.includes(i) ? cell.padStart(widths[i]) : i === row.length - 1 ? cell : cell.padEnd(widths[i])))
        .join('  '),
    )
    .join('\n')
}

/** Where command output goes; injectable for tests of the command functions. */
export interface Io {
  out: (text: string) => void
  err: (text: string) => void
  /** A TTY stream for progress output, if any. */
  progress?: NodeJS.WriteStream
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
  progress: process.stderr.isTTY ? process.stderr : undefined,
}
