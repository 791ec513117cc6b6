// The data directory's layout manifest. Streams are spread over shards by a hash of their name;
// changing the shard count or the hash would silently lose streams, so both are recorded at
// creation and checked at every start-up.

import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { FsDirectory } from './fs-directory.js'
import { StreamError } from './stream-error.js'

/** Version of the on-disk format of the stream store. */
export const LAYOUT_FORMAT = 1
/** How names map to shards: FNV-1a (32 bit) of the name's UTF-8 bytes, modulo the shard count. */
export const HASH_POLICY = 'fnv1a32-utf8-mod'
const MANIFEST = 'layout.json'
const MAX_SHARDS = 1024

interface Manifest {
  format: number
  shards: number
  hash: string
}

/** The shard a stream name lives in. */
export function shardOf(name: string, shards: number): number {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h % shards
}

/** The directory of shard `i`. */
export function shardDir(dir: string, i: number): string {
  return join(dir, `shard-${String(i).padStart(3, '0')}`)
}

/**
 * Read the manifest of `dir`, or write one (durably) for a new directory. Returns the shard count.
 * `requested` is the caller's shard count, if it asked for one; a different recorded count is a
 * `LAYOUT_MISMATCH`, as is another format or hash policy.
 */
export async function openLayout(dir: string, requested: number | undefined): Promise<number> {
  if (requested !== undefined && (!Number.isSafeInteger(requested) || requested < 1 || requested > MAX_SHARDS)) {
    throw new StreamError('INVALID_ARG', `shards must be an integer from 1 to ${MAX_SHARDS}`)
  }
  // Creates what is missing durably: each new directory's entry synced in its parent.
  const root = await FsDirectory.open(dir)
  let text: string | undefined
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  if (text === undefined) {
    const strays = (await readdir(dir)).filter((n) => n.startsWith('shard-'))
    if (strays.length > 0) {
      throw new StreamError('LAYOUT_MISMATCH', `${dir} has shard directories but no ${MANIFEST}; refusing to guess its layout`)
    }
    const shards = requested ?? 4
    const manifest: Manifest = { format: LAYOUT_FORMAT, shards, hash: HASH_POLICY }
    await root.atomicWriteDurable(MANIFEST, JSON.stringify(manifest, null, 2) + '\n')
    return shards
  }
  let manifest: Manifest
  try {
    manifest = JSON.parse(text) as Manifest
  } catch {
    throw new StreamError('LAYOUT_MISMATCH', `${join(dir, MANIFEST)} is not valid JSON`)
  }
  if (manifest === null || typeof manifest !== 'object') throw new StreamError('LAYOUT_MISMATCH', `${join(dir, MANIFEST)} is not a layout manifest`)
  const where = join(dir, MANIFEST)
  if (manifest.format !== LAYOUT_FORMAT) {
    throw new StreamError('LAYOUT_MISMATCH', `${where}: format ${manifest.format}, this version reads format ${LAYOUT_FORMAT}`)
  }
  if (manifest.hash !== HASH_POLICY) {
    throw new StreamError('LAYOUT_MISMATCH', `${where}: hash policy ${JSON.stringify(manifest.hash)}, expected ${JSON.stringify(HASH_POLICY)}`)
  }
  if (!Number.isSafeInteger(manifest.shards) || manifest.shards < 1 || manifest.shards > MAX_SHARDS) {
    throw new StreamError('LAYOUT_MISMATCH', `${where}: invalid shard count ${JSON.stringify(manifest.shards)}`)
  }
  if (requested !== undefined && requested !== manifest.shards) {
    throw new StreamError('LAYOUT_MISMATCH', `${where}: ${manifest.shards} shards, but ${requested} were requested (re-sharding is not supported)`)
  }
  return manifest.shards
}
