// Every member of a reliable group publishes a burst as fast as the API takes it; every
// other member must receive each message exactly once, in order per sender. Once alone,
// once while other work runs: a point-to-point flood between two more apps of the process
// and a process keeping a core busy. `SLIM_BURST_COUNT` scales it up for the soak
// (`npm run soak`).
import { spawn } from 'node:child_process'
import { expect, test } from 'vitest'
import type { Session, SlimServer } from '../src-ts/index.js'
import { connectApp, startTestServer, track } from './helpers.js'

const COUNT = Number(process.env.SLIM_BURST_COUNT ?? 2_000)
const MEMBERS = Number(process.env.SLIM_BURST_MEMBERS ?? 5)
/** Generous per-message bound: a stall fails the test instead of hanging it. */
const RECEIVE_TIMEOUT_MS = 30_000

function payload(sender: number, seq: number): Buffer {
  const bytes = Buffer.alloc(64)
  bytes.writeUInt32LE(sender, 0)
  bytes.writeUInt32LE(seq, 4)
  return bytes
}

/** Receives every other member's burst and checks it arrives once and in order per sender. */
async function receiveBursts(session: Session, self: number): Promise<number[]> {
  const next = new Array<number>(MEMBERS).fill(0)
  const expected = (MEMBERS - 1) * COUNT
  for (let received = 0; received < expected; received++) {
    const { payload: bytes } = await session.getMessage({ timeout: RECEIVE_TIMEOUT_MS })
    const sender = bytes.readUInt32LE(0)
    const seq = bytes.readUInt32LE(4)
    if (sender === self || seq !== next[sender]) {
      throw new Error(`member ${self} got message ${seq} of member ${sender}, expected ${next[sender]}`)
    }
    next[sender] = seq + 1
  }
  return next
}

/** Other work until `done` settles: a point-to-point flood through `server`, and a busy core. */
async function otherWork(server: SlimServer, done: Promise<unknown>): Promise<number> {
  const busy = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  track({ close: async () => void busy.kill('SIGKILL') })
  const sender = track(await connectApp(server, 'org/burst/flood-sender'))
  const receiver = track(await connectApp(server, 'org/burst/flood-receiver'))
  const incoming = receiver.listenForSession({ timeout: 30_000 })
  const flood = track(await sender.createPointToPointSession('org/burst/flood-receiver'))
  const session = await incoming
  let finished = false
  void done.finally(() => {
    finished = true
  })
  // Reads until stopped; `allRead` settles once it read all that was sent.
  const stop = new AbortController()
  let target = Number.POSITIVE_INFINITY
  let received = 0
  let reached = () => {}
  const allRead = new Promise<void>((resolve) => {
    reached = resolve
  })
  const receiving = (async () => {
    for (;;) {
      try {
        await session.getMessage({ timeout: RECEIVE_TIMEOUT_MS, signal: stop.signal })
      } catch (error) {
        if (stop.signal.aborted) return received
        throw error
      }
      if (++received >= target) reached()
    }
  })()
  let sent = 0
  while (!finished) {
    await flood.publishMany(Array.from({ length: 50 }, (_, i) => `flood ${sent + i}`))
    sent += 50
  }
  busy.kill('SIGKILL')
  target = sent
  if (received >= target) reached()
  await Promise.race([allRead, receiving])
  stop.abort()
  return receiving
}

async function burst(mls: boolean, beside: boolean): Promise<void> {
  const server = track(await startTestServer())
  const names = Array.from({ length: MEMBERS }, (_, i) => `org/burst/member-${mls}-${i}`)
  const apps = await Promise.all(names.map(async (name) => track(await connectApp(server, name))))
  const [moderatorApp, ...memberApps] = apps
  if (!moderatorApp) throw new Error('no moderator')
  // Released first, it ends the group for every member at once.
  const moderator = track(await moderatorApp.createGroupSession(`org/burst/group-${mls}`, { mls }))
  const joined = memberApps.map((app) => app.listenForSession({ timeout: 30_000 }))
  for (const name of names.slice(1)) await moderator.invite(name)
  const sessions = [moderator, ...(await Promise.all(joined))]
  const warnings: string[] = []
  for (const session of sessions) session.on('warning', (error) => warnings.push(error.message))

  const receiving = Promise.all(sessions.map((session, self) => receiveBursts(session, self)))
  const other = beside ? otherWork(server, receiving) : Promise.resolve(0)
  const publishing = sessions.map((session, sender) =>
    Promise.all(Array.from({ length: COUNT }, (_, seq) => session.publish(payload(sender, seq)))),
  )
  await Promise.all(publishing)
  const tallies = await receiving
  tallies.forEach((next, self) => {
    expect(next.filter((_, sender) => sender !== self)).toEqual(new Array(MEMBERS - 1).fill(COUNT))
  })
  if (beside) expect(await other).toBeGreaterThan(0)
  // Nothing more than the bursts arrived.
  for (const session of sessions) {
    await expect(session.getMessage({ timeout: 200 })).rejects.toMatchObject({ code: 'TIMEOUT' })
  }
  expect(warnings).toEqual([])
}

const TIMEOUT = Math.max(120_000, COUNT * 60)

test.each([false, true])(
  `mls=%s: ${MEMBERS} members each publish ${COUNT} messages; all arrive once, in order`,
  (mls) => burst(mls, false),
  TIMEOUT,
)

// SLIM core 3.4's bounded channels used to fill up in a cycle here and stall the process
// (README, "Bursts"; patches/agntcy-slim-session).
test(
  `mls=true while other work runs: ${MEMBERS} members each publish ${COUNT} messages; all arrive once, in order`,
  () => burst(true, true),
  TIMEOUT,
)
