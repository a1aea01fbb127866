import { describe, expect, test } from 'vitest'
import { type App, createApp, type IdentityOptions, type SlimServer } from '../src-ts/index.js'
import { rejectionOf, SECRET, startTestServer, track } from './helpers.js'
import { type SigningKey, signingKey, tokenFile, trustBundle } from './jwt.js'

const alice = signingKey()
const bob = signingKey()
const bundle = trustBundle({ 'a.example.org': [alice], 'b.example.org': [bob] })

/** An app connected to `server`, released when the test ends. */
async function appWith(server: SlimServer, name: string, identity: IdentityOptions): Promise<App> {
  const app = track(await createApp({ name, identity }))
  await app.connect({ endpoint: server.url })
  return app
}

/** An identity that signs its own JWTs with `key`, trusting the keys of `bundle`. */
const signing = (key: SigningKey, audience = ['slim-test'], trusted = bundle): IdentityOptions => ({
  jwtSigningKey: { pem: key.privatePem, algorithm: 'ES256' },
  spireTrustBundle: trusted,
  audience,
})

/** Alice opens a session to bob and says hello; resolves with what bob received, or the failure. */
async function exchange(server: SlimServer, alice: IdentityOptions, bob: IdentityOptions, tag: string) {
  const a = await appWith(server, `org/${tag}/alice`, alice)
  const b = await appWith(server, `org/${tag}/bob`, bob)
  const incoming = b.listenForSession({ timeout: 4_000 })
  try {
    const session = await a.createPointToPointSession(`org/${tag}/bob`, { maxRetries: 3, interval: 300 })
    await session.publish('hello bob')
    const message = await (await incoming).getMessage({ timeout: 5_000 })
    return { received: message.payload.toString() }
  } catch (error) {
    await incoming.catch(() => undefined)
    return { error: await rejectionOf(Promise.reject(error)) }
  }
}

describe('JWT identities verified against a SPIRE trust bundle', () => {
  test('right audience: messages flow', async () => {
    const server = track(await startTestServer())
    const result = await exchange(server, signing(alice), signing(bob), 'jwtok')
    expect(result).toEqual({ received: 'hello bob' })
  })

  test.each([
    ['a wrong audience', () => signing(alice, ['elsewhere'])],
    ['a key outside the trust bundle', () => signing(signingKey())],
  ])('%s: the peer is refused and nothing is delivered', async (_, mallory) => {
    const server = track(await startTestServer())
    const result = await exchange(server, mallory(), signing(bob), 'jwtbad')
    expect(result.received).toBeUndefined()
    expect(result.error?.code).toBe('DELIVERY_FAILED')
  })

  test('a wrong shared secret: the peer is refused and nothing is delivered', async () => {
    const server = track(await startTestServer())
    const result = await exchange(server, { sharedSecret: `${SECRET}-other` }, { sharedSecret: SECRET }, 'secretbad')
    expect(result.received).toBeUndefined()
    expect(result.error).toBeDefined()
  })

  test('an MLS group whose members sign their own JWTs', async () => {
    const server = track(await startTestServer())
    const moderator = await appWith(server, 'org/mlsjwt/moderator', signing(alice))
    const member = await appWith(server, 'org/mlsjwt/member', signing(bob))
    const group = track(await moderator.createGroupSession('org/mlsjwt/room', { mls: true }))
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite('org/mlsjwt/member')
    const session = await joined
    await group.publish('sealed')
    expect((await session.getMessage({ timeout: 10_000 })).payload.toString()).toBe('sealed')
  })

  test('a presented JWT cannot sign, so sessions (MLS or not) fail up front with AUTH', async () => {
    const server = track(await startTestServer())
    const app = await appWith(server, 'org/mlsjwt/static', {
      jwt: tokenFile(alice, { sub: 'spiffe://a.example.org/static', aud: ['slim-test'] }),
      spireTrustBundle: bundle,
      audience: ['slim-test'],
    })
    expect((await rejectionOf(app.createPointToPointSession('org/mlsjwt/peer'))).code).toBe('AUTH')
    const error = await rejectionOf(app.createGroupSession('org/mlsjwt/nope', { mls: true }))
    expect(error.code).toBe('AUTH')
    expect(error.message).toMatch(/jwtSigningKey/)
  })

  test('an expired presented JWT is refused with AUTH before the app starts', async () => {
    const expired = tokenFile(alice, { sub: 'spiffe://a.example.org/late', aud: ['slim-test'], expiresIn: -120 })
    const error = await rejectionOf(
      createApp({
        name: 'org/jwt/late',
        identity: { jwt: expired, spireTrustBundle: bundle, audience: ['slim-test'] },
      }),
    )
    expect(error.code).toBe('AUTH')
    expect(error.message).toMatch(/expired 1[2-9]\d s ago/)
  })

  test('incomplete identities say what to pass', async () => {
    for (const identity of [
      {},
      { jwt: '/tmp/x.jwt' },
      { spireTrustBundle: bundle, audience: ['a'] },
    ] as IdentityOptions[]) {
      const error = await rejectionOf(createApp({ name: 'org/id/none', identity }))
      expect(error.code).toBe('INVALID_ARGUMENT')
      expect(error.message).toMatch(/sharedSecret/)
    }
  })
})

test('a SPIRE identity with no agent listening fails with AUTH, without hanging', async () => {
  const started = performance.now()
  const error = await rejectionOf(
    createApp({ name: 'org/spire/app', identity: { spire: { socketPath: 'unix:///nonexistent/spire-agent.sock' } } }),
  )
  expect(error.code).toBe('AUTH')
  expect(performance.now() - started).toBeLessThan(12_000)
})
