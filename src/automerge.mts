// ESM entry of `sturdy/automerge`: the same API as the CommonJS build.
export { SturdyStorageAdapter, encodeStorageKey, decodeStorageKey } from './automerge.js'
export type { StorageKey, Chunk, SturdyStorageAdapterOptions } from './automerge.js'
