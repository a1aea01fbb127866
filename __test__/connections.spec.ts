// An app with connections to two nodes that know nothing of each other: names and routes
// go where the caller says, a connection can be closed on its own, and a default gateway
// carries what has no route. Then two linked nodes, one of which dies under the app.
import { once } from 'node:events'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import { type App, type AppStatus, createApp, type Session, type SlimServer } from '../src-ts/index.js'
import {
  closedPort,
  connectApp,
  receive,
  rejectionOf,
  SECRET,
  startTestServer,
  text,
  track,
  upstreamNodeAt,
} from './helpers.js'

interface Hub {
  west: SlimServer
  east: SlimServer
  hub: App
  viaWest: number
  viaEast: number
}

/** `org/multi/hub`, connected to two unlinked nodes. */
async function hubOnTwoNodes(): Promise<Hub> {
  const west = track(await startTestServer())
  const east = track(await startTestServer())
  const hub = track(await connectApp(server(west), 'org/multi/hub'))
  const viaWest = hub.connections[0] as number
  const viaEast = await hub.connect({ endpoint: east.url })
  return { west, east, hub, viaWest, viaEast }
}

const server = (node: SlimServer): SlimServer => node

/** `peer` opens a point-to-point session to the hub; both sides say hello. */
async function exchange(hub: App, peer: App): Promise<[Session, Session]> {
  const incoming = hub.listenForSession({ timeout: 30_000 })
  incoming.catch(() => {}) // awaited below; a failure before then is the test's own
  const outgoing = track(await peer.createPointToPointSession('org/multi/hub', { maxRetries: 5, interval: 300 }))
  const atHub = await incoming
  await outgoing.publish(`hello from ${peer.name}`)
  expect(text((await receive(atHub, 1))[0] as never)).toBe(`hello from ${peer.name}`)
  await atHub.publish(`hello ${peer.name}`)
  expect(text((await receive(outgoing, 1))[0] as never)).toBe(`hello ${peer.name}`)
  return [atHub, outgoing]
}

test('an app connects to two nodes and reaches apps on each, routing by connection', async () => {
  const { west, east, hub, viaWest, viaEast } = await hubOnTwoNodes()
  expect(hub.connections).toEqual([viaWest, viaEast])
  expect(viaEast).not.toBe(viaWest)
  const westerner = track(await connectApp(west, 'org/multi/westerner'))
  const easterner = track(await connectApp(east, 'org/multi/easterner'))
  await hub.setRoute('org/multi/westerner')
  await hub.setRoute('org/multi/easterner', { connection: viaEast })
  await exchange(hub, westerner)
  const [atHub, atEasterner] = await exchange(hub, easterner)
  await atHub.publish('out of the east connection', { connection: viaEast })
  expect(text((await receive(atEasterner, 1))[0] as never)).toBe('out of the east connection')
  expect((await rejectionOf(hub.connect({ endpoint: east.url }))).code).toBe('CONNECT')
  expect((await rejectionOf(hub.setRoute('org/multi/x', { connection: 999_999 }))).code).toBe('INVALID_ARGUMENT')
})

test('disconnecting one connection leaves the app open on the other, and it can connect again', async () => {
  const { west, east, hub, viaWest, viaEast } = await hubOnTwoNodes()
  await hub.disconnect(viaEast)
  expect(hub.connections).toEqual([viaWest])
  expect(hub.closed).toBe(false)
  const westerner = track(await connectApp(west, 'org/multi/westerner'))
  await hub.setRoute('org/multi/westerner')
  await exchange(hub, westerner)
  const again = await hub.connect({ endpoint: east.url })
  expect(hub.connections).toEqual([viaWest, again])
  expect((await rejectionOf(hub.disconnect(987_654))).code).toBe('INVALID_ARGUMENT')
})

test('a default gateway carries replies that have no route', async () => {
  const { east, hub, viaEast } = await hubOnTwoNodes()
  hub.setDefaultGateway(viaEast)
  const easterner = track(await connectApp(east, 'org/multi/easterner'))
  await exchange(hub, easterner)
  hub.clearDefaultGateway()
  expect(() => hub.setDefaultGateway(123_456)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }))
})

test('an app on two linked nodes keeps its MLS group when one node is SIGKILLed: reconnecting gives that connection up and the other carries the group', async () => {
  const port = await closedPort()
  await upstreamNodeAt(port) // upstream's own `slim` binary
  const upstream = `http://127.0.0.1:${port}`
  const linked = track(
    new ExampleProcess('linked node', 'linked-node.mjs', ['127.0.0.1:0', upstream], {
      dir: join(root, '__test__', 'fixtures'),
    }),
  )
  const line = await linked.waitFor('listening')
  const doomed = line.slice(line.indexOf('http://'))

  const moderator = track(await createApp({ name: 'org/linked/moderator', identity: { sharedSecret: SECRET } }))
  // Names and routes go through the oldest connection: the node that will die.
  const viaDoomed = await moderator.connect({ endpoint: doomed, reconnect: { maxAttempts: 3, maxDelay: 200 } })
  const viaUpstream = await moderator.connect({ endpoint: upstream })
  const statuses: AppStatus[] = []
  const following = (async () => {
    for await (const status of moderator.status()) statuses.push(status)
  })()
  const member = track(await connectApp({ url: upstream } as SlimServer, 'org/linked/member'))
  const group = track(
    await moderator.createGroupSession('org/linked/chat', { mls: true, maxRetries: 5, interval: 300 }),
  )
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/linked/member')
  const session = await joined
  await group.publish('before')
  expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('before')

  const gaveUp = once(moderator, 'error', { signal: AbortSignal.timeout(30_000) })
  linked.child.kill('SIGKILL')
  const [error, status] = await gaveUp
  expect(error.code).toBe('CONNECT')
  expect(status).toMatchObject({ type: 'error', connection: viaDoomed })
  expect(moderator.connections).toEqual([viaUpstream])

  await group.publish('after')
  expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('after')
  await session.publish('still here')
  expect(text(await group.getMessage({ timeout: 10_000 }))).toBe('still here')
  expect(group.closed || session.closed || moderator.closed).toBe(false)

  // The status loop saw the same steps as the events, and ends when the app closes.
  await moderator.close()
  await following
  expect(statuses.map((s) => (s.type === 'reconnecting' ? `reconnecting ${s.attempt}` : s.type))).toEqual([
    'disconnect',
    'reconnecting 1',
    'reconnecting 2',
    'reconnecting 3',
    'error',
  ])
  expect(statuses.every((s) => s.connection === viaDoomed)).toBe(true)
}, 90_000)

test('a status loop ends with ABORTED when its signal fires', async () => {
  const server = track(await startTestServer())
  const app = track(await connectApp(server, 'org/status/app'))
  const controller = new AbortController()
  const next = app.status({ signal: controller.signal }).next()
  controller.abort()
  expect(await rejectionOf(next)).toMatchObject({ code: 'ABORTED' })
})
