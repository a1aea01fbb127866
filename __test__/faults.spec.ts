// Crashed members and a restarted node, with the members and the node in processes of
// their own so they can be killed for real.
import { once } from 'node:events'
import { join } from 'node:path'
import { expect, test, vi } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import {
  type App,
  type AppStatus,
  type Session,
  type SlimError,
  type SlimServer,
  setPeerTimeout,
} from '../src-ts/index.js'
import {
  closedPort,
  connectApp,
  nodeProcessAt,
  pausableProxy,
  rejectionOf,
  startTestServer,
  text,
  track,
  upstreamNodeAt,
} from './helpers.js'

/** A group member (or moderator) in its own process: __test__/fixtures/group-member.mjs. Killed when the test ends. */
function member(...args: string[]): ExampleProcess {
  return track(
    new ExampleProcess(args[1] ?? 'member', 'group-member.mjs', args, {
      dir: join(root, '__test__', 'fixtures'),
    }),
  )
}

async function kill(child: ExampleProcess): Promise<void> {
  child.child.kill('SIGKILL')
  await child.exited
}

const onlineOf = async (group: Session, name: string): Promise<boolean | undefined> =>
  (await group.participants()).find((participant) => participant.name === name)?.online

test('a member killed with SIGKILL: the others go on, the moderator sees it offline and re-invites it', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/fault/moderator'))
  const survivor = track(await connectApp(server, 'org/fault/survivor'))
  const victim = member('member', 'org/fault/victim', server.url)
  await victim.waitFor('ready')

  const group = track(await moderator.createGroupSession('org/fault/group', { maxRetries: 3, interval: 500 }))
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
})

test('a point-to-point peer killed with SIGKILL: a publish nobody acknowledges fails with DELIVERY_FAILED', async () => {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, 'org/gone/alice'))
  const peer = member('member', 'org/gone/bob', server.url)
  await peer.waitFor('ready')
  const session = track(await alice.createPointToPointSession('org/gone/bob', { maxRetries: 3, interval: 200 }))
  await session.publish('hello')
  await peer.waitFor('got hello')
  await kill(peer)
  // Before patches/agntcy-slim-session, upstream resolved it once its retries ran out.
  const failed = await rejectionOf(session.publish('are you there?'))
  expect(failed.code).toBe('DELIVERY_FAILED')
})

/** A receive on a point-to-point session whose peer, in a process of its own, is SIGKILLed while it waits. */
async function receiveFromKilledPeer(ns: string, timeout: number): Promise<SlimError> {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, `org/${ns}/alice`))
  const peer = member('member', `org/${ns}/bob`, server.url)
  await peer.waitFor('ready')
  const session = track(await alice.createPointToPointSession(`org/${ns}/bob`))
  await session.publish('hello')
  await peer.waitFor('got hello')
  const waiting = session.getMessage({ timeout })
  await kill(peer)
  return rejectionOf(waiting)
}

test('a point-to-point peer killed with SIGKILL while the other side waits: the receive fails within 5 s', async () => {
  // Bob heartbeats every 375 ms and said so: silent for the peer timeout (3 s by
  // default), he is gone and the session ends, well before the receive's own 5 s.
  const ended = await receiveFromKilledPeer('dead', 5_000)
  expect(ended.code).toBe('SESSION_CLOSED')
  expect(ended.message).toContain('its peer org/dead/bob went offline')
})

test('a point-to-point peer whose JavaScript is blocked for twice the peer timeout is not taken for dead', async () => {
  const server = track(await startTestServer())
  const alice = track(await connectApp(server, 'org/busy/alice'))
  const peer = track(
    new ExampleProcess('busy', 'busy-peer.mjs', ['org/busy/bob', server.url], {
      dir: join(root, '__test__', 'fixtures'),
    }),
  )
  await peer.waitFor('ready')
  const session = track(await alice.createPointToPointSession('org/busy/bob'))
  await session.publish('6000')
  await peer.waitFor('busy')
  // Its heartbeats come from the addon's threads, which its blocked event loop does not stop.
  expect(text(await session.getMessage({ timeout: 20_000 }))).toBe('done')
})

