// Bad input across the API and the command lines: each case must end in a typed error
// with a useful message, never a crash or a hang, and leave the process usable.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { root, typescriptFlags } from '../scripts/processes.mjs'
import {
  type App,
  createApp,
  formatName,
  MAX_MESSAGE_BYTES,
  parseName,
  type Session,
  type SlimErrorCode,
  type SlimServer,
  setPeerTimeout,
  startServer,
  type WaitOptions,
} from '../src-ts/index.js'
import {
  closedPort,
  connectApp,
  rejectionOf,
  run,
  SECRET,
  sharedResources,
  startTestServer,
  text,
  track,
} from './helpers.js'

interface Context {
  server: SlimServer
  app: App
  /** An app that answers point-to-point sessions. */
  peer: App
  group: Session
}

interface BadInput {
  what: string
  code: SlimErrorCode
  /** What the message must say, beyond naming the problem at all. */
  says?: RegExp
  attempt: (context: Context) => unknown
}

// Deliberately mistyped values reach the API the way untyped JavaScript would pass them.
const untyped = <T>(value: unknown): T => value as T

const identity = { sharedSecret: SECRET }
/** What a JWT identity needs besides its token or key, so the case fails on the bad part. */
const jwtTrust = { spireTrustBundle: '{}', audience: ['slim-test'] }

/**
 * Waits twice on `owner`, the second time while the first wait is pending; closing
 * `owner` afterwards ends the first wait (with SESSION_CLOSED or CLOSED).
 */
async function secondWhilePending(
  owner: { close(): Promise<void> },
  wait: (options: WaitOptions) => Promise<unknown>,
): Promise<unknown> {
  const first = wait({}).catch((error: unknown) => error)
  try {
    return await wait({ timeout: 1_000 })
  } finally {
    await owner.close()
    await first
  }
}

