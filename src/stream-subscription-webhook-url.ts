// Webhook URL validation against server-side request forgery (PROTOCOL.md sections 6.2, 12.8):
// the server must not be turned into a client for the private network it runs in.

import { isIP } from 'node:net'

/** Why a webhook URL was refused, or `undefined` when it is acceptable. */
export function webhookUrlProblem(raw: string): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'webhook.url must be an absolute URL'
  }
  if (url.username !== '' || url.password !== '') return 'webhook.url must not carry credentials'
  // The URL parser has already canonicalized numeric hosts ("0x7f.1" → "127.0.0.1").
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '')
  if (url.protocol === 'http:') {
    return isDevelopmentHost(host) ? undefined : 'http webhook URLs are only allowed for localhost or 127.0.0.x; use https'
  }
  if (url.protocol !== 'https:') return 'webhook.url must use https'
  if (host === 'localhost' || host.endsWith('.localhost')) return 'webhook.url must not target localhost over https'
  if (host === 'metadata.google.internal') return 'webhook.url must not target a cloud metadata endpoint'
  if (isLocalAddress(host)) return 'webhook.url must not target a private, loopback or link-local address'
  return undefined
}

/** The explicit development exception: plain http to this machine by name or 127.0.0.x. */
function isDevelopmentHost(host: string): boolean {
  return host === 'localhost' || /^127\.0\.0\.\d{1,3}$/.test(host)
}

/** Whether an IP literal is anything but a public unicast address. */
export function isLocalAddress(host: string): boolean {
  const family = isIP(host)
  if (family === 4) return isLocalIpv4(host)
  if (family === 6) return isLocalIpv6(host)
  return false
}

function isLocalIpv4(host: string): boolean {
  const [a, b] = host.split('.').map(Number) as [number, number]
  return (
    a === 0 || // "this network"
    a === 10 || // RFC 1918
    a === 127 || // loopback
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) || // RFC 1918
    (a === 192 && b === 168) || // RFC 1918
    (a === 192 && b === 0) || // IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) || // benchmarking
    a >= 224 // multicast, reserved, broadcast
  )
}

function isLocalIpv6(host: string): boolean {
  const g = ipv6Groups(host)
  if (g === undefined) return true // not a literal we understand: refuse rather than guess
  const embedded = `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`
  const zeros = (from: number, to: number): boolean => g.slice(from, to).every((x) => x === 0)
  // Forms that carry an IPv4 address, which the network may reach as that address.
  if (zeros(0, 5) && g[5] === 0xffff) return isLocalIpv4(embedded) // ::ffff:a.b.c.d, IPv4-mapped
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return isLocalIpv4(embedded) // ::ffff:0:a.b.c.d, SIIT
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return isLocalIpv4(embedded) // 64:ff9b::/96, NAT64
  if (g[0] === 0x2002) return isLocalIpv4(`${g[1]! >> 8}.${g[1]! & 255}.${g[2]! >> 8}.${g[2]! & 255}`) // 6to4
  const first = g[0]!
  return (
    zeros(0, 6) || // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
    (first === 0x64 && g[1] === 0xff9b) || // 64:ff9b:1::/48, local-use NAT64
    (first === 0x100 && zeros(1, 4)) || // 100::/64, discard
    (first === 0x2001 && g[1]! < 0x200) || // 2001::/23, IETF protocol assignments (Teredo included)
    (first === 0x2001 && g[1] === 0xdb8) || // documentation
    (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xffc0) === 0xfec0 || // site-local fec0::/10 (deprecated, still routed privately)
    (first & 0xff00) === 0xff00 // multicast
  )
}

/** The eight 16-bit groups of an IPv6 literal (`::` expanded, a dotted IPv4 tail converted). */
function ipv6Groups(host: string): number[] | undefined {
  let text = host.toLowerCase()
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted[2]!.split('.').map(Number) as [number, number, number, number]
    text = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((x) => parseInt(x, 16)))
  const head = parse(halves[0]!)
  const tail = halves.length === 2 ? parse(halves[1]!) : []
  const groups = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head
  return groups.length === 8 && groups.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff) ? groups : undefined
}
