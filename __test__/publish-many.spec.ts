// publishMany: several messages in one call into the addon, settled as one promise.
import { beforeAll, describe, expect, test } from 'vitest'
import { MAX_MESSAGE_BYTES, type SlimServer } from '../src-ts/index.js'
import { joinedPair, receive, rejectionOf, sharedResources, startTestServer, text } from './helpers.js'

describe('publishMany', () => {
  let server: SlimServer
  const shared = sharedResources()
  beforeAll(async () => {
    server = shared(await startTestServer())
  })

  test('keeps call order with publish, sends bytes and strings, and gives every message the options', async () => {
    const { group, session } = await joinedPair(server, 'many-order')
    const first = group.publish('a')
    const batch = group.publishMany(['b', Buffer.from('c'), new TextEncoder().encode('d')], {
      payloadType: 'letter',
      metadata: { batch: 'yes' },
    })
    const last = group.publish('e')
    await Promise.all([first, batch, last])
    const messages = await receive(session, 5)
    expect(messages.map(text)).toEqual(['a', 'b', 'c', 'd', 'e'])
    for (const message of messages.slice(1, 4)) {
      expect(message.payloadType).toBe('letter')
      expect(message.metadata).toMatchObject({ batch: 'yes' })
    }
    expect(messages[4]?.metadata.batch).toBeUndefined()
  })

  test('a batch larger than the window arrives once and in order, from a generator', async () => {
    const { group, session } = await joinedPair(server, 'many-large')
    const count = 1_500
    function* numbered(): Generator<string> {
      for (let i = 0; i < count; i++) yield `m${i}`
    }
    const received = receive(session, count)
    await group.publishMany(numbered())
    expect((await received).map(text)).toEqual(Array.from(numbered()))
    await expect(session.getMessage({ timeout: 200 })).rejects.toMatchObject({ code: 'TIMEOUT' })
  })

  test('refuses what it cannot send, all or nothing, with INVALID_ARGUMENT or PAYLOAD_TOO_LARGE', async () => {
    const { group, session } = await joinedPair(server, 'many-bad')
    expect(await rejectionOf(group.publishMany('abc' as never))).toMatchObject({ code: 'INVALID_ARGUMENT' })
    expect(await rejectionOf(group.publishMany(42 as never))).toMatchObject({ code: 'INVALID_ARGUMENT' })
    const wrong = await rejectionOf(group.publishMany(['fine', 7] as never))
    expect(wrong.code).toBe('INVALID_ARGUMENT')
    expect(wrong.message).toContain('[1]')
    const throwing = (function* (): Generator<string> {
      yield 'one'
      throw new Error('the source broke')
    })()
    expect(await rejectionOf(group.publishMany(throwing))).toMatchObject({ code: 'INVALID_ARGUMENT' })
    const tooLarge = await rejectionOf(group.publishMany(['small', Buffer.alloc(MAX_MESSAGE_BYTES + 1)]))
    expect(tooLarge.code).toBe('PAYLOAD_TOO_LARGE')
    expect(tooLarge.message).toContain('message 1')
    await expect(group.publishMany([])).resolves.toBeUndefined()
    // None of the refused batches sent anything: the next message is the first to arrive.
    await group.publish('after')
    expect((await receive(session, 1)).map(text)).toEqual(['after'])
  })

  test('on a closed session rejects with SESSION_CLOSED', async () => {
    const { group } = await joinedPair(server, 'many-closed')
    await group.close()
    await expect(group.publishMany(['late', 'later'])).rejects.toMatchObject({ code: 'SESSION_CLOSED' })
  })

  test('closed while its messages leave: the batch settles once, counting what was never sent', async () => {
    const { group } = await joinedPair(server, 'many-cut')
    const count = 20_000
    const batch = rejectionOf(group.publishMany(Array.from({ length: count }, (_, i) => `m${i}`)))
    await group.close()
    const error = await batch
    expect(error.code).toBe('SESSION_CLOSED')
    const [, failed, first] =
      error.message.match(/^(\d+) of the 20000 messages failed; the first, at index (\d+): /) ?? []
    expect(Number(failed)).toBeGreaterThan(0)
    expect(Number(failed)).toBeLessThanOrEqual(count - Number(first))
  })
})