const cases: BadInput[] = [
  // Names
  { what: 'an app name with two parts', code: 'INVALID_NAME', attempt: () => createApp({ name: 'org/ns', identity }) },
  { what: 'an empty app name', code: 'INVALID_NAME', attempt: () => createApp({ name: '', identity }) },
  {
    what: 'an app name that is a number',
    code: 'INVALID_ARGUMENT',
    attempt: () => createApp({ name: untyped(42), identity }),
  },
  { what: 'parseName with an empty part', code: 'INVALID_NAME', attempt: () => parseName('org//app') },
  {
    what: 'formatName with an id that is no UUID',
    code: 'INVALID_NAME',
    attempt: () => formatName({ org: 'a', namespace: 'b', app: 'c', id: 'not-a-uuid' }),
  },
  { what: 'a peer timeout under 500 ms', code: 'INVALID_ARGUMENT', attempt: () => setPeerTimeout(100) },
  { what: 'a negative peer timeout', code: 'INVALID_ARGUMENT', attempt: () => setPeerTimeout(-1) },
  { what: 'a peer timeout that is NaN', code: 'INVALID_ARGUMENT', attempt: () => setPeerTimeout(Number.NaN) },
  {
    what: 'a group channel without slashes',
    code: 'INVALID_NAME',
    attempt: ({ app }) => app.createGroupSession('channel'),
  },
  {
    what: 'a point-to-point peer with two parts',
    code: 'INVALID_NAME',
    attempt: ({ app }) => app.createPointToPointSession('org/peer'),
  },
  { what: 'inviting an empty name', code: 'INVALID_NAME', attempt: ({ group }) => group.invite('') },
  { what: 'subscribing to a malformed name', code: 'INVALID_NAME', attempt: ({ app }) => app.subscribe('a b c') },
  // Secrets and identities
  {
    what: 'a 9-byte shared secret',
    code: 'INVALID_ARGUMENT',
    says: /at least 32 bytes/,
    attempt: () => createApp({ name: 'org/bad/secret', identity: { sharedSecret: 'too-short' } }),
  },
  {
    what: 'an empty shared secret',
    code: 'INVALID_ARGUMENT',
    attempt: () => createApp({ name: 'org/bad/empty', identity: { sharedSecret: '' } }),
  },
  {
    what: 'no identity at all',
    code: 'INVALID_ARGUMENT',
    attempt: () => createApp({ name: 'org/bad/none', identity: {} }),
  },
  {
    what: 'a JWT file that does not exist',
    code: 'INVALID_ARGUMENT',
    says: /nonexistent/,
    attempt: () => createApp({ name: 'org/bad/jwt', identity: { jwt: '/nonexistent/token.jwt', ...jwtTrust } }),
  },
  {
    what: 'a JWT without the trust to verify peers',
    code: 'INVALID_ARGUMENT',
    says: /spireTrustBundle and audience/,
    attempt: () => createApp({ name: 'org/bad/trust', identity: { jwt: '/nonexistent/token.jwt' } }),
  },
  {
    what: 'a signing key that is no PEM',
    code: 'INVALID_ARGUMENT',
    attempt: () =>
      createApp({
        name: 'org/bad/key',
        identity: { jwtSigningKey: { pem: 'not a key', algorithm: 'ES256' }, ...jwtTrust },
      }),
  },
  {
    what: 'an unknown signing algorithm',
    code: 'INVALID_ARGUMENT',
    says: /XX999/,
    attempt: () =>
      createApp({
        name: 'org/bad/alg',
        identity: { jwtSigningKey: { pem: 'not a key', algorithm: 'XX999' }, ...jwtTrust },
      }),
  },
  // Endpoints and TLS files
  {
    what: 'an endpoint that is no URL',
    code: 'INVALID_ARGUMENT',
    attempt: async () => track(await createApp({ name: 'org/bad/url', identity })).connect({ endpoint: 'not a url' }),
  },
  {
    what: 'an endpoint with port 99999',
    code: 'INVALID_ARGUMENT',
    attempt: async () =>
      track(await createApp({ name: 'org/bad/port', identity })).connect({ endpoint: 'http://127.0.0.1:99999' }),
  },
  {
    what: 'an endpoint nobody listens on',
    code: 'CONNECT',
    attempt: async () =>
      track(await createApp({ name: 'org/bad/closed', identity })).connect({
        endpoint: `http://127.0.0.1:${await closedPort()}`,
      }),
  },
  {
    what: 'a CA file that does not exist',
    code: 'INVALID_ARGUMENT',
    says: /nonexistent/,
    attempt: async ({ server }) =>
      track(await createApp({ name: 'org/bad/ca', identity })).connect({
        endpoint: server.url.replace('http:', 'https:'),
        tls: { caFile: '/nonexistent/ca.pem' },
      }),
  },
  {
    what: 'a CA PEM that is garbage',
    code: 'INVALID_ARGUMENT',
    attempt: async ({ server }) =>
      track(await createApp({ name: 'org/bad/capem', identity })).connect({
        endpoint: server.url.replace('http:', 'https:'),
        tls: { caPem: 'garbage' },
      }),
  },
  {
    what: 'a server endpoint that is no address',
    code: 'INVALID_ARGUMENT',
    attempt: () => startServer({ endpoint: 'nonsense' }),
  },
  {
    what: 'a server endpoint already in use',
    code: 'SERVER',
    attempt: ({ server }) => startServer({ endpoint: server.endpoint }),
  },
  {
    what: 'server certificate files that do not exist',
    code: 'INVALID_ARGUMENT',
    attempt: () =>
      startServer({
        endpoint: '127.0.0.1:0',
        tls: { certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem' },
      }),
  },
  {
    what: 'a server certificate without its key',
    code: 'INVALID_ARGUMENT',
    attempt: () => startServer({ endpoint: '127.0.0.1:0', tls: { certPem: 'garbage' } }),
  },
  // Timeouts and numbers
  {
    what: 'a negative receive timeout',
    code: 'INVALID_ARGUMENT',
    says: /timeout/,
    attempt: ({ group }) => group.getMessage({ timeout: -1 }),
  },
  {
    what: 'a NaN receive timeout',
    code: 'INVALID_ARGUMENT',
    attempt: ({ group }) => group.getMessage({ timeout: Number.NaN }),
  },
  {
    what: 'an infinite listen timeout',
    code: 'INVALID_ARGUMENT',
    attempt: ({ app }) => app.listenForSession({ timeout: Number.POSITIVE_INFINITY }),
  },
  {
    what: 'a zero retransmission interval',
    code: 'INVALID_ARGUMENT',
    says: /interval/,
    attempt: ({ app }) => app.createGroupSession('org/bad/zero', { interval: 0 }),
  },
  {
    what: 'a NaN retransmission interval',
    code: 'INVALID_ARGUMENT',
    attempt: ({ app }) => app.createGroupSession('org/bad/nan', { interval: Number.NaN }),
  },
  {
    what: 'negative retries',
    code: 'INVALID_ARGUMENT',
    attempt: ({ app }) => app.createGroupSession('org/bad/retries', { maxRetries: -1 }),
  },
  {
    what: 'retries on an unreliable session',
    code: 'INVALID_ARGUMENT',
    says: /reliable/,
    attempt: ({ app }) => app.createGroupSession('org/bad/unreliable', { reliable: false, maxRetries: 3 }),
  },
  {
    what: 'an invite timeout that is negative',
    code: 'INVALID_ARGUMENT',
    attempt: ({ group }) => group.invite('org/bad/nobody', { timeout: -5 }),
  },
  // Wrong JavaScript types
  { what: 'publishing a number', code: 'INVALID_ARGUMENT', attempt: ({ group }) => group.publish(untyped(42)) },
  { what: 'publishing null', code: 'INVALID_ARGUMENT', attempt: ({ group }) => group.publish(untyped(null)) },
  {
    what: 'metadata values that are numbers',
    code: 'INVALID_ARGUMENT',
    attempt: ({ group }) => group.publish('x', { metadata: untyped({ seq: 1 }) }),
  },
  {
    what: 'a channel that is an object',
    code: 'INVALID_ARGUMENT',
    attempt: ({ app }) => app.createGroupSession(untyped({ channel: 'org/ns/x' })),
  },
  {
    what: 'a payload above the message limit',
    code: 'PAYLOAD_TOO_LARGE',
    says: new RegExp(String(MAX_MESSAGE_BYTES)),
    attempt: ({ group }) => group.publish(Buffer.alloc(MAX_MESSAGE_BYTES + 1)),
  },
  // Calls after close, and concurrent calls
  {
    what: 'publishing on a closed session',
    code: 'SESSION_CLOSED',
    attempt: async ({ app }) => {
      const session = track(await app.createGroupSession('org/bad/closed-session'))
      await session.close()
      await session.close()
      return session.publish('late')
    },
  },
  {
    what: 'receiving on a closed session',
    code: 'SESSION_CLOSED',
    attempt: async ({ app }) => {
      const session = track(await app.createGroupSession('org/bad/closed-receive'))
      await session.close()
      return session.getMessage({ timeout: 1_000 })
    },
  },
  {
    what: 'creating a session on a closed app',
    code: 'CLOSED',
    attempt: async ({ server }) => {
      const app = track(await connectApp(server, 'org/bad/closed-app'))
      await app.close()
      await app.close()
      return app.createGroupSession('org/bad/after')
    },
  },
  {
    what: 'a second getMessage while one is pending',
    code: 'BUSY',
    attempt: async ({ app }) => {
      const session = track(await app.createGroupSession('org/bad/busy'))
      return secondWhilePending(session, (options) => session.getMessage(options))
    },
  },
  {
    what: 'a second listenForSession while one is pending',
    code: 'BUSY',
    attempt: async ({ server }) => {
      const app = track(await connectApp(server, 'org/bad/listener'))
      return secondWhilePending(app, (options) => app.listenForSession(options))
    },
  },
  {
    what: 'an AbortSignal that already fired',
    code: 'ABORTED',
    attempt: ({ group }) => group.getMessage({ signal: AbortSignal.abort() }),
  },
  {
    what: 'a signal that is a string',
    code: 'INVALID_ARGUMENT',
    says: /AbortSignal/,
    attempt: ({ group }) => group.getMessage({ signal: untyped('abort') }),
  },
  {
    what: 'a signal that only looks like one',
    code: 'INVALID_ARGUMENT',
    says: /AbortSignal/,
    attempt: ({ app }) => app.listenForSession({ signal: untyped({ aborted: false, addEventListener() {} }) }),
  },
  {
    what: 'options whose getters throw',
    code: 'INVALID_ARGUMENT',
    says: /could not be read: trap/,
    attempt: ({ group }) =>
      group.publish(
        'x',
        untyped(
          new Proxy(
            {},
            {
              ownKeys() {
                throw new Error('trap')
              },
            },
          ),
        ),
      ),
  },
  {
    what: 'a timeout above MAX_TIMEOUT_MS',
    code: 'INVALID_ARGUMENT',
    says: /2147483647/,
    attempt: ({ group }) => group.invite('org/bad/nobody', { timeout: 2 ** 40 }),
  },
  {
    what: 'a name with a 10 000-character component',
    code: 'INVALID_NAME',
    says: /10000 bytes long/,
    attempt: () => createApp({ name: `org/${'n'.repeat(10_000)}/app`, identity }),
  },
  {
    what: 'removing a name that is not a member',
    code: 'NOT_MEMBER',
    says: /org\/bad\/stranger is not a member/,
    attempt: ({ group }) => group.remove('org/bad/stranger'),
  },
  {
    what: 'inviting into a point-to-point session',
    code: 'NOT_GROUP',
    attempt: async ({ app }) => track(await app.createPointToPointSession('org/bad/peer')).invite('org/bad/x'),
  },
]

describe('bad input through the API', () => {
  const context = {} as Context
  const shared = sharedResources()
  beforeAll(async () => {
    context.server = shared(await startTestServer())
    context.app = shared(await connectApp(context.server, 'org/bad/app'))
    context.peer = shared(await connectApp(context.server, 'org/bad/peer'))
    context.group = shared(await context.app.createGroupSession('org/bad/group'))
  })

  test('covers at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30)
  })

  test.each(cases)('$what: $code', async ({ code, says, attempt }) => {
    const error = await rejectionOf((async () => attempt(context))())
    expect(error.code, error.message).toBe(code)
    expect(error.message.length).toBeGreaterThan(15)
    if (says) expect(error.message).toMatch(says)
  })

  afterAll(async () => {
    try {
      // After all of that, the same process still carries messages.
      const member = shared(await connectApp(context.server, 'org/bad/member'))
      const joined = member.listenForSession({ timeout: 30_000 })
      await context.group.invite('org/bad/member')
      const session = await joined
      await context.group.publish('still working')
      expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('still working')
    } finally {
      // Here too: once an afterAll hook fails, vitest runs none of the others.
      await shared.release()
    }
  })
})

