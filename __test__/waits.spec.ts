// Every call that can wait takes { timeout, signal } and settles with TIMEOUT / ABORTED,
// losing and duplicating nothing that was already handed to SLIM.
import { getEventListeners } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { beforeAll, describe, expect, test } from 'vitest'
import { createApp, MAX_TIMEOUT_MS, type SlimServer } from '../src-ts/index.js'
import {
  closeAll,
  connectApp,
  receive,
  rejectionOf,
  SECRET,
  sharedResources,
  startTestServer,
  text,
  track,
} from './helpers.js'

let server: SlimServer
const shared = sharedResources()
beforeAll(async () => {
  server = shared(await startTestServer())
})

/** A loopback listener that accepts connections and never answers: a connect to it hangs. */
async function silentListener(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets: Socket[] = []
  const listener: Server = createServer((socket) => sockets.push(socket))
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => listener.close(() => resolve()))
    },
  }
}

describe('publish', () => {
  test('a publish to an empty group times out, and still reaches the first member once', async () => {
    const moderator = track(await connectApp(server, 'org/wait/moderator'))
    const member = track(await connectApp(server, 'org/wait/member'))
    const group = track(await moderator.createGroupSession('org/wait/chat'))
    const error = await rejectionOf(group.publish('held by the empty group', { timeout: 200 }))
    expect(error.code).toBe('TIMEOUT')
    expect(error.message).toMatch(/publish timed out after 200 ms/)
    // A signal that fired before the call sends nothing.
    expect((await rejectionOf(group.publish('never sent', { signal: AbortSignal.abort() }))).code).toBe('ABORTED')
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite('org/wait/member')
    const session = await joined
    const [held] = await receive(session, 1)
    expect(held && text(held)).toBe('held by the empty group')
    await group.publish('after the join')
    const [after] = await receive(session, 1)
    expect(after && text(after)).toBe('after the join')
    // Nothing is sent twice: no third message follows.
    expect((await rejectionOf(session.getMessage({ timeout: 500 }))).code).toBe('TIMEOUT')
  })

  test('an abort ends the wait with ABORTED and the signal as cause', async () => {
    const app = track(await connectApp(server, 'org/wait/aborter'))
    const group = track(await app.createGroupSession('org/wait/abort-chat'))
    const controller = new AbortController()
    const publishing = group.publish('x', { signal: controller.signal })
    controller.abort(new Error('enough'))
    const error = await rejectionOf(publishing)
    expect(error.code).toBe('ABORTED')
    expect((error.cause as Error).message).toBe('enough')
    expect((await rejectionOf(group.publish('y', { signal: AbortSignal.abort() }))).code).toBe('ABORTED')
  })

  test('a publish that settles in time resolves as usual with a timeout given', async () => {
    const app = track(await connectApp(server, 'org/wait/unreliable'))
    const group = track(await app.createGroupSession('org/wait/fast', { reliable: false }))
    await expect(group.publish('quick', { timeout: 10_000, signal: new AbortController().signal })).resolves.toBe(
      undefined,
    )
  })

  test('publishes that share one signal take their listeners off it as they settle', async () => {
    const app = track(await connectApp(server, 'org/wait/shared-signal'))
    const group = track(await app.createGroupSession('org/wait/shared', { reliable: false }))
    const { signal } = new AbortController()
    await Promise.all(Array.from({ length: 100 }, (_, i) => group.publish(`m${i}`, { signal })))
    await group.publishMany(['a', 'b'], { signal, timeout: 10_000 })
    expect(getEventListeners(signal, 'abort')).toHaveLength(0)
  })
})

describe('sessions and connections', () => {
  test('a point-to-point session with nobody times out long before its retries end, and is closed', async () => {
    const app = track(await connectApp(server, 'org/wait/caller'))
    const started = Date.now()
    const error = await rejectionOf(
      app.createPointToPointSession('org/wait/nobody', { maxRetries: 100, interval: 1_000, timeout: 300 }),
    )
    expect(error.code).toBe('TIMEOUT')
    expect(Date.now() - started).toBeLessThan(10_000)
    const aborted = await rejectionOf(app.createGroupSession('org/wait/g', { signal: AbortSignal.abort() }))
    expect(aborted.code).toBe('ABORTED')
    // The app is still usable, and closes without waiting for the abandoned session.
    const group = track(await app.createGroupSession('org/wait/after', { timeout: 10_000 }))
    expect(group.closed).toBe(false)
    const closing = Date.now()
    await closeAll(group, app)
    expect(Date.now() - closing).toBeLessThan(5_000)
  })

  test('a connect that hangs times out, leaves no connection behind, and can be tried again', async () => {
    const silent = track(await silentListener())
    const app = track(await createApp({ name: 'org/wait/connector', identity: { sharedSecret: SECRET } }))
    const error = await rejectionOf(app.connect({ endpoint: silent.url, timeout: 300 }))
    expect(error.code).toBe('TIMEOUT')
    const controller = new AbortController()
    const connecting = app.connect({ endpoint: silent.url, signal: controller.signal })
    setImmediate(() => controller.abort())
    expect((await rejectionOf(connecting)).code).toBe('ABORTED')
    await silent.close()
    // Not "already connected": the abandoned attempts left nothing.
    await app.connect({ endpoint: server.url, timeout: 10_000 })
    track(await app.createGroupSession('org/wait/connected'))
  })

  test('close, participants and routing calls take the same options', async () => {
    const app = track(await connectApp(server, 'org/wait/closer'))
    const group = track(await app.createGroupSession('org/wait/close-chat'))
    expect(await group.participants({ timeout: 10_000 })).toBeInstanceOf(Array)
    await app.subscribe('org/wait/extra', { timeout: 10_000 })
    await app.unsubscribe('org/wait/extra', { signal: new AbortController().signal })
    expect((await rejectionOf(app.setRoute('org/wait/x', { signal: AbortSignal.abort() }))).code).toBe('ABORTED')
    await group.close({ timeout: 10_000 })
    await app.close({ timeout: 10_000 })
    expect(app.closed).toBe(true)
  })

  test('timeouts outside 0 to MAX_TIMEOUT_MS are refused before anything starts', async () => {
    const app = track(await connectApp(server, 'org/wait/limits'))
    for (const timeout of [-1, Number.NaN, MAX_TIMEOUT_MS + 1, Number.POSITIVE_INFINITY]) {
      const error = await rejectionOf(app.listenForSession({ timeout }))
      expect(error.code).toBe('INVALID_ARGUMENT')
      expect(error.message).toMatch(/timeout/)
    }
  })
})
