import { createHash } from 'node:crypto'

import { invalidArg } from './errors.js'

/**
 * Longest file name {@link encodeKey} produces, in characters (all ASCII). Well under the
 * 255-byte name limit of ext4, APFS, NTFS and friends, leaving room for the `.tmp-…` suffix of
 * an atomic write.
 *
 * @example
 * ```ts
 * encodeKey('x'.repeat(1000)).length <= MAX_ENCODED_NAME // true: long keys are hashed
 * ```
 */
export const MAX_ENCODED_NAME = 200

/** Characters kept as they are: lowercase ASCII letters, digits and `-`. */
const PLAIN = /^[a-z0-9-]$/
/** A short name: `k` and the escaped key. */
const SHORT_PREFIX = 'k'
/** A long name: `h`, a readable head of the escaped key, `~` and the SHA-256 of the whole of it. */
const LONG_PREFIX = 'h'
const HEAD_CHARS = MAX_ENCODED_NAME - 1 - 1 - 64

/** The key's UTF-16 code units, each either kept (`[a-z0-9-]`) or escaped as `_` and 4 hex digits. */
function escape(key: string): string {
  let out = ''
  for (let i = 0; i < key.length; i++) {
    const ch = key[i]!
    out += PLAIN.test(ch) ? ch : '_' + key.charCodeAt(i).toString(16).padStart(4, '0')
  }
  return out
}

/**
 * The file name a key is stored under: collision-free for every JavaScript string, including
 * `''`, `'..'`, `'a/b'`, keys differing only in case, and lone surrogates.
 *
 * - Only `[a-z0-9-]` is kept; every other UTF-16 code unit (uppercase letters too, so that
 *   case-insensitive file systems cannot merge two keys) becomes `_` and four lowercase hex
 *   digits. That mapping is injective, and the result is a portable, lowercase ASCII name that
 *   is never `.`/`..`, never a Windows device name and never ends in a dot or space.
 * - Short results are `k` + the escaped key, and {@link decodeKey} reverses them.
 * - Results that would exceed {@link MAX_ENCODED_NAME} are `h` + a head of the escaped key + `~`
 *   + the SHA-256 of the whole escaped key. They cannot be reversed from the name alone, so a
 *   store keeps the full key inside the file and checks it on read.
 *
 * @example
 * ```ts
 * encodeKey('user/Alice')   // 'kuser_002f_0041lice'
 * decodeKey('kuser_002f_0041lice') // 'user/Alice'
 * encodeKey('')             // 'k'
 * ```
 */
export function encodeKey(key: string): string {
  if (typeof key !== 'string') throw invalidArg(`a key must be a string, got ${key === null ? 'null' : typeof key}`)
  const escaped = escape(key)
  if (escaped.length + 1 <= MAX_ENCODED_NAME) return SHORT_PREFIX + escaped
  let head = escaped.slice(0, HEAD_CHARS)
  // Do not cut an escape in half (purely cosmetic: the hash is what makes the name unique).
  const cut = head.lastIndexOf('_')
  if (cut >= 0 && head.length - cut < 5) head = head.slice(0, cut)
  const digest = createHash('sha256').update(escaped, 'latin1').digest('hex')
  return `${LONG_PREFIX}${head}~${digest}`
}

/**
 * The key a short name from {@link encodeKey} stands for; `undefined` for a long (hashed) name,
 * whose key must be read from the file, and for names {@link encodeKey} never produces.
 *
 * @example
 * ```ts
 * decodeKey('ka_002fb') // 'a/b'
 * decodeKey('notes.txt') // undefined
 * ```
 */
export function decodeKey(name: string): string | undefined {
  // A longer key is stored under its hashed name, never this one.
  if (!name.startsWith(SHORT_PREFIX) || name.length > MAX_ENCODED_NAME) return undefined
  let out = ''
  for (let i = 1; i < name.length; ) {
    const ch = name[i]!
    if (ch === '_') {
      const hex = name.slice(i + 1, i + 5)
      if (!/^[0-9a-f]{4}$/.test(hex)) return undefined
      const unit = parseInt(hex, 16)
      // Only the canonical form: a plain character must not arrive escaped.
      if (PLAIN.test(String.fromCharCode(unit))) return undefined
      out += String.fromCharCode(unit)
      i += 5
    } else if (PLAIN.test(ch)) {
      out += ch
      i += 1
    } else {
      return undefined
    }
  }
  return out
}

/**
 * Whether `name` is a name {@link encodeKey} can produce (short or long), as opposed to a
 * temporary file or something else found in the directory.
 *
 * @example
 * ```ts
 * isKeyFileName(encodeKey('x'.repeat(500))) // true
 * isKeyFileName('kx.tmp-0123456789abcdef')  // false
 * ```
 */
export function isKeyFileName(name: string): boolean {
  if (name.startsWith(SHORT_PREFIX)) return decodeKey(name) !== undefined
  return name.startsWith(LONG_PREFIX) && name.length <= MAX_ENCODED_NAME && /^h[a-z0-9_-]*~[0-9a-f]{64}$/.test(name)
}

/**
 * Whether the key of `name` can only be known by reading the file (a long, hashed name).
 *
 * @example
 * ```ts
 * isHashedName(encodeKey('x'.repeat(500))) // true
 * ```
 */
export function isHashedName(name: string): boolean {
  return name.startsWith(LONG_PREFIX)
}
