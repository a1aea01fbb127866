// Every member of a reliable group publishes a burst as fast as the API takes it; every
// other member must receive each message exactly once, in order per sender.
// `SLIM_BURST_COUNT` scales it up for the soak (`npm run soak`).
import { expect, test } from 'vitest'
import type { Session } from '../src-ts/index.js'
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

test.each([false, true])(
  `mls=%s: ${MEMBERS} members each publish ${COUNT} messages; all arrive once, in order`,
  async (mls) => {
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

    const receiving = sessions.map((session, self) => receiveBursts(session, self))
    const publishing = sessions.map((session, sender) =>
      Promise.all(Array.from({ length: COUNT }, (_, seq) => session.publish(payload(sender, seq)))),
    )
    await Promise.all(publishing)
    const tallies = await Promise.all(receiving)
    tallies.forEach((next, self) => {
      expect(next.filter((_, sender) => sender !== self)).toEqual(new Array(MEMBERS - 1).fill(COUNT))
    })
    // Nothing more than the bursts arrived.
    for (const session of sessions) {
      await expect(session.getMessage({ timeout: 200 })).rejects.toMatchObject({ code: 'TIMEOUT' })
    }
    expect(warnings).toEqual([])
  },
  Math.max(120_000, COUNT * 60),
)
