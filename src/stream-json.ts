// JSON mode: each message is stored as its JSON text followed by a comma, so a range of
// messages is a byte range and a read is `[` + range without its last comma + `]`.

import { StreamError } from './stream-error.js'

const COMMA = 0x2c
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) // a BOM stays, and is not JSON

/** True for content types whose streams are in JSON mode. */
export function isJsonType(mediaType: string): boolean {
  return mediaType === 'application/json'
}

/**
 * The stored form of a JSON body: one level of array flattened into messages, each kept as the
 * client wrote it (no re-serialization, so big numbers and formatting survive). An empty array is
 * refused on append (`allowEmpty` false) and means "no messages" on create.
 */
export function jsonMessages(body: Buffer, allowEmpty: boolean): Buffer {
  let value: unknown
  try {
    value = JSON.parse(UTF8.decode(body)) // fatal: invalid UTF-8 is not JSON (the bytes are stored as sent)
  } catch {
    throw new StreamError('INVALID_ARG', 'body is not valid JSON (in UTF-8)')
  }
  const parts = Array.isArray(value) ? arrayElements(body) : [trim(body, 0, body.length)]
  if (parts.length === 0 && !allowEmpty) throw new StreamError('INVALID_ARG', 'an empty JSON array appends nothing')
  const out = Buffer.allocUnsafe(parts.reduce((n, [a, b]) => n + b - a + 1, 0))
  let at = 0
  for (const [a, b] of parts) {
    at += body.copy(out, at, a, b)
    out[at++] = COMMA
  }
  return out
}

/** Byte ranges of the elements of the (valid) top-level JSON array in `text`. */
function arrayElements(text: Buffer): Array<[number, number]> {
  const [open, close] = trim(text, 0, text.length) // valid JSON: `[` ... `]`
  const parts: Array<[number, number]> = []
  let from = open + 1
  for (const comma of commasAt(text, 1, 0, close)) {
    parts.push(trim(text, from, comma))
    from = comma + 1
  }
  const [a, b] = trim(text, from, close - 1)
  if (b > a) parts.push([a, b])
  return parts
}

/**
 * Positions of the commas in `text[from, to)` that sit `depth` levels inside arrays and objects,
 * outside strings: the separators between JSON values at that level.
 */
function* commasAt(text: Buffer, depth: number, from: number, to: number): Generator<number> {
  let level = 0
  let inString = false
  for (let i = from; i < to; i++) {
    const c = text[i]!
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) level++
    else if (c === 0x5d || c === 0x7d) level--
    else if (c === COMMA && level === depth) yield i
  }
}

function trim(text: Buffer, a: number, b: number): [number, number] {
  const space = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
  while (a < b && space(text[a]!)) a++
  while (b > a && space(text[b - 1]!)) b--
  return [a, b]
}

/** The response body for stored JSON messages: a JSON array. */
export function jsonArray(stored: Buffer): Buffer {
  if (stored.length === 0) return Buffer.from('[]')
  const out = Buffer.allocUnsafe(stored.length + 1)
  out[0] = 0x5b // [
  stored.copy(out, 1, 0, stored.length - 1) // drop the last comma
  out[stored.length] = 0x5d // ]
  return out
}

/**
 * Byte length of the first `count` messages of `stored`, or `undefined` if it holds fewer. A
 * stored message ends at a comma outside strings, arrays and objects.
 */
export function messagesLength(stored: Buffer, count: number): number | undefined {
  if (count === 0) return 0
  for (const comma of commasAt(stored, 0, 0, stored.length)) if (--count === 0) return comma + 1
  return undefined
}

/** True if `offset` (inside `stored`) falls between two messages: one pass, up to `offset`. */
export function isMessageBoundary(stored: Buffer, offset: number): boolean {
  if (offset === 0 || offset === stored.length) return true
  for (const comma of commasAt(stored, 0, 0, offset)) if (comma + 1 === offset) return true
  return false
}
