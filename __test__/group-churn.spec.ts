import { expect, test, vi } from 'vitest'
import type { App } from '../src-ts/index.js'
import { closeAll, connectApp, startTestServer, text, track } from './helpers.js'

/** Every session a member is invited into, and which messages arrived in each. */
function record(app: App, log: Map<number, string[]>): Promise<void> {
  return (async () => {
    for await (const session of app.sessions()) {
      for await (const message of session) {
        const index = Number(text(message).slice('msg-'.length))
        log.set(index, [...(log.get(index) ?? []), app.name])
      }
    }
  })()
}

test('upstream group scenario: 5 members, remove and re-invite every 10 messages', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/churn/moderator'))
  const names = ['org/churn/t0', 'org/churn/t1', 'org/churn/t2', 'org/churn/t3', 'org/churn/t4']
  const apps = await Promise.all(names.map(async (name) => track(await connectApp(server, name))))
  const deliveries = new Map<number, string[]>()
  const loops = apps.map((app) => record(app, deliveries))

  const group = track(await moderator.createGroupSession('org/churn/channel', { maxRetries: 10, interval: 1000 }))
  const members = new Set(names.slice(0, 4))
  for (const name of members) await group.invite(name)

  const expectRoster = async () => {
    const roster = (await group.participants()).map((p) => p.name).sort()
    expect(roster).toEqual([...members, 'org/churn/moderator'].sort())
  }
  await expectRoster()

  const expected = new Map<number, string[]>()
  let next = 4 // index of the next member to invite
  for (let i = 0; i < 100; i++) {
    if (i > 0 && i % 10 === 0) {
      const leaving = names[(next + 1) % names.length] as string
      await group.remove(leaving)
      members.delete(leaving)
      await expectRoster()
      const joining = names[next] as string
      await group.invite(joining)
      members.add(joining)
      await expectRoster()
      next = (next + 1) % names.length
    }
    expected.set(i, [...members].sort())
    // Reliable mode: resolves once every current member acknowledged it.
    await group.publish(`msg-${i}`)
  }

  await vi.waitFor(
    () => {
      for (let i = 0; i < 100; i++) expect([...(deliveries.get(i) ?? [])].sort()).toEqual(expected.get(i))
    },
    { timeout: 10_000, interval: 50 },
  )

  // The members' loops end, without an error, once their apps close.
  await closeAll(group, moderator, ...apps)
  await Promise.all(loops)
})
