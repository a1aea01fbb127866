// An app with connections to two nodes that know nothing of each other: names and routes
// go where the caller says, a connection can be closed on its own, and a default gateway
// carries what has no route.
import { expect, test } from 'vitest'
import type { App, Session, SlimServer } from '../src-ts/index.js'
import { connectApp, receive, rejectionOf, startTestServer, text, track } from './helpers.js'

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
