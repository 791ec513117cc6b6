// A stand-in for `sturdy serve` that runs the upstream reference server, so the child-process
// tests can run with STREAMS_TARGET=reference: `node reference-cli.mjs serve --dir D --host H --port P`.
import { parseArgs } from 'node:util'

import { referenceModule } from './helpers.mjs'

const { values } = parseArgs({
  args: process.argv.slice(3),
  options: { dir: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '0' } },
})
const { DurableStreamTestServer } = await referenceModule()
const server = new DurableStreamTestServer({ port: Number(values.port), host: values.host, dataDir: values.dir })
await server.start()
console.log(`listening on ${server.url.replace(/\/$/, '')}`)
const stop = async () => {
  await server.stop()
  process.exit(0)
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
