import { SturdyError } from './errors.js'

/** Record kinds of {@link LogDurableStore}. */
export const PUT = 1
export const TOMBSTONE = 2

/** Kind (u8), key length in UTF-16 code units (u32 LE). */
const HEADER = 5

/**
 * One record of {@link LogDurableStore}: `[kind u8][key length u32 LE, in UTF-16 code units]
 * [key as UTF-16LE][value]`, where kind is {@link PUT} or {@link TOMBSTONE} (no value). UTF-16LE
 * keeps every JavaScript string exactly, lone surrogates included.
 *
 * @example
 * ```ts
 * const rec = encodeLogRecord(PUT, 'k', Buffer.from('v'))
 * decodeLogRecord(rec, 0) // { kind: 1, key: 'k', value: <Buffer 76> }
 * ```
 */
export function encodeLogRecord(kind: typeof PUT | typeof TOMBSTONE, key: string, value?: Uint8Array): Buffer {
  const keyBytes = Buffer.from(key, 'utf16le')
  const valueLength = value?.length ?? 0
  const out = Buffer.allocUnsafe(HEADER + keyBytes.length + valueLength)
  out[0] = kind
  out.writeUInt32LE(key.length, 1)
  keyBytes.copy(out, HEADER)
  if (value !== undefined) out.set(value, HEADER + keyBytes.length)
  return out
}

/**
 * Parse a record written by {@link encodeLogRecord}; `ERR_CORRUPT` (with its LSN) if it is not
 * one. `value` is a view into `record`.
 *
 * @example
 * ```ts
 * for await (const { lsn, data } of wal.entries()) console.log(decodeLogRecord(data, lsn).key)
 * ```
 */
export function decodeLogRecord(record: Buffer, lsn: number): { kind: number; key: string; value: Buffer } {
  const corrupt = (why: string) => new SturdyError('ERR_CORRUPT', `store record at LSN ${lsn} ${why}`, { offset: lsn })
  if (record.length < HEADER) throw corrupt('is too short')
  const kind = record[0]!
  if (kind !== PUT && kind !== TOMBSTONE) throw corrupt(`has unknown kind ${kind}`)
  const keyEnd = HEADER + 2 * record.readUInt32LE(1)
  if (keyEnd > record.length) throw corrupt('has a key longer than the record')
  if (kind === TOMBSTONE && keyEnd !== record.length) throw corrupt('is a tombstone with a value')
  return { kind, key: record.subarray(HEADER, keyEnd).toString('utf16le'), value: record.subarray(keyEnd) }
}
