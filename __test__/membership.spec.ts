// A member goes offline and comes back (upstream's soft close and rejoin), and the
// moderator sees it through `participant` events.
import { on } from 'node:events'
import { describe, expect, test } from 'vitest'
import type { ParticipantChange, Session } from '../src-ts/index.js'
import { connectApp, receive, rejectionOf, startTestServer, text, track } from './helpers.js'

/**
 * The `participant` events of `session` through one listener kept for the whole test:
 * removing the last listener resets the watch, whose first read then reports everyone
 * as joined, so a wait started after that could miss an offline or online change.
 */
function changesOf(session: Session, ms = 45_000) {
  const events = on(session, 'participant', { signal: AbortSignal.timeout(ms) })
  return {
    /** The next event that `wanted` accepts; the ones before it are passed over. */
    async next(wanted: (change: ParticipantChange) => boolean): Promise<ParticipantChange> {
      for (;;) {
        const { value, done } = await events.next()
        if (done) throw new Error('the participant events ended')
        const [change] = value as [ParticipantChange]
        if (wanted(change)) return change
      }
    },
    stop: () => events.return?.(),
  }
}

/** Messages until one whose text is `wanted`; the texts seen before it. */
async function until(session: Session, wanted: string): Promise<string[]> {
  const seen: string[] = []
  for (;;) {
    const [message] = await receive(session, 1)
    if (message && text(message) === wanted) return seen
    if (message) seen.push(text(message))
  }
}

describe.each([false, true])('going offline and rejoining, mls=%s', (mls) => {
  test('the moderator sees the member offline, then online, and the group delivers to it again', async () => {
    const server = track(await startTestServer())
    const ns = `soft${mls ? 'mls' : ''}`
    const moderator = track(await connectApp(server, `org/${ns}/moderator`))
    const away = track(await connectApp(server, `org/${ns}/away`))
    const stays = track(await connectApp(server, `org/${ns}/stays`))
    const group = track(await moderator.createGroupSession(`org/${ns}/chat`, { mls, maxRetries: 5, interval: 300 }))
    const joined = [away.listenForSession({ timeout: 30_000 }), stays.listenForSession({ timeout: 30_000 })]
    const changes = changesOf(group)
    const joins = changes.next((c) => c.name === `org/${ns}/stays` && c.change === 'joined')
    await group.invite(`org/${ns}/away`)
    await group.invite(`org/${ns}/stays`)
    const [awaySession, staysSession] = (await Promise.all(joined)) as [Session, Session]
    expect((await joins).online).toBe(true)

    const offline = changes.next((c) => c.name === `org/${ns}/away` && c.change === 'offline')
    await awaySession.goOffline({ timeout: 10_000 })
    expect(await offline).toMatchObject({ name: `org/${ns}/away`, online: false, change: 'offline' })
    const listed = await group.participants()
    expect(listed.find((p) => p.name === `org/${ns}/away`)?.online).toBe(false)
    expect(awaySession.closed).toBe(false)

    // The group goes on without it.
    await group.publish('while away')
    expect(await until(staysSession, 'while away')).toEqual([])

    const online = changes.next((c) => c.name === `org/${ns}/away` && c.change === 'online')
    await awaySession.rejoin({ timeout: 10_000 })
    expect(await online).toMatchObject({ online: true, change: 'online' })
    await group.publish('welcome back')
    await until(awaySession, 'welcome back')
    await awaySession.publish('glad to be back')
    expect(await until(group, 'glad to be back')).toEqual([])
    await changes.stop()
  })
})

test('with MLS, a member offline while the group keys change rejoins and reads the new epoch', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/epoch/moderator'))
  const away = track(await connectApp(server, 'org/epoch/away'))
  const late = track(await connectApp(server, 'org/epoch/late'))
  const group = track(await moderator.createGroupSession('org/epoch/chat', { mls: true, maxRetries: 5, interval: 300 }))
  const joined = away.listenForSession({ timeout: 30_000 })
  await group.invite('org/epoch/away')
  const awaySession = await joined
  await awaySession.goOffline({ timeout: 10_000 })
  const lateJoined = late.listenForSession({ timeout: 30_000 })
  await group.invite('org/epoch/late') // a new member: a new MLS epoch
  const lateSession = await lateJoined
  // Upstream still hands an offline member the group's commits, so its epoch is current.
  await awaySession.rejoin({ timeout: 10_000 })
  await group.publish('after the epoch change')
  await until(awaySession, 'after the epoch change')
  await until(lateSession, 'after the epoch change')
})

test('point-to-point sessions cannot go offline or rejoin', async () => {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, 'org/softp2p/alice'))
  const bob = track(await connectApp(server, 'org/softp2p/bob'))
  const incoming = bob.listenForSession({ timeout: 30_000 })
  const p2p = track(await alice.createPointToPointSession('org/softp2p/bob'))
  await incoming
  expect((await rejectionOf(p2p.goOffline())).code).toBe('NOT_GROUP')
  expect((await rejectionOf(p2p.rejoin())).code).toBe('NOT_GROUP')
})

test('participant events stop when the last listener goes, and never keep the process alive', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/roster/moderator'))
  const member = track(await connectApp(server, 'org/roster/member'))
  const group = track(await moderator.createGroupSession('org/roster/chat'))
  const listener = (): void => {}
  group.on('participant', listener)
  const changes = changesOf(group)
  const joined = changes.next((c) => c.name === 'org/roster/member')
  const listening = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/roster/member')
  expect(await joined).toMatchObject({ name: 'org/roster/member', change: 'joined', online: true })
  await listening
  await changes.stop()
  group.off('participant', listener)
  expect(group.listenerCount('participant')).toBe(0)
})
