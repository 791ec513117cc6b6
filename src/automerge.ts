/**
 * `sturdy/automerge`: an automerge-repo storage adapter on sturdy's durable stores.
 *
 * @packageDocumentation
 */
export { SturdyStorageAdapter, encodeStorageKey, decodeStorageKey } from './automerge-adapter.js'
export type { StorageKey, Chunk, SturdyStorageAdapterOptions } from './automerge-adapter.js'
