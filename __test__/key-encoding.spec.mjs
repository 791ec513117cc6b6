import test from 'ava'

import { encodeKey, decodeKey, MAX_ENCODED_NAME, SturdyError } from '../dist/index.mjs'

/** Keys that break naive encodings. */
export const AWKWARD = [
  '', '.', '..', '...', ' ', 'a/b', 'a_b', 'a\\b', 'a:b', 'A', 'a', 'Ab', 'aB', 'ab', 'CON', 'con', 'nul.txt',
  'k', 'h', '_', '_0041', 'k_0041', 'x.', 'x ', '\0', '\u00e9', 'e\u0301', '\ud800', '\udfff', '\udfff\ud800',
  '\ud83d\ude00', 'ﬀ', 'ß', 'SS', 'x'.repeat(199), 'x'.repeat(200), 'x'.repeat(1000), 'X'.repeat(1000),
  'x'.repeat(1000) + 'y', '/'.repeat(300), '\ud800'.repeat(300),
]

/** `n` distinct deterministic random Unicode keys: any UTF-16 code unit, lone surrogates included. */
export function randomKeys(n, seed = 1) {
  let x = seed >>> 0 || 1
  const next = () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
  const keys = new Set()
  while (keys.size < n) {
    const len = next() % 5 === 0 ? next() % 400 : next() % 24
    let s = ''
    for (let j = 0; j < len; j++) {
      const r = next() % 4
      s += String.fromCharCode(r === 0 ? next() % 0x10000 : r === 1 ? 0x20 + (next() % 0x5f) : r === 2 ? 0xd800 + (next() % 0x800) : 0x61 + (next() % 3))
    }
    keys.add(s)
  }
  return [...keys]
}

const PORTABLE = /^[a-z0-9_~-]+$/

function checkNames(t, keys) {
  const byName = new Map()
  const folded = new Set()
  let bad = 0
  for (const key of keys) {
    const name = encodeKey(key)
    if (!PORTABLE.test(name) || name.length > MAX_ENCODED_NAME) bad++
    const decoded = decodeKey(name)
    if (decoded !== undefined && decoded !== key) bad++
    if (decoded === undefined && !name.startsWith('h')) bad++
    const other = byName.get(name)
    if (other !== undefined && other !== key) bad++
    byName.set(name, key)
    folded.add(name.toUpperCase().normalize('NFKC'))
  }
  t.is(bad, 0, 'every name is portable, short names decode to their key, no two keys share a name')
  t.is(folded.size, new Set(keys).size, 'distinct even on case-insensitive, normalizing file systems')
}

test('awkward keys get distinct, portable, reversible names', (t) => {
  checkNames(t, AWKWARD)
  t.is(decodeKey(encodeKey('a/b')), 'a/b')
  t.is(decodeKey(encodeKey('\ud800')), '\ud800')
  t.not(encodeKey('a/b'), encodeKey('a_b'))
  t.not(encodeKey('A'), encodeKey('a'))
  t.true(encodeKey('x'.repeat(1000)).length <= MAX_ENCODED_NAME)
  t.is(decodeKey(encodeKey('x'.repeat(1000))), undefined, 'long names are hashed: the key lives in the file')
})

test('10,000 random Unicode keys get distinct, reversible names', (t) => {
  const keys = randomKeys(10_000, 7)
  t.is(keys.length, 10_000)
  checkNames(t, keys)
})

test('decodeKey refuses names encodeKey never makes', (t) => {
  for (const name of ['', 'x', 'kA', 'k_0061', 'k_zz', 'k.tmp-0123456789abcdef', 'k_004']) t.is(decodeKey(name), undefined, name)
  // A short name longer than encodeKey ever makes: that key is stored under its hashed name.
  const long = 'k' + 'a'.repeat(MAX_ENCODED_NAME)
  t.not(encodeKey('a'.repeat(MAX_ENCODED_NAME)), long)
  t.is(decodeKey(long), undefined)
  t.is(decodeKey('k' + 'a'.repeat(MAX_ENCODED_NAME - 1)), 'a'.repeat(MAX_ENCODED_NAME - 1))
})

test('a non-string key is ERR_INVALID_ARG', (t) => {
  for (const key of [undefined, null, 1, {}, Buffer.from('k')]) {
    t.throws(() => encodeKey(key), { instanceOf: SturdyError, code: 'ERR_INVALID_ARG' })
  }
})
