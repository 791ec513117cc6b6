// `sturdy serve`: run the Durable Streams server on a data directory until SIGINT / SIGTERM.
import { createStreamServer } from '../stream-server.js'
import { StreamError } from '../stream-error.js'
import { CliError, EXIT, expectPositionals, type Io, parseArgs } from './args.js'

export const SERVE_HELP = `Usage: sturdy serve [--dir <dir>] [--host <host>] [--port <port>] [options]

Serve durable streams over HTTP (the Durable Streams protocol) from a data directory. Streams
live at http://<host>:<port>/v1/stream/<name>; every acknowledged write is on stable storage.

Options:
  --dir <dir>              data directory (default ./data; created if missing)
  --host <host>            address to listen on (default 127.0.0.1)
  --port <port>            port (default 4437; 0 picks a free one)
  --shards <n>             shards for a new data directory (default 4; an existing one keeps its own)
  --max-body <bytes>       largest request body, larger ones get 413 (default 8388608)
  --long-poll-ms <ms>      how long a long-poll waits for data (default 20000)
  --retention-ms <ms>      drop stream data older than this (default: keep everything)
  --retention-bytes <n>    keep at most the newest n bytes of each stream (default: everything)
  --no-subscriptions       do not serve the reserved subscription / webhook API
  --local-webhooks         accept plain-http webhooks to this machine even when --host is not
                           a loopback address (they are accepted on loopback by default)
  --public-url <url>       the server's URL as clients reach it (behind a proxy), for Location
                           headers and webhook callback URLs (default: the listening address)
  -h, --help               show this help

Prints "listening on <url>" once it accepts requests; stops cleanly on SIGINT or SIGTERM.

Exit status: 0 stopped, 2 usage error, 3 could not start (directory locked, layout mismatch, port in use).`

export async function serveCommand(argv: readonly string[], io: Io): Promise<number> {
  const { options, positionals } = parseArgs('serve', argv, {
    dir: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'number', min: 0, max: 65535, integer: true },
    shards: { type: 'number', min: 1, integer: true },
    'max-body': { type: 'number', min: 1, integer: true },
    'long-poll-ms': { type: 'number', min: 1, max: 2 ** 31 - 1, integer: true }, // setTimeout's limit
    'retention-ms': { type: 'number', min: 1, integer: true },
    'retention-bytes': { type: 'number', min: 1, integer: true },
    'no-subscriptions': { type: 'boolean' },
    'local-webhooks': { type: 'boolean' },
    'public-url': { type: 'string' },
  })
  if (options.help) {
    io.out(SERVE_HELP)
    return EXIT.OK
  }
  expectPositionals('serve', positionals, 0, 0, 'no arguments')
  const retentionMs = options['retention-ms'] as number | undefined
  const retentionBytes = options['retention-bytes'] as number | undefined
  let server
  try {
    server = await createStreamServer({
      dir: (options.dir as string | undefined) ?? './data',
      host: (options.host as string | undefined) ?? '127.0.0.1',
      port: (options.port as number | undefined) ?? 4437,
      ...(options.shards !== undefined ? { shards: options.shards as number } : {}),
      ...(options['max-body'] !== undefined ? { maxBodyBytes: options['max-body'] as number } : {}),
      ...(options['long-poll-ms'] !== undefined ? { longPollTimeoutMs: options['long-poll-ms'] as number } : {}),
      ...(retentionMs !== undefined || retentionBytes !== undefined
        ? { retention: { ...(retentionMs !== undefined ? { maxAgeMs: retentionMs } : {}), ...(retentionBytes !== undefined ? { maxBytes: retentionBytes } : {}) } }
        : {}),
      subscriptions: options['no-subscriptions'] !== true,
      ...(options['local-webhooks'] === true ? { localWebhooks: true } : {}),
      ...(options['public-url'] !== undefined ? { publicUrl: options['public-url'] as string } : {}),
    })
  } catch (e) {
    if (e instanceof StreamError) throw new CliError(`${e.code}: ${e.message}`, EXIT.FAILED)
    const err = e as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') throw new CliError(`cannot listen: ${err.message}`, EXIT.FAILED)
    throw e
  }
  io.out(`listening on ${server.url} (streams at ${server.streamsUrl})`)
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  await server.close()
  io.out('stopped')
  return EXIT.OK
}
