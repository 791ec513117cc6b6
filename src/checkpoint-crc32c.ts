// STOPGAP: a small table-driven CRC32C (Castagnoli) in TypeScript, used until the native addon
// exports its hardware-accelerated `crc32c` (the crate already links one for WAL frames). Swap
// the body of `crc32c` for the native call then; the on-disk format does not change.

const TABLE = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1
    table[i] = c >>> 0
  }
  return table
})()

/**
 * CRC32C of `bytes`, continuing from `crc` (0 to start). Matches the checksum of the WAL's
 * frames (`crc32c` crate).
 *
 * @example
 * ```ts
 * crc32c(Buffer.from('123456789')) // 0xe3069283
 * ```
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8)
  return ~c >>> 0
}
