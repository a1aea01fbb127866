// Publishes routed explicitly (upstream's publish_with_params): to another name than the
// session's destination, or out of a connection the caller picks.
import { expect, test } from 'vitest'
import type { Session } from '../src-ts/index.js'
import { connectApp, receive, rejectionOf, startTestServer, text, track } from './helpers.js'

async function unreliableGroupOfTwo(ns: string): Promise<{ group: Session; first: Session; second: Session }> {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, `org/${ns}/moderator`))
  const apps = [track(await connectApp(server, `org/${ns}/first`)), track(await connectApp(server, `org/${ns}/second`))]
  const group = track(await moderator.createGroupSession(`org/${ns}/chat`, { reliable: false }))
  const joined = apps.map((app) => app.listenForSession({ timeout: 30_000 }))
  for (const app of apps) await group.invite(app.name)
  const [first, second] = (await Promise.all(joined)) as [Session, Session]
  return { group, first, second }
}

const firstText = async (session: Session): Promise<string> => text((await receive(session, 1))[0] as never)

test('a publish with a destination reaches that member only', async () => {
  const { group, first, second } = await unreliableGroupOfTwo('direct')
  await group.publish('just for you', { destination: 'org/direct/second' })
  const [direct] = await receive(second, 1)
  expect(text(direct as never)).toBe('just for you')
  // A reply goes back the way the message came; routing options would be ignored.
  const misrouted = await rejectionOf(second.publishTo(direct as never, 'back', { destination: 'org/direct/first' }))
  expect(misrouted.code).toBe('INVALID_ARGUMENT')
  await group.publish('for everyone')
  expect(await firstText(first)).toBe('for everyone')
  expect(await firstText(second)).toBe('for everyone')
})

test('routing options are checked', async () => {
  const { group } = await unreliableGroupOfTwo('badroute')
  for (const options of [{ connection: 1.5 }, { destination: 'not a name' }, { connection: -1 }]) {
    const error = await rejectionOf(group.publish('x', options))
    expect(['INVALID_ARGUMENT', 'INVALID_NAME']).toContain(error.code)
  }
})
