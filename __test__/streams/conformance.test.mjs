// The upstream Durable Streams server conformance suite (@durable-streams/server-conformance-tests),
// run programmatically against the server under test (STREAMS_TARGET, see helpers.mjs). Not via
// the package's npx CLI (upstream issue #284).
import { runConformanceTests } from '@durable-streams/server-conformance-tests'
import { afterAll, beforeAll, describe } from 'vitest'

import { startServer, TARGET, tempDir } from './helpers.mjs'

// The server answers an idle long-poll with 204 after SERVER_LONG_POLL_MS. The suite uses its
// longPollTimeoutMs option only for the timeouts of its long-poll tests (option + 1 s); several of
// its tests wait out a full server long-poll under the default test timeout (vitest.config.mjs),
// so the server's must be well below both.
const SERVER_LONG_POLL_MS = 3_000
const SUITE_LONG_POLL_MS = 10_000

// runConformanceTests reads options.baseUrl lazily, so it can be filled in by beforeAll.
const config = { baseUrl: '', subscriptions: true, longPollTimeoutMs: SUITE_LONG_POLL_MS }

let server
let tmp

beforeAll(async () => {
  tmp = tempDir('sturdy-streams-conformance-')
  server = await startServer({ dir: tmp.dir, longPollTimeoutMs: SERVER_LONG_POLL_MS })
  config.baseUrl = server.url
})

afterAll(async () => {
  await server?.close()
  tmp?.cleanup()
})

describe(`Durable Streams conformance (${TARGET})`, () => {
  runConformanceTests(config)
})
