import { getEventListeners } from 'node:events'
import { beforeAll, describe, expect, test } from 'vitest'
import {
  createApp,
  createLocalApp,
  formatName,
  isSlimError,
  parseName,
  RpcError,
  SlimError,
  type SlimServer,
} from '../src-ts/index.js'
import { toRpcError } from '../src-ts/rpc/status.js'
import {
  closedPort,
  connectApp,
  joinedPair,
  receive,
  rejectionOf,
  SECRET,
  sharedResources,
  startTestServer,
  text,
  track,
} from './helpers.js'

describe('typed errors', () => {
  let server: SlimServer
  const shared = sharedResources()
  beforeAll(async () => {
    server = shared(await startTestServer())
  })

  test('a short shared secret is refused with the minimum length', async () => {
    const error = await rejectionOf(createApp({ name: 'org/err/short', identity: { sharedSecret: 'too-short' } }))
    expect(error).toBeInstanceOf(SlimError)
    expect(error.code).toBe('INVALID_ARGUMENT')
    expect(error.message).toMatch(/at least 32 bytes, got 9/)
  })

  test('malformed names are refused with INVALID_NAME', async () => {
    expect(() => parseName('org/ns')).toThrow(expect.objectContaining({ code: 'INVALID_NAME' }))
    expect(() => formatName({ org: 'a', namespace: '', app: 'c' })).toThrow(
      expect.objectContaining({ code: 'INVALID_NAME' }),
    )
    await expect(connectApp(server, 'not a name').then(track)).rejects.toMatchObject({ code: 'INVALID_NAME' })
    expect(parseName('org/ns/app')).toEqual({ org: 'org', namespace: 'ns', app: 'app' })
  })

  test('a closed port fails fast with CONNECT', async () => {
    const port = await closedPort()
    const started = performance.now()
    const error = await rejectionOf(
      createLocalApp({ local: 'org/err/lonely', slim: { endpoint: `http://127.0.0.1:${port}` }, sharedSecret: SECRET }),
    )
    expect(isSlimError(error, 'CONNECT')).toBe(true)
    expect(error.message).toContain(`127.0.0.1:${port}`)
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  test('publish after close, getMessage timeout and abort', async () => {
    const alice = track(await connectApp(server, 'org/err/alice'))
    const group = track(await alice.createGroupSession('org/err/chat'))

    await expect(group.getMessage({ timeout: 50 })).rejects.toMatchObject({ code: 'TIMEOUT' })

    const controller = new AbortController()
    const pending = group.getMessage({ signal: controller.signal })
    controller.abort(new Error('user gave up'))
    const aborted = await rejectionOf(pending)
    expect(aborted.code).toBe('ABORTED')
    expect(aborted.cause).toEqual(new Error('user gave up'))
    await expect(group.getMessage({ signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' })

    const first = rejectionOf(group.getMessage())
    await expect(group.getMessage({ timeout: 1000 })).rejects.toMatchObject({ code: 'BUSY' })

    await group.close()
    expect(await first).toMatchObject({ code: 'SESSION_CLOSED' })
    await expect(group.publish('late')).rejects.toMatchObject({ code: 'SESSION_CLOSED' })
    await group.close() // idempotent
    expect(group.closed).toBe(true)

    await alice.close()
    await expect(alice.createGroupSession('org/err/chat')).rejects.toMatchObject({ code: 'CLOSED' })
    await alice.close() // idempotent
  })

  test('invites: not on a point-to-point session, and only by the moderator', async () => {
    const moderator = track(await connectApp(server, 'org/err/mod'))
    const member = track(await connectApp(server, 'org/err/member'))
    track(await connectApp(server, 'org/err/peer'))

    const p2p = track(await moderator.createPointToPointSession('org/err/peer'))
    await expect(p2p.invite('org/err/member')).rejects.toMatchObject({ code: 'NOT_GROUP' })

    const group = track(await moderator.createGroupSession('org/err/room'))
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite('org/err/member')
    const memberSession = await joined
    await expect(memberSession.invite('org/err/peer')).rejects.toMatchObject({ code: 'NOT_INITIATOR' })
    await expect(memberSession.remove('org/err/mod')).rejects.toMatchObject({ code: 'NOT_INITIATOR' })
    await expect(group.invite('bad name')).rejects.toMatchObject({ code: 'INVALID_NAME' })
  })

  test('wrong JavaScript types become INVALID_ARGUMENT, not crashes', async () => {
    const app = track(await connectApp(server, 'org/err/types'))
    const group = track(await app.createGroupSession('org/err/typed'))
    // @ts-expect-error deliberately wrong type
    await expect(group.publish(42)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    await expect(group.getMessage({ timeout: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    await expect(group.getMessage({ timeout: Number.NaN })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    await expect(app.createGroupSession('org/err/x', { interval: 0 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    })
  })
})

describe('receives that give up', () => {
  test('lose nothing: what arrives after a timeout or an abort goes to the next receive, in order', async () => {
    const server = track(await startTestServer())
    const { group, session } = await joinedPair(server, 'giveup')

    await expect(session.getMessage({ timeout: 20 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    await group.publish('first')
    const controller = new AbortController()
    const aborted = session.getMessage({ signal: controller.signal })
    controller.abort()
    // Aborted or answered: either way the message is not lost.
    const outcome = await aborted.then(
      (message) => text(message),
      (error: SlimError) => error.code,
    )
    await group.publish('second')
    const rest = await receive(session, outcome === 'first' ? 1 : 2)
    expect([...(outcome === 'first' ? ['first'] : []), ...rest.map(text)]).toEqual(['first', 'second'])
    if (outcome !== 'first') expect(outcome).toBe('ABORTED')
  })

  test('one signal for every receive of a loop: one listener, which goes when the session ends', async () => {
    const server = track(await startTestServer())
    const { group, session } = await joinedPair(server, 'onesignal')
    const controller = new AbortController()
    const { signal } = controller
    for (const word of ['a', 'b', 'c']) {
      const next = session.getMessage({ signal })
      await group.publish(word)
      expect(text(await next)).toBe(word)
    }
    expect(getEventListeners(signal, 'abort')).toHaveLength(1)
    // A receive with no signal leaves the old one alone.
    const plain = session.getMessage({ timeout: 10_000 })
    expect(getEventListeners(signal, 'abort')).toHaveLength(0)
    await group.publish('d')
    expect(text(await plain)).toBe('d')
    const pending = session.getMessage({ signal })
    controller.abort(new Error('enough'))
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED', cause: new Error('enough') })
    await expect(session.getMessage({ signal })).rejects.toMatchObject({ code: 'ABORTED' })
    const other = new AbortController()
    const last = rejectionOf(session.getMessage({ signal: other.signal }))
    await group.close()
    expect((await last).code).toBe('SESSION_CLOSED')
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0)
  })
})

test('one table turns errors into RPC statuses', () => {
  const cases: Array<[unknown, string]> = [
    [new RpcError('NOT_FOUND', 'no such task'), 'NOT_FOUND'],
    [new SlimError('ABORTED', 'stopped'), 'CANCELLED'],
    [new SlimError('TIMEOUT', 'late'), 'DEADLINE_EXCEEDED'],
    [new SlimError('BUSY', 'full'), 'RESOURCE_EXHAUSTED'],
    [new SlimError('SESSION_CLOSED', 'gone'), 'UNAVAILABLE'],
    [new SlimError('INTERNAL', 'bug'), 'INTERNAL'],
    [new Error('thrown by a handler'), 'UNKNOWN'],
    ['a string', 'UNKNOWN'],
  ]
  for (const [error, status] of cases) {
    const mapped = toRpcError(error)
    expect(mapped).toBeInstanceOf(RpcError)
    expect(mapped.status).toBe(status)
  }
  expect(toRpcError(new Error('thrown by a handler')).message).toBe('thrown by a handler')
})
