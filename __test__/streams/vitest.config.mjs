import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['*.test.mjs'],
    // The files start servers on their own temp dirs and ports; run them one at a time so the
    // crash and load tests do not compete with the conformance suite for the shared CPU.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
})
