import { expect, test } from 'vitest'
import { MAX_MESSAGE_BYTES } from '../src-ts/index.js'
import { connectApp, rejectionOf, startTestServer, text, track } from './helpers.js'

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
