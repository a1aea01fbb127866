import { generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** An ES256 signing key of a trust domain, with the JWKS entry peers verify it by. */
export interface SigningKey {
  kid: string
  privateKey: KeyObject
  privatePem: string
  jwk: Record<string, unknown>
}

export function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const kid = randomUUID()
  return {
    kid,
    privateKey,
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' },
  }
}

/** A SPIRE trust bundle as the Python example takes it: trust domain -> base64-encoded JWKS. */
export function trustBundle(domains: Record<string, SigningKey[]>): string {
  const entries = Object.entries(domains).map(([domain, keys]) => [
    domain,
    Buffer.from(JSON.stringify({ keys: keys.map((k) => k.jwk) })).toString('base64'),
  ])
  return JSON.stringify(Object.fromEntries(entries))
}

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A JWT signed with `key`, written to a file an app can present. */
export function tokenFile(key: SigningKey, claims: { sub: string; aud: string[]; expiresIn?: number }): string {
  const now = Math.floor(Date.now() / 1000)
  const header = base64url({ alg: 'ES256', typ: 'JWT', kid: key.kid })
  const payload = base64url({
    iss: 'https://example.org',
    sub: claims.sub,
    aud: claims.aud,
    iat: now - 10,
    exp: now + (claims.expiresIn ?? 3600),
  })
  const signature = sign('sha256', Buffer.from(`${header}.${payload}`), {
    key: key.privateKey,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url')
  const file = join(mkdtempSync(join(tmpdir(), 'slim-node-jwt-')), 'token.jwt')
  writeFileSync(file, `${header}.${payload}.${signature}`)
  return file
}
