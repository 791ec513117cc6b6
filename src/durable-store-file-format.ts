import { SturdyError } from './errors.js'
import { crc32c } from './native.js'

/** `SDK1`: the first bytes of every key file. */
const MAGIC = Buffer.from('SDK1', 'latin1')
/** Magic, CRC-32C of the rest, key length in UTF-16 code units. */
const HEADER = 12

/**
 * The content of a key file of {@link FileDurableStore}: `SDK1`, the CRC-32C of everything after
 * it, the key's length in UTF-16 code units (u32 LE), the key as UTF-16LE (so any JavaScript
 * string, lone surrogates included, comes back exactly), then the value. The full key lives in
 * the file because long keys get hashed file names.
 *
 * @example
 * ```ts
 * const file = encodeKeyFile('a/b', Buffer.from('v'))
 * decodeKeyFile(file, 'ka_002fb') // { key: 'a/b', value: <Buffer 76> }
 * ```
 */
export function encodeKeyFile(key: string, value: Uint8Array): Buffer {
  const keyBytes = Buffer.from(key, 'utf16le')
  const out = Buffer.allocUnsafe(HEADER + keyBytes.length + value.length)
  MAGIC.copy(out, 0)
  out.writeUInt32LE(key.length, 8)
  keyBytes.copy(out, HEADER)
  out.set(value, HEADER + keyBytes.length)
  out.writeUInt32LE(crc32c(out.subarray(8)), 4)
  return out
}

/**
 * Parse a key file written by {@link encodeKeyFile}; `ERR_CORRUPT` (naming the file) if it is
 * not one or its checksum does not match.
 *
 * @example
 * ```ts
 * const { key, value } = decodeKeyFile(await dir.readFile(name), name)
 * ```
 */
export function decodeKeyFile(file: Buffer, name: string): { key: string; value: Buffer } {
  const corrupt = (why: string) => new SturdyError('ERR_CORRUPT', `key file ${JSON.stringify(name)} ${why}`, { segment: name, offset: 0 })
  if (file.length < HEADER || !file.subarray(0, 4).equals(MAGIC)) throw corrupt('is not a sturdy key file')
  if (file.readUInt32LE(4) !== crc32c(file.subarray(8))) throw corrupt('fails its checksum')
  const keyEnd = HEADER + 2 * file.readUInt32LE(8)
  if (keyEnd > file.length) throw corrupt('has a key longer than the file')
  return { key: file.subarray(HEADER, keyEnd).toString('utf16le'), value: Buffer.from(file.subarray(keyEnd)) }
}
