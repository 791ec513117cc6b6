import { constants } from 'node:buffer'

import { crc32c } from './native.js'

/**
 * A checkpoint file: a 40-byte header, then the snapshot bytes. All numbers little-endian.
 *
 * ```
 *  0  magic "STURDYCK"      8 bytes
 *  8  format version (1)    u32
 * 12  header length (40)    u32
 * 16  LSN                   u64
 * 24  snapshot length       u64
 * 32  CRC32C of snapshot    u32
 * 36  CRC32C of bytes 0-35  u32
 * 40  snapshot
 * ```
 *
 * A file is valid only if every field checks out and its length is exactly header + snapshot.
 */
export const CHECKPOINT_HEADER_BYTES = 40
const MAGIC = Buffer.from('STURDYCK', 'latin1')
const VERSION = 1

/** The largest snapshot a checkpoint holds: it is read and written whole, in one Buffer. */
export const MAX_SNAPSHOT_BYTES = constants.MAX_LENGTH - CHECKPOINT_HEADER_BYTES

/**
 * A checkpoint read back and verified.
 *
 * @example
 * ```ts
 * const latest = await cps.latest()
 * if (latest) console.log(`snapshot covers the log up to LSN ${latest.lsn}: ${latest.data.length} bytes`)
 * ```
 */
export interface Checkpoint {
  /** The log position the snapshot covers (see {@link Checkpoints.write}). */
  lsn: number
  /** The snapshot bytes. */
  data: Buffer
}

/**
 * The bytes of a checkpoint file for `data` covering the log up to `lsn`.
 *
 * @example
 * ```ts
 * const file = encodeCheckpoint(1024, Buffer.from('state'))
 * decodeCheckpoint(file) // { lsn: 1024, data: <Buffer 73 74 61 74 65> }
 * ```
 */
export function encodeCheckpoint(lsn: number, data: Buffer): Buffer {
  const file = Buffer.allocUnsafe(CHECKPOINT_HEADER_BYTES + data.length)
  MAGIC.copy(file, 0)
  file.writeUInt32LE(VERSION, 8)
  file.writeUInt32LE(CHECKPOINT_HEADER_BYTES, 12)
  file.writeBigUInt64LE(BigInt(lsn), 16)
  file.writeBigUInt64LE(BigInt(data.length), 24)
  file.writeUInt32LE(crc32c(data), 32)
  file.writeUInt32LE(crc32c(file.subarray(0, 36)), 36)
  data.copy(file, CHECKPOINT_HEADER_BYTES)
  return file
}

/**
 * Verify a checkpoint file and return its content, or why it is not valid.
 *
 * @example
 * ```ts
 * const r = decodeCheckpoint(bytes)
 * if ('damage' in r) console.warn(r.damage)
 * ```
 */
export function decodeCheckpoint(file: Buffer): Checkpoint | { damage: string } {
  if (file.length < CHECKPOINT_HEADER_BYTES) return { damage: `${file.length} bytes is shorter than the header` }
  if (!file.subarray(0, 8).equals(MAGIC)) return { damage: 'bad magic' }
  if (file.readUInt32LE(36) !== crc32c(file.subarray(0, 36))) return { damage: 'header checksum mismatch' }
  const version = file.readUInt32LE(8)
  if (version !== VERSION) return { damage: `unknown format version ${version}` }
  if (file.readUInt32LE(12) !== CHECKPOINT_HEADER_BYTES) return { damage: 'unexpected header length' }
  const lsn = file.readBigUInt64LE(16)
  const length = file.readBigUInt64LE(24)
  if (lsn > BigInt(Number.MAX_SAFE_INTEGER)) return { damage: 'LSN out of range' }
  if (length !== BigInt(file.length - CHECKPOINT_HEADER_BYTES)) {
    return { damage: `snapshot length ${length} does not match the ${file.length - CHECKPOINT_HEADER_BYTES} bytes present` }
  }
  const data = file.subarray(CHECKPOINT_HEADER_BYTES)
  if (file.readUInt32LE(32) !== crc32c(data)) return { damage: 'snapshot checksum mismatch' }
  return { lsn: Number(lsn), data }
}
