import { expect, test } from 'vitest'
import { startServer } from '../src-ts/index.js'
import { closeAll, connectApp, rejectionOf, startTestServer, track } from './helpers.js'

test('Symbol.asyncDispose closes sessions, apps and the node; closing twice is harmless', async () => {
  // Tracked as well, in case the test fails before disposing of them itself.
  const server = track(await startTestServer())
  expect(server.running).toBe(true)
  expect(server.url).toBe(`http://${server.endpoint}`)
  expect(Number(server.endpoint.split(':')[1])).toBeGreaterThan(0)

  const moderator = track(await connectApp(server, 'org/life/moderator'))
  const member = track(await connectApp(server, 'org/life/member'))
  expect(moderator.name).toBe('org/life/moderator')
  expect(moderator.id).toMatch(/^[0-9a-f-]{36}$/)

  const group = track(await moderator.createGroupSession('org/life/chat'))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/life/member')
  const memberSession = await joined

  // The moderator ending the group ends it for the member too.
  await group[Symbol.asyncDispose]()
  expect(group.closed).toBe(true)
  expect((await rejectionOf(memberSession.getMessage({ timeout: 10_000 }))).code).toBe('SESSION_CLOSED')
  const remaining: string[] = []
  for await (const message of memberSession) remaining.push(message.source)
  expect(remaining).toEqual([])

  await member[Symbol.asyncDispose]()
  expect(member.closed).toBe(true)
  expect((await rejectionOf(member.listenForSession())).code).toBe('CLOSED')

  await closeAll(moderator, moderator)
  await server[Symbol.asyncDispose]()
  expect(server.running).toBe(false)
  await server.stop()
})

test('a server cannot take a port that is already in use', async () => {
  const server = track(await startTestServer())
  const error = await rejectionOf(startServer({ endpoint: server.endpoint }))
  expect(error.code).toBe('SERVER')
  expect(error.message).toContain(server.endpoint)
})

test('subscribing an extra name makes the app reachable under it; routes can be set and removed', async () => {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, 'org/route/alice'))
  const bob = track(await connectApp(server, 'org/route/bob'))
  await bob.subscribe('org/route/helpdesk')

  const incoming = bob.listenForSession({ timeout: 30_000 })
  const session = track(await alice.createPointToPointSession('org/route/helpdesk'))
  const bobSession = await incoming
  await session.publish('anyone there?')
  const message = await bobSession.getMessage({ timeout: 10_000 })
  expect(message.source).toBe('org/route/alice')
  expect(message.payload.toString()).toBe('anyone there?')

  // Close while the alias still routes to bob, so the close reaches him at once.
  await session.close()
  await bob.unsubscribe('org/route/helpdesk')
  await alice.setRoute('org/route/elsewhere')
  await alice.removeRoute('org/route/elsewhere')
})