test('setPeerTimeout(0) keeps upstream behaviour: a receive on a dead peer waits for its own timeout', async () => {
  setPeerTimeout(0)
  try {
    expect((await receiveFromKilledPeer('upstream', 6_000)).code).toBe('TIMEOUT')
  } finally {
    setPeerTimeout(3_000)
  }
})

test('a member that goes offline behind a paused connection and rejoins as it resumes is back in the group', async () => {
  const server = track(await startTestServer())
  const proxy = track(await pausableProxy(Number(new URL(server.url).port)))
  const moderator = track(await connectApp(server, 'org/rejoin/moderator'))
  const member = track(await connectApp(proxy, 'org/rejoin/member'))
  const group = track(await moderator.createGroupSession('org/rejoin/group', { maxRetries: 5, interval: 300 }))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/rejoin/member')
  const session = await joined
  await group.publish('before')
  expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('before')

  // goOffline's acknowledgements are held in the proxy, so it resolves when its retries
  // run out; the rejoin made meanwhile then meets the late acknowledgements (upstream
  // dropped the rejoin's waiter on them: "channel closed", the member left offline).
  const paused = proxy.pause(2_500)
  await session.goOffline({ timeout: 10_000 })
  await session.rejoin({ timeout: 10_000 })
  await paused

  await vi.waitFor(async () => expect(await onlineOf(group, 'org/rejoin/member')).toBe(true), {
    timeout: 15_000,
    interval: 200,
  })
  for (let i = 0; i < 20; i++) await group.publish(`after-${i}`)
  for (let i = 0; i < 20; i++) expect(text(await session.getMessage({ timeout: 10_000 }))).toBe(`after-${i}`)
})

/** SIGKILL restarts the restart test rides out (`SLIM_RESTARTS`, 50 by default). */
const RESTARTS = Number(process.env.SLIM_RESTARTS ?? 50)

/** Publishes `<prefix>-0`, `<prefix>-1`, … one at a time until stopped, noting how each settled. */
function publishing(session: Session, prefix: string) {
  const resolved: string[] = []
  const failures = new Map<string, string>()
  let stopped = false
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const body = `${prefix}-${i}`
      try {
        await session.publish(body, { timeout: 30_000 })
        resolved.push(body)
      } catch (error) {
        failures.set(body, (error as SlimError).code)
        // While nobody is online a publish fails at once: pace the retries.
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
  })()
  return {
    resolved,
    failures,
    async stop() {
      stopped = true
      await done
    },
  }
}

/** Every message `session` receives, until stopped. */
function collecting(session: Session) {
  const received: string[] = []
  let stopped = false
  const done = (async () => {
    while (!stopped) {
      const message = await session.getMessage({ timeout: 500 }).catch((error: SlimError) => {
        if (error.code !== 'TIMEOUT') throw error
      })
      if (message) received.push(text(message))
    }
  })()
  return {
    received,
    async stop() {
      stopped = true
      await done
    },
  }
}

