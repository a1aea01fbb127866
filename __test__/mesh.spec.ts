// Two SLIM nodes linked as upstream's multi-node deployments link them: one node is a
// peer client of the other, and subscriptions are shared over the link.
import { describe, expect, test } from 'vitest'
import { type App, type Session, type SlimServer, startServer } from '../src-ts/index.js'
import { closedPort, connectApp, receive, rejectionOf, startTestServer, text, track } from './helpers.js'

/** Invites each app into a new group on `moderator`; resolves with every member's session. */
async function groupOf(moderator: App, members: App[], channel: string, mls: boolean) {
  const group = track(await moderator.createGroupSession(channel, { mls, maxRetries: 5, interval: 500 }))
  const joined = members.map((member) => member.listenForSession({ timeout: 30_000 }))
  for (const member of members) await group.invite(member.name)
  return { group, sessions: await Promise.all(joined) }
}

describe.each([false, true])('a group split across two linked nodes, mls=%s', (mls) => {
  test('members on either node receive everyone else’s messages', async () => {
    const first = track(await startTestServer())
    const second = track(await startServer({ endpoint: '127.0.0.1:0', peers: [{ endpoint: first.url }] }))
    const at = async (node: SlimServer, name: string) => track(await connectApp(node, `org/mesh/${name}`))
    const moderator = await at(first, 'moderator')
    const members = [await at(first, 'near'), await at(second, 'far-1'), await at(second, 'far-2')]
    const { group, sessions } = await groupOf(moderator, members, 'org/mesh/room', mls)

    const everyone: Array<[string, Session]> = [
      [moderator.name, group],
      ...members.map((member, i) => [member.name, sessions[i]] as [string, Session]),
    ]
    await Promise.all(everyone.map(([name, session]) => session.publish(`hello from ${name}`)))
    for (const [name, session] of everyone) {
      const seen = (await receive(session, everyone.length - 1)).map((m) => `${m.source}: ${text(m)}`).sort()
      const expected = everyone.filter(([other]) => other !== name).map(([other]) => `${other}: hello from ${other}`)
      expect(seen).toEqual(expected.sort())
    }
  })
})

test('when the linking node restarts, the link and its apps come back and the group delivers again', async () => {
  const first = track(await startTestServer())
  const second = track(await startServer({ endpoint: '127.0.0.1:0', peers: [{ endpoint: first.url }] }))
  const moderator = track(await connectApp(first, 'org/relink/moderator'))
  const near = track(await connectApp(first, 'org/relink/near'))
  const far = track(await connectApp(second, 'org/relink/far'))
  const { group, sessions } = await groupOf(moderator, [near, far], 'org/relink/room', false)
  const [atNear, atFar] = sessions as [Session, Session]

  await second.stop()
  // Restarted on the same port.
  track(await startServer({ endpoint: second.endpoint, peers: [{ endpoint: first.url }] }))
  // Bounded: probe until the far member hears the moderator again (about a second here).
  let back = false
  for (let attempt = 0; attempt < 20 && !back; attempt++) {
    await group.publish(`probe ${attempt}`)
    back = await atFar.getMessage({ timeout: 1_000 }).then(
      () => true,
      () => false,
    )
  }
  expect(back).toBe(true)
  await atFar.publish('far is back')
  for (const session of [group, atNear]) {
    const texts: string[] = []
    while (!texts.includes('far is back')) texts.push(text(await session.getMessage({ timeout: 10_000 })))
  }
})

test('a peer that is not listening fails the start with CONNECT', async () => {
  const error = await rejectionOf(
    startServer({ endpoint: '127.0.0.1:0', peers: [{ endpoint: `http://127.0.0.1:${await closedPort()}` }] }),
  )
  expect(error.code).toBe('CONNECT')
})
