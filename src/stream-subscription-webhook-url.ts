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
  const h = host.toLowerCase()
  if (h === '::' || h === '::1') return true
  // IPv4-mapped (::ffff:a.b.c.d, which the URL parser writes as ::ffff:XXXX:XXXX) and friends.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h)
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16)
    const lo = parseInt(mapped[2]!, 16)
    return isLocalIpv4(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`)
  }
  if (h.startsWith('::ffff:')) return isLocalIpv4(h.slice(7))
  const first = parseInt(h.split(':')[0] || '0', 16)
  return (
    (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xff00) === 0xff00 // multicast
  )
}
