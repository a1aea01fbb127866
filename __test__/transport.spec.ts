// How apps reach a node: WebSocket as well as gRPC, a credential the node requires of its
// clients, and the connection settings production deployments tune.
import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { describe, expect, test } from 'vitest'
import { type App, createApp, type SlimServer, startServer } from '../src-ts/index.js'
import { receive, rejectionOf, SECRET, text, track } from './helpers.js'
import { signingKey, tokenFile as tokenFileOf } from './jwt.js'

const newApp = async (name: string): Promise<App> =>
  track(await createApp({ name, identity: { sharedSecret: SECRET } }))

/** A group of two over `server`; resolves once the member read the moderator's message. */
async function groupWorks(server: SlimServer, ns: string, mls: boolean, connect: (app: App) => Promise<unknown>) {
  const moderator = await newApp(`org/${ns}/moderator`)
  const member = await newApp(`org/${ns}/member`)
  await connect(moderator)
  await connect(member)
  const group = track(await moderator.createGroupSession(`org/${ns}/chat`, { mls }))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite(`org/${ns}/member`)
  const session = await joined
  await group.publish(`over ${server.url}`)
  expect(text((await receive(session, 1))[0] as never)).toBe(`over ${server.url}`)
  await session.publish('and back')
  expect(text((await receive(group, 1))[0] as never)).toBe('and back')
}

describe.each([false, true])('a WebSocket node, mls=%s', (mls) => {
  test('apps connect with ws:// and a group delivers both ways', async () => {
    const server = track(await startServer({ endpoint: 'ws://127.0.0.1:0' }))
    expect(server.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/)
    await groupWorks(server, `ws${mls ? 'mls' : ''}`, mls, (app) => app.connect({ endpoint: server.url }))
  })
})

describe('a node that requires basic authentication', () => {
  const auth = { basic: { username: 'edge', password: 'correct horse battery staple' } }

  test('admits apps with the credential', async () => {
    const server = track(await startServer({ endpoint: '127.0.0.1:0', auth }))
    await groupWorks(server, 'basic', false, (app) => app.connect({ endpoint: server.url, auth }))
  })

  test('refuses an app without it or with a wrong password, within the connect timeout', async () => {
    const server = track(await startServer({ endpoint: '127.0.0.1:0', auth }))
    const stranger = await newApp('org/basic/stranger')
    const none = await rejectionOf(stranger.connect({ endpoint: server.url, timeout: 5_000 }))
    const wrong = await rejectionOf(
      stranger.connect({
        endpoint: server.url,
        auth: { basic: { username: 'edge', password: 'wrong' } },
        timeout: 5_000,
      }),
    )
    for (const error of [none, wrong]) {
      expect(error.code).toBe('CONNECT')
    }
  })
})

describe('a node that requires a JWT', () => {
  const keyPair = () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    return {
      privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    }
  }

  test('admits apps whose tokens its key verifies, and refuses a token signed by another key', async () => {
    const trusted = keyPair()
    const audience = ['slim-nodes']
    const server = track(
      await startServer({
        endpoint: '127.0.0.1:0',
        auth: { jwt: { key: trusted.publicPem, algorithm: 'ES256', audience } },
      }),
    )
    const auth = { jwt: { key: trusted.privatePem, algorithm: 'ES256', audience, issuer: 'tests', subject: 'app' } }
    await groupWorks(server, 'nodejwt', false, (app) => app.connect({ endpoint: server.url, auth }))
    const stranger = await newApp('org/nodejwt/stranger')
    const forged = { jwt: { ...auth.jwt, key: keyPair().privatePem } }
    const refused = await rejectionOf(stranger.connect({ endpoint: server.url, auth: forged, timeout: 5_000 }))
    expect(refused.code).toBe('CONNECT')
  })

  test('admits an app presenting a token file signed by its key', async () => {
    const trusted = signingKey()
    const audience = ['slim-nodes']
    const publicPem = createPublicKey(trusted.privatePem).export({ format: 'pem', type: 'spki' }).toString()
    const server = track(
      await startServer({ endpoint: '127.0.0.1:0', auth: { jwt: { key: publicPem, algorithm: 'ES256', audience } } }),
    )
    const tokenFile = tokenFileOf(trusted, { sub: 'org/nodejwt/holder', aud: audience })
    await groupWorks(server, 'nodetoken', false, (app) => app.connect({ endpoint: server.url, auth: { tokenFile } }))
  })
})

test('connection and node settings are accepted and the connection works', async () => {
  const server = track(
    await startServer({
      endpoint: '127.0.0.1:0',
      keepalive: { time: 30_000, timeout: 5_000, maxConnectionIdle: 600_000 },
      maxFrameSizeMiB: 8,
      maxConcurrentStreams: 64,
      maxHeaderListSize: 16_384,
    }),
  )
  await groupWorks(server, 'settings', false, (app) =>
    app.connect({
      endpoint: server.url,
      keepalive: { tcp: 30_000, http2: 20_000, timeout: 5_000, whileIdle: true },
      reconnect: { maxAttempts: 5, initialDelay: 200, maxDelay: 1_000 },
      connectTimeout: 3_000,
      requestTimeout: 10_000,
      headers: { 'x-slim-team': 'ops' },
      bufferSize: 64 * 1024,
      compression: 'none',
    }),
  )
})

test('bad settings are refused before anything connects', async () => {
  const app = await newApp('org/badset/app')
  const cases = [
    { reconnect: { maxAttempts: 0 } },
    { reconnect: { initialDelay: 0 } },
    { reconnect: { initialDelay: 500, maxDelay: 100 } },
    { keepalive: { tcp: 0 } },
    { compression: 'brotli' },
    { bufferSize: -1 },
    { connectTimeout: Number.NaN },
    { auth: { basic: { username: '', password: 'x' } } },
    { auth: { basic: { username: 'u', password: 'p' }, jwt: { key: 'k', algorithm: 'ES256' } } },
    { auth: { tokenFile: '/nonexistent/token.jwt' } },
  ]
  for (const settings of cases) {
    const error = await rejectionOf(app.connect({ endpoint: 'http://127.0.0.1:1', ...(settings as object) }))
    expect(error.code, JSON.stringify(settings)).toBe('INVALID_ARGUMENT')
  }
  const badNode = await rejectionOf(startServer({ endpoint: '127.0.0.1:0', maxFrameSizeMiB: 16 }))
  expect(badNode.code).toBe('INVALID_ARGUMENT')
})
