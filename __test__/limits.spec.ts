import { expect, test } from 'vitest'
import { MAX_MESSAGE_BYTES, SlimError } from '../src-ts/index.js'
import { connectApp, pausableProxy, rejectionOf, startTestServer, text, track } from './helpers.js'

test('the message limit is the largest MLS-padded message under gRPC’s 4 MiB, less room for headers', () => {
  expect(MAX_MESSAGE_BYTES).toBe(3.5 * 1024 * 1024 - 64 * 1024)
})

test.each([false, true])(
  'mls=%s: a payload at the limit arrives intact; one byte more is refused before sending',
  async (mls) => {
    const server = track(await startTestServer())
    const moderator = track(await connectApp(server, `org/limits/moderator-${mls}`))
    const member = track(await connectApp(server, `org/limits/member-${mls}`))
    const session = track(await moderator.createGroupSession(`org/limits/channel-${mls}`, { mls }))
    const joined = member.listenForSession({ timeout: 30_000 })
    await session.invite(`org/limits/member-${mls}`)
    const memberSession = await joined

    const largest = Buffer.alloc(MAX_MESSAGE_BYTES)
    for (let i = 0; i < largest.length; i += 4096) largest.writeUInt32LE(i, i)
    await session.publish(largest)
    const received = await memberSession.getMessage({ timeout: 30_000 })
    expect(received.payload.length).toBe(MAX_MESSAGE_BYTES)
    expect(received.payload.equals(largest)).toBe(true)

    const tooLarge = [
      session.publish(Buffer.alloc(MAX_MESSAGE_BYTES + 1)),
      session.publish('x'.repeat(MAX_MESSAGE_BYTES + 1)),
      session.publish(Buffer.alloc(MAX_MESSAGE_BYTES - 4), { metadata: { key: 'value' } }),
      memberSession.publishTo(received, Buffer.alloc(MAX_MESSAGE_BYTES), { payloadType: 'reply' }),
    ]
    for (const attempt of tooLarge) {
      const error = await rejectionOf(attempt)
      expect(error.code).toBe('PAYLOAD_TOO_LARGE')
      expect(error.message).toContain(String(MAX_MESSAGE_BYTES))
    }

    // Nothing of the refused publishes went out, and the session goes on.
    await session.publish('after')
    expect(text(await memberSession.getMessage({ timeout: 10_000 }))).toBe('after')
  },
)

// Publishes fired without awaiting wait in the session's queue; past 64 MiB it refuses
// more with BUSY rather than grow without limit. The member's connection is paused, so
// nothing is acknowledged and at most 512 messages leave the queue meanwhile.
test('a session queues at most 64 MiB of publishes; past it a publish fails with BUSY, nothing lost', async () => {
  const server = track(await startTestServer())
  const proxy = track(await pausableProxy(Number(new URL(server.url).port)))
  const moderator = track(await connectApp(server, 'org/limits/backlog-moderator'))
  const member = track(await connectApp({ url: proxy.url }, 'org/limits/backlog-member'))
  const session = track(await moderator.createGroupSession('org/limits/backlog', { maxRetries: 20, interval: 1_000 }))
  const joined = member.listenForSession({ timeout: 30_000 })
  await session.invite('org/limits/backlog-member')
  const memberSession = await joined

  const paused = proxy.pause(3_000)
  const payload = (i: number) => Buffer.alloc(128 * 1024, i % 251)
  const attempts = Array.from({ length: 1_200 }, (_, i) =>
    session.publish(payload(i), { timeout: 60_000 }).then(
      () => i,
      (error: SlimError) => error,
    ),
  )
  await paused
  const outcomes = await Promise.all(attempts)
  const refused = outcomes.filter((outcome) => outcome instanceof SlimError)
  const delivered = outcomes.filter((outcome) => typeof outcome === 'number')
  expect(refused.length).toBeGreaterThan(0)
  expect(new Set(refused.map((error) => error.code))).toEqual(new Set(['BUSY']))
  expect(delivered.length).toBeGreaterThanOrEqual(512 + Math.floor((64 * 2 ** 20) / (128 * 1024 + 256)))
  // Every publish that resolved arrives, once, in order.
  for (const i of delivered) {
    const received = await memberSession.getMessage({ timeout: 30_000 })
    expect(received.payload.equals(payload(i))).toBe(true)
  }
  await session.publish('after')
  expect(text(await memberSession.getMessage({ timeout: 10_000 }))).toBe('after')
})
