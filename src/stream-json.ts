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
  if (!isJsonArray(body)) {
    const [a, b] = trim(body, 0, body.length)
    return withComma(body, a, b)
  }
  const [open, close] = trim(body, 0, body.length) // valid JSON: `[` ... `]`
  const out = Buffer.allocUnsafe(body.length) // the messages never take more than the array did
  const size = copyElements(body, open + 1, close - 1, out)
  if (size === 0 && !allowEmpty) throw new StreamError('INVALID_ARG', 'an empty JSON array appends nothing')
  return size === out.length ? out : Buffer.from(out.subarray(0, size))
}

/**
 * Copy the elements of the valid JSON array body `text[from, to)` into `out`, each trimmed and
 * followed by a comma, in one pass with nothing kept per element (a 4-million-element body had
 * cost 300 MB of ranges and 4 million calls to copy). Returns the bytes written.
 */
function copyElements(text: Buffer, from: number, to: number, out: Buffer): number {
  let at = 0
  let end = 0 // where the element being copied ends, without trailing whitespace
  let level = 0
  let inString = false
  let leading = true // skipping whitespace before an element
  for (let i = from; i < to; i++) {
    const c = text[i]!
    if (inString) {
      out[at++] = c
      if (c === 0x5c) out[at++] = text[++i]! // backslash: copy the escaped character
      else if (c === 0x22) inString = false
      end = at
      continue
    }
    if (c === COMMA && level === 0) {
      out[end] = COMMA
      at = end = end + 1
      leading = true
      continue
    }
    if (isSpace(c)) {
      if (!leading) out[at++] = c
      continue
    }
    leading = false
    out[at++] = c
    end = at
    if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) level++
    else if (c === 0x5d || c === 0x7d) level--
  }
  if (end > 0 && !leading) out[end++] = COMMA // the last element (none in `[]`)
  return end
}

/** Whether `body` is valid JSON whose value is an array; `INVALID_ARG` if it is not JSON. */
function isJsonArray(body: Buffer): boolean {
  // The parsed value is dropped on return: only the bytes are stored.
  try {
    return Array.isArray(JSON.parse(UTF8.decode(body))) // fatal: invalid UTF-8 is not JSON (the bytes are stored as sent)
  } catch {
    throw new StreamError('INVALID_ARG', 'body is not valid JSON (in UTF-8)')
  }
}

function withComma(text: Buffer, a: number, b: number): Buffer {
  const out = Buffer.allocUnsafe(b - a + 1)
  text.copy(out, 0, a, b)
  out[b - a] = COMMA
  return out
}

/**
 * Calls `visit` with the position of each comma in `text[from, to)` that sits `depth` levels
 * inside arrays and objects (counted from `from`), outside strings: the separators between JSON
 * values at that level. Stops when `visit` returns true.
 */
function scanCommas(text: Buffer, depth: number, from: number, to: number, visit: (comma: number) => boolean | void): void {
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
    else if (c === COMMA && level === depth && visit(i) === true) return
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d
}

function trim(text: Buffer, a: number, b: number): [number, number] {
  while (a < b && isSpace(text[a]!)) a++
  while (b > a && isSpace(text[b - 1]!)) b--
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
  let length: number | undefined
  scanCommas(stored, 0, 0, stored.length, (comma) => {
    if (--count > 0) return false
    length = comma + 1
    return true
  })
  return length
}

/** True if `offset` (inside `stored`) falls between two messages: one pass, up to `offset`. */
export function isMessageBoundary(stored: Buffer, offset: number): boolean {
  if (offset === 0 || offset === stored.length) return true
  let boundary = false
  scanCommas(stored, 0, 0, offset, (comma) => (boundary = comma + 1 === offset))
  return boundary
}
