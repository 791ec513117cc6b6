#!/usr/bin/env node
// The `sturdy` command line: inspect, verify, probe, bench, serve.
import { SturdyError } from '../errors.js'
import { CliError, EXIT, type Io, processIo } from './args.js'
import { benchCommand } from './bench.js'
import { inspectCommand } from './inspect.js'
import { probeCommand } from './probe.js'
import { serveCommand } from './serve.js'
import { verifyCommand } from './verify.js'

export const MAIN_HELP = `Usage: sturdy <command> [options]

Commands:
  inspect <dir>   segments, LSN range, record counts and sizes of a log (--json)
  verify <dir>    read every record and check every checksum; exit 1 and the location on damage
  probe [dir]     what each durability barrier costs on this disk (like pg_test_fsync)
  bench [dir]     a short group-commit vs naive append benchmark on this disk
  serve           serve durable streams over HTTP (the Durable Streams protocol)

Run 'sturdy <command> --help' for a command's options.

Options:
  -h, --help      show this help
  -v, --version   show the version`

const COMMANDS: Record<string, (argv: readonly string[], io: Io) => Promise<number>> = {
  inspect: inspectCommand,
  verify: verifyCommand,
  probe: probeCommand,
  bench: benchCommand,
  serve: serveCommand,
}

function version(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../package.json') as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/** Run the CLI with `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    if (command === 'help' && rest[0] !== undefined && rest[0] in COMMANDS) return main([rest[0], '--help'], io)
    io.out(MAIN_HELP)
    return command === undefined ? EXIT.USAGE : EXIT.OK
  }
  if (command === '--version' || command === '-v') {
    io.out(version())
    return EXIT.OK
  }
  const run = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined
  if (run === undefined) {
    io.err(`sturdy: unknown command '${command}' (see sturdy --help)`)
    return EXIT.USAGE
  }
  try {
    return await run(rest, io)
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`sturdy ${command}: ${e.message}`)
      return e.exitCode
    }
    if (e instanceof SturdyError) {
      io.err(`sturdy ${command}: ${e.code}: ${e.message}`)
      return EXIT.FAILED
    }
    const err = e as NodeJS.ErrnoException
    io.err(`sturdy ${command}: ${err && err.message ? err.message.split('\n')[0] : String(e)}`)
    if (process.env.STURDY_DEBUG) io.err(String(err?.stack))
    return EXIT.FAILED
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (e) => {
      process.stderr.write(`sturdy: ${String(e)}\n`)
      process.exitCode = EXIT.FAILED
    },
  )
}
