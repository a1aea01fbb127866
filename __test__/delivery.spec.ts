// What a resolved publish promises: a group's messages published before anyone joined
// reach the first member, in order, and a publish nobody can receive fails instead of
// resolving or waiting for ever (patches/agntcy-slim-session).
import { describe, expect, test } from 'vitest'
import { connectApp, receive, rejectionOf, startTestServer, text, track } from './helpers.js'

describe.each([false, true])('mls=%s', (mls) => {
  test('messages published to an empty group reach the first member before later ones', async () => {
    const server = track(await startTestServer())
    const ns = `held${mls ? 'mls' : ''}`
    const moderator = track(await connectApp(server, `org/${ns}/moderator`))
    const member = track(await connectApp(server, `org/${ns}/member`))
    const group = track(await moderator.createGroupSession(`org/${ns}/chat`, { mls }))
    // Before the fix, the first settled after the member joined while only the second arrived.
    const early = [group.publish('early-1'), group.publish('early-2')]
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite(`org/${ns}/member`)
    const later = group.publish('right after the invite')
    await Promise.all([...early, later])
    const session = await joined
    const texts = (await receive(session, 3)).map(text)
    expect(texts).toEqual(['early-1', 'early-2', 'right after the invite'])
  })

  test('a publish to a group whose only member went offline fails at once, and the group delivers after it rejoins', async () => {
    const server = track(await startTestServer())
    const ns = `alloff${mls ? 'mls' : ''}`
    const moderator = track(await connectApp(server, `org/${ns}/moderator`))
    const member = track(await connectApp(server, `org/${ns}/member`))
    const group = track(await moderator.createGroupSession(`org/${ns}/chat`, { mls, maxRetries: 5, interval: 300 }))
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite(`org/${ns}/member`)
    const session = await joined
    await group.publish('before')
    expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('before')

    await session.goOffline({ timeout: 10_000 })
    // No timeout: before the fix this waited until the member rejoined.
    const refused = await rejectionOf(group.publish('nobody online'))
    expect(refused.code).toBe('DELIVERY_FAILED')
    expect(refused.message).toContain('offline')

    await session.rejoin({ timeout: 10_000 })
    await group.publish('after')
    // What failed is not delivered later: the member reads only what resolved.
    expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('after')
  })
})
