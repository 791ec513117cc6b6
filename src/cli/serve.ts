// `sturdy serve`: the stream server is not built yet; say so clearly.
import { CliError, EXIT, type Io } from './args.js'

export const SERVE_HELP = `Usage: sturdy serve

Serve logs as streams over the network. Not available yet: the stream server is not built.

Exit status: 2 (not available).`

export async function serveCommand(argv: readonly string[], io: Io): Promise<number> {
  // Accept any arguments the future server may take; only --help is meaningful today.
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(SERVE_HELP)
    return EXIT.OK
  }
  throw new CliError('not available yet: the stream server is not built', EXIT.USAGE)
}
