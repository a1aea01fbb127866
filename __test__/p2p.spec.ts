import { expect, test } from 'vitest'
import { connectApp, startTestServer, text, track } from './helpers.js'

test('point-to-point request/reply over 1000 messages, with payload type and metadata', async () => {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, 'org/p2p/alice'))
  const bob = track(await connectApp(server, 'org/p2p/bob'))

  const incoming = bob.listenForSession({ timeout: 30_000 })
  const session = track(
    await alice.createPointToPointSession('org/p2p/bob', {
      maxRetries: 5,
      interval: 1000,
      metadata: { a: '1', k: 'session' },
    }),
  )
  const bobSession = await incoming
  expect(bobSession.type).toBe('point-to-point')
  expect(bobSession.id).toBe(session.id)
  expect(bobSession.metadata).toEqual({ a: '1', k: 'session' })
  expect(session.destination).toBe('org/p2p/bob')

  const echo = (async () => {
    for await (const request of bobSession) {
      expect(request.source).toBe('org/p2p/alice')
      expect(request.payloadType).toBe('request')
      await bobSession.publishTo(request, `re:${text(request)}`, {
        payloadType: 'reply',
        metadata: { seq: request.metadata.seq ?? 'missing' },
      })
    }
  })()

  const count = 1000
  const sent = Array.from({ length: count }, (_, i) =>
    session.publish(`q${i}`, { payloadType: 'request', metadata: { seq: String(i) } }),
  )
  const replies = new Map<string, string>()
  const identities = new Set<string>()
  while (replies.size < count) {
    const reply = await session.getMessage({ timeout: 10_000 })
    expect(reply.source).toBe('org/p2p/bob')
    expect(reply.payloadType).toBe('reply')
    // Shared-secret tokens name the signer and carry a fresh nonce per message.
    expect(reply.identity.startsWith(`org/p2p/bob_`)).toBe(true)
    identities.add(reply.identity)
    replies.set(reply.metadata.seq ?? '', text(reply))
  }
  expect(identities.size).toBe(count)
  await Promise.all(sent)
  for (let i = 0; i < count; i++) expect(replies.get(String(i))).toBe(`re:q${i}`)

  await session.close()
  await echo // bob's loop ends when alice closes the session
})
