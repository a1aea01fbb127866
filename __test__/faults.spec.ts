// Crashed members, with the members in processes of their own so they can be killed
// for real.
import { join } from 'node:path'
import { afterEach, expect, test, vi } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import type { Session } from '../src-ts/index.js'
import { closeAll, connectApp, startTestServer, text } from './helpers.js'

const started: ExampleProcess[] = []
afterEach(() => {
  for (const child of started.splice(0)) child.child.kill('SIGKILL')
})

/** A group member (or moderator) in its own process: __test__/fixtures/group-member.mjs. */
function member(...args: string[]): ExampleProcess {
  const child = new ExampleProcess(args[1] ?? 'member', 'group-member.mjs', args, {
    dir: join(root, '__test__', 'fixtures'),
  })
  started.push(child)
  return child
}

async function kill(child: ExampleProcess): Promise<void> {
  child.child.kill('SIGKILL')
  await child.exited
}

const onlineOf = async (group: Session, name: string): Promise<boolean | undefined> =>
  (await group.participants()).find((participant) => participant.name === name)?.online

test('a member killed with SIGKILL: the others go on, the moderator sees it offline and re-invites it', async () => {
  const server = await startTestServer()
  const moderator = await connectApp(server, 'org/fault/moderator')
  const survivor = await connectApp(server, 'org/fault/survivor')
  const victim = member('member', 'org/fault/victim', server.url)
  await victim.waitFor('ready')

  const group = await moderator.createGroupSession('org/fault/group', { maxRetries: 3, interval: 500 })
  const joined = survivor.listenForSession({ timeout: 30_000 })
  await group.invite('org/fault/survivor')
  await group.invite('org/fault/victim')
  const survivorSession = await joined
  await group.publish('before')
  expect(text(await survivorSession.getMessage({ timeout: 10_000 }))).toBe('before')
  await victim.waitFor('got before')

  await kill(victim)
  // Upstream resolves a publish whose retries to one member ran out once it marks that
  // member offline; the members still there receive everything.
  for (const body of ['during-1', 'during-2']) {
    await group.publish(body)
    expect(text(await survivorSession.getMessage({ timeout: 10_000 }))).toBe(body)
  }
  await vi.waitFor(async () => expect(await onlineOf(group, 'org/fault/victim')).toBe(false), {
    timeout: 30_000,
    interval: 200,
  })

  // Restarted, the member can be invited again: invite first clears its offline entry.
  const restarted = member('member', 'org/fault/victim', server.url)
  await restarted.waitFor('ready')
  await group.invite('org/fault/victim', { timeout: 30_000 })
  expect(await onlineOf(group, 'org/fault/victim')).toBe(true)
  await group.publish('after')
  await restarted.waitFor('got after')
  expect(text(await survivorSession.getMessage({ timeout: 10_000 }))).toBe('after')
  // An online member cannot be invited twice.
  await expect(group.invite('org/fault/survivor')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })

  await closeAll(group, moderator, survivor, server)
})

test('the moderator killed: participants see it offline within 3 missed heartbeats', async () => {
  const server = await startTestServer()
  const participant = await connectApp(server, 'org/orphan/member')
  const joined = participant.listenForSession({ timeout: 30_000 })
  const moderator = member('moderator', 'org/orphan/moderator', server.url, 'org/orphan/group', 'org/orphan/member')
  await moderator.waitFor('joined')
  const session = await joined
  moderator.write('hello')
  expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('hello')

  await kill(moderator)
  // Upstream heartbeats every 10 s and gives up after 3 misses; the session stays open.
  await vi.waitFor(async () => expect(await onlineOf(session, 'org/orphan/moderator')).toBe(false), {
    timeout: 60_000,
    interval: 500,
  })
  expect(session.closed).toBe(false)
  await closeAll(session, participant, server)
}, 90_000)
