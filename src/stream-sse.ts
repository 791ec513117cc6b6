// Live reads as Server-Sent Events: a `data` event per chunk read (base64 for binary streams),
// each followed by a `control` event with the next offset; then wait for more. The response ends
// when the stream closes, is deleted, the client goes, or after `maxMs` (clients reconnect).

import type { ServerResponse } from 'node:http'
import type { StreamStore } from './stream-store.js'
import type { ReadQuery } from './stream-headers.js'
import { nextCursor } from './stream-cursor.js'
import { jsonArray } from './stream-json.js'
import { formatOffset, parsePosition } from './stream-offset.js'
import { mediaTypeOf } from './stream-state.js'

const LINE_BREAK = /\r\n|\r|\n/

/** Serve `GET ?live=sse` on stream `name`. Errors before the first byte propagate (404, 410, 400). */
export async function serveSse(
  store: StreamStore,
  name: string,
  query: ReadQuery,
  res: ServerResponse,
  options: { maxMs: number; closing: AbortSignal },
): Promise<void> {
  let position = await store.position(name, query.offset)
  const info = await store.head(name)
  const type = mediaTypeOf(info.contentType)
  const base64 = !(type.startsWith('text/') || type === 'application/json')
  const headers: Record<string, string> = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' }
  if (base64) headers['Stream-SSE-Data-Encoding'] = 'base64'
  res.writeHead(200, headers)
  res.flushHeaders()

  const abort = new AbortController()
  const stop = () => abort.abort()
  const timer = setTimeout(stop, options.maxMs)
  res.on('close', stop)
  options.closing.addEventListener('abort', stop)
  if (res.destroyed || options.closing.aborted) stop() // gone before the listeners were attached
  let cursor = query.cursor
  try {
    for (let first = true; !abort.signal.aborted; first = false) {
      let r
      try {
        r = await store.read(name, { kind: 'position', position })
      } catch {
        break // deleted or expired meanwhile: end the response
      }
      if (r.uid !== info.uid) break // deleted and created again meanwhile: another stream
      const end = parsePosition(r.nextOffset)
      // Text goes out as whole characters: a character split between two appends would
      // otherwise reach live readers as two U+FFFD. Its start is the next offset to read from.
      const data = base64 || r.json || r.closed ? r.data : r.data.subarray(0, wholeUtf8Length(r.data))
      if (data.length > 0) {
        await send(res, dataEvent(r.json ? jsonArray(data) : data, base64))
        position = end - (r.data.length - data.length)
      }
      if (data.length > 0 || first || r.closed) {
        const control: Record<string, unknown> = { streamNextOffset: formatOffset(position) }
        if (!r.closed) control.streamCursor = cursor = nextCursor(cursor)
        // Not while part of a character is held back: the next offset is short of the tail.
        if (r.upToDate && data.length === r.data.length) control.upToDate = true
        if (r.closed) control.streamClosed = true
        await send(res, `event: control\ndata:${JSON.stringify(control)}\n\n`)
      }
      if (r.closed) break
      if (!r.upToDate) continue
      try {
        // From the end of what was read: a held-back part of a character needs more bytes.
        await store.wait(name, end, options.maxMs, abort.signal)
      } catch {
        break
      }
    }
  } finally {
    clearTimeout(timer)
    res.off('close', stop)
    options.closing.removeEventListener('abort', stop)
    res.end()
  }
}

/**
 * One SSE `data` event; every line of the payload gets its own `data:` field. Parsers drop one
 * space after `data:`, so a line that starts with a space gets one more. (SSE itself turns CR and
 * CRLF line ends into LF; binary streams are base64 and keep every byte.)
 */
function dataEvent(payload: Buffer, base64: boolean): string {
  const text = base64 ? payload.toString('base64') : payload.toString('utf8')
  const lines = base64 ? [text] : text.split(LINE_BREAK)
  let out = 'event: data\n'
  for (const line of lines) out += line.startsWith(' ') ? `data: ${line}\n` : `data:${line}\n`
  return out + '\n'
}

/**
 * The length of `bytes` without an unfinished UTF-8 sequence at its end (at most 3 bytes are
 * held back; anything else, valid or not, is left to the decoder).
 */
export function wholeUtf8Length(bytes: Uint8Array): number {
  for (let i = bytes.length - 1; i >= 0 && i >= bytes.length - 3; i--) {
    const b = bytes[i]!
    if ((b & 0xc0) === 0x80) continue // a continuation byte: its lead is further back
    const needs = b >= 0xf8 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1
    return i + needs > bytes.length ? i : bytes.length
  }
  return bytes.length
}

/** Write, waiting for the socket to drain when its buffer is full. */
function send(res: ServerResponse, text: string): Promise<void> {
  if (res.destroyed) return Promise.resolve()
  if (res.write(text)) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}