/** Runs a command line to its end; bad input must exit 1 with one `error:` line. */
async function failure(args: string[]): Promise<string> {
  try {
    await run(process.execPath, args, { cwd: root, timeout: 30_000 })
  } catch (error) {
    const { code, stderr } = error as { code?: number; stderr: string }
    expect(code).toBe(1)
    return stderr
  }
  throw new Error(`${args.join(' ')} succeeded`)
}

describe('bad input through the command lines', () => {
  const example = (name: string): string[] => [...typescriptFlags(), join(root, 'examples', `${name}.ts`)]

  test.each([
    { what: 'a server endpoint that is no address', args: [join(root, 'dist', 'cli.js'), 'server', '--endpoint', 'x'] },
    { what: 'slim JSON that does not parse', args: [...example('client'), '--slim', '{not json'], says: /JSON/ },
    { what: 'slim JSON without an endpoint', args: [...example('client'), '--slim', '{}'], says: /endpoint/ },
    {
      what: 'a short shared secret',
      args: [...example('moderator'), '--shared-secret', 'short', '--slim', '{"endpoint":"http://127.0.0.1:1"}'],
      says: /32 bytes/,
    },
  ])('$what', async ({ args, says }) => {
    const stderr = await failure(args)
    expect(stderr).toMatch(/error/i)
    if (says) expect(stderr).toMatch(says)
  })
})