test(`the node SIGKILLed and restarted ${RESTARTS} times: apps reconnect by themselves, an MLS group and a point-to-point session go on, and every resolved publish arrives exactly once`, async () => {
  const port = await closedPort()
  // Every other node is upstream's own `slim` binary.
  const startNode = (restart: number) => (restart % 2 ? upstreamNodeAt(port) : nodeProcessAt(port).then((n) => n.child))
  let node = await startNode(0)
  const server = { url: `http://127.0.0.1:${port}` } as SlimServer
  const moderator = track(await connectApp(server, 'org/restart/moderator'))
  const member = track(await connectApp(server, 'org/restart/member'))
  const statuses = new Map<App, AppStatus[]>([
    [moderator, []],
    [member, []],
  ])
  for (const [app, seen] of statuses) app.on('status', (status) => seen.push(status))

  const group = track(await moderator.createGroupSession('org/restart/group', { mls: true }))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/restart/member')
  const groupAtMember = await joined
  const answered = moderator.listenForSession({ timeout: 30_000 })
  const direct = track(await member.createPointToPointSession('org/restart/moderator', { mls: true }))
  const directAtModerator = await answered

  const flows = [
    { publisher: publishing(group, 'group'), receiver: collecting(groupAtMember) },
    { publisher: publishing(direct, 'direct'), receiver: collecting(directAtModerator) },
  ]
  /** Until each flow delivered a message more than it had when called. */
  const delivering = async () => {
    const before = flows.map((flow) => flow.receiver.received.length)
    await vi.waitFor(
      () => {
        for (const [i, flow] of flows.entries()) expect(flow.receiver.received.length).toBeGreaterThan(before[i] ?? 0)
      },
      {
        timeout: 30_000,
        interval: 50,
      },
    )
  }
  await delivering()

  for (let restart = 1; restart <= RESTARTS; restart++) {
    const signal = AbortSignal.timeout(60_000)
    const back = Promise.all([moderator, member].map((app) => once(app, 'reconnect', { signal })))
    node.kill('SIGKILL')
    await once(node, 'exit')
    node = await startNode(restart)
    await back
    await delivering()
  }

  for (const flow of flows) await flow.publisher.stop()
  // The last publishes resolved: once they are received, everything before them is in.
  await vi.waitFor(
    () => {
      for (const { publisher, receiver } of flows) expect(receiver.received).toContain(publisher.resolved.at(-1))
    },
    { timeout: 30_000, interval: 50 },
  )
  for (const flow of flows) await flow.receiver.stop()

  for (const { publisher, receiver } of flows) {
    const times = new Map<string, number>()
    for (const body of receiver.received) times.set(body, (times.get(body) ?? 0) + 1)
    const lost = publisher.resolved.filter((body) => !times.has(body))
    const twice = [...times].filter(([, n]) => n > 1).map(([body]) => body)
    const codes = new Set(publisher.failures.values())
    console.log(
      `${RESTARTS} restarts: ${publisher.resolved.length} resolved, ${publisher.failures.size} failed (${[...codes].join(', ') || 'none'}), ${receiver.received.length} received, ${lost.length} lost, ${twice.length} twice`,
    )
    expect(lost).toEqual([])
    expect(twice).toEqual([])
    for (const code of codes) expect(['DELIVERY_FAILED', 'TIMEOUT']).toContain(code)
  }
  for (const [app, seen] of statuses) {
    const count = (type: AppStatus['type']) => seen.filter((status) => status.type === type).length
    expect(count('disconnect')).toBeGreaterThanOrEqual(RESTARTS)
    expect(count('reconnect')).toBe(count('disconnect'))
    expect(count('reconnecting')).toBeGreaterThanOrEqual(count('reconnect'))
    expect(seen.filter((s) => s.type === 'error')).toEqual([])
    expect(app.closed).toBe(false)
  }
  expect(group.closed || direct.closed || groupAtMember.closed || directAtModerator.closed).toBe(false)
}, 600_000)

test('the moderator killed: participants see it offline and their session ends', async () => {
  const server = track(await startTestServer())
  const participant = track(await connectApp(server, 'org/orphan/member'))
  const joined = participant.listenForSession({ timeout: 30_000 })
  const moderator = member('moderator', 'org/orphan/moderator', server.url, 'org/orphan/group', 'org/orphan/member')
  await moderator.waitFor('joined')
  const session = await joined
  moderator.write('hello')
  expect(text(await session.getMessage({ timeout: 10_000 }))).toBe('hello')

  await kill(moderator)
  // Upstream heartbeats every 10 s and marks a member offline after 3 misses; slim-node
  // then ends a session whose moderator that is.
  const ended = await rejectionOf(session.getMessage({ timeout: 60_000 }))
  expect(ended.code).toBe('SESSION_CLOSED')
  expect(ended.message).toContain('its moderator org/orphan/moderator went offline')
  expect(session.closed).toBe(true)
}, 90_000)
