import { isBytes } from './bytes.js'
import { invalidArg } from './errors.js'

/**
 * What a Directory writes: bytes, or a string stored as UTF-8.
 *
 * @example
 * ```ts
 * await dir.atomicWriteDurable('a.bin', new Uint8Array([1, 2]))
 * await dir.atomicWriteDurable('b.txt', 'text')
 * ```
 */
export type FileData = Uint8Array | string

/**
 * The bytes of `data` in a Buffer of their own (a copy), so the caller may reuse its buffer as
 * soon as the call returns. `ERR_INVALID_ARG` for anything but bytes or a string.
 */
export function ownBytes(data: unknown): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8')
  if (isBytes(data)) return Buffer.from(data)
  throw invalidArg(`data must be a Uint8Array or a string, got ${data === null ? 'null' : typeof data}`)
}

/** `ERR_INVALID_ARG` unless `position` and `length` are non-negative integers. */
export function checkRange(position: unknown, length: unknown): void {
  if (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0) {
    throw invalidArg('position must be a non-negative integer')
  }
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) {
    throw invalidArg('length must be a non-negative integer')
  }
}
