// The server's subscription secrets: the Ed25519 key that signs webhook deliveries (its public
// half is published as a JWKS, PROTOCOL.md section 6.5) and the HMAC key behind callback and
// claim tokens. Both are kept in one owner-only file so the `kid` and outstanding tokens stay
// valid across restarts.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { open } from 'node:fs/promises'

import { isTempName } from './directory-atomic-write.js'
import type { FsDirectory } from './fs-directory.js'

const KEY_FILE = 'signing-key.json'

/** One public key of the webhook JWK Set. */
export interface WebhookPublicJwk {
  kty: 'OKP'
  crv: 'Ed25519'
  x: string
  kid: string
  use: 'sig'
  alg: 'EdDSA'
}

interface KeyFile {
  version: 1
  /** PKCS#8 PEM of the Ed25519 signing key. */
  ed25519_private_key: string
  /** base64url of the 32-byte HMAC key for wake tokens. */
  token_secret: string
}

/** The subscription service's signing keys, loaded from (or first created in) its directory. */
export class SubscriptionKeys {
  readonly #privateKey: KeyObject
  /** Public JWK of the signing key, `kid` included. */
  readonly publicJwk: WebhookPublicJwk
  /** The HMAC key for callback and claim tokens. */
  readonly tokenSecret: Buffer

  private constructor(privateKey: KeyObject, tokenSecret: Buffer) {
    this.#privateKey = privateKey
    this.tokenSecret = tokenSecret
    const { x } = createPublicKey(privateKey).export({ format: 'jwk' })
    if (typeof x !== 'string') throw new Error('cannot export the Ed25519 public key')
    this.publicJwk = { kty: 'OKP', crv: 'Ed25519', x, kid: thumbprintKid(x), use: 'sig', alg: 'EdDSA' }
  }

  /**
   * Loads the keys from `dir`, generating and durably saving them (mode 0600) the first time.
   * A copy left by a save that a crash interrupted is removed: it holds a secret nothing uses.
   */
  static async open(dir: FsDirectory): Promise<SubscriptionKeys> {
    for (const name of await dir.listDir('')) {
      if (isTempName(name, KEY_FILE)) await dir.delete(name)
    }
    if (await dir.exists(KEY_FILE)) {
      const file = JSON.parse((await dir.readFile(KEY_FILE)).toString('utf8')) as KeyFile
      if (file.version !== 1) throw new Error(`${KEY_FILE}: unknown version ${String(file.version)}`)
      return new SubscriptionKeys(createPrivateKey(file.ed25519_private_key), Buffer.from(file.token_secret, 'base64url'))
    }
    const { privateKey } = generateKeyPairSync('ed25519')
    const tokenSecret = randomBytes(32)
    const file: KeyFile = {
      version: 1,
      ed25519_private_key: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      token_secret: tokenSecret.toString('base64url'),
    }
    await writeSecretDurably(dir, KEY_FILE, JSON.stringify(file))
    return new SubscriptionKeys(privateKey, tokenSecret)
  }

  /** The key id of the active signing key. */
  get kid(): string {
    return this.publicJwk.kid
  }

  /** The JWK Set served at `__ds/jwks.json`. */
  jwks(): { keys: WebhookPublicJwk[] } {
    return { keys: [{ ...this.publicJwk }] }
  }

  /**
   * The `Webhook-Signature` header for `body`: `t=<unix seconds>,kid=<kid>,ed25519=<base64url>`,
   * signing `${t}.${body}` (PROTOCOL.md section 7.1).
   */
  signatureHeader(body: string, nowMs: number): string {
    const t = Math.floor(nowMs / 1000)
    const signature = sign(null, Buffer.from(`${t}.${body}`), this.#privateKey).toString('base64url')
    return `t=${t},kid=${this.kid},ed25519=${signature}`
  }
}

/** `ds_` + the RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key. */
function thumbprintKid(x: string): string {
  const canonical = JSON.stringify({ crv: 'Ed25519', kty: 'OKP', x })
  return `ds_${createHash('sha256').update(canonical).digest('base64url')}`
}

/**
 * Writes a secret so it is never readable by others, not even briefly: the temporary file is
 * created with mode 0600 and made durable, then renamed over `name` durably.
 */
async function writeSecretDurably(dir: FsDirectory, name: string, data: string): Promise<void> {
  const temp = `${name}.tmp-${randomBytes(8).toString('hex')}`
  const handle = await open(dir.filePath(temp), 'wx', 0o600)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await dir.atomicRenameDurable(temp, name)
  } catch (e) {
    await dir.delete(temp).catch(() => {})
    throw e
  }
}
