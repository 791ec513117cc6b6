import { defineConfig } from 'vitest/config'

// Only the vitest files: the *.spec.mjs files here are ava specs run by the root package.
export default defineConfig({
  test: {
    include: ['*.test.mjs'],
    testTimeout: 60_000,
  },
})
