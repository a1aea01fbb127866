// The facade's receiver without a node: its receive protocol against a fake addon side,
// on batches the addon's own packer made (test hook `packBatchesForTest`), and a
// round-trip property between that packer and unpackBatch.
import fc from 'fast-check'
import { expect, test, vi } from 'vitest'
import type { BatchExtras, ErrorCode, Wait } from '../index.js'
import type { SlimError } from '../src-ts/core/errors.js'
import type { Message, ReceivedMessage } from '../src-ts/core/message.js'
import { Receiver, type ReceiveSource } from '../src-ts/core/receiver.js'
import { hooks } from './hooks.js'

interface TestMessage {
  source: string
  destination: string
  connection: number
  payloadType: string
  identity: string
  payload: number[]
  metadata?: Record<string, string>
}

type Batch = [ArrayBuffer, BatchExtras | null]

function pack(...batches: TestMessage[][]): Batch[] {
  return hooks.packBatchesForTest(JSON.stringify(batches)) as Batch[]
}

const text = (body: string, source = 'org/ns/alice'): TestMessage => ({
  source,
  destination: 'org/ns/chat',
  connection: 1,
  payloadType: 'msg',
  identity: `${source}-token`,
  payload: [...Buffer.from(body)],
})

/**
 * The addon's side of a receive, played by the test: each `requestMessages` takes the
 * next ready batch, or waits (`null`) until the test answers with `answer`. As in the
 * addon (session/receiver.rs), a batch of warnings only leaves the request waiting.
 */
class FakeSource implements ReceiveSource {
  requests = 0
  waiting = false
  /** What `cancelReceive` answers: false when the answer is already on its way. */
  cancellable = true
  readonly ready: Batch[] = []
  /** The native wait each request came with. */
  readonly waits: Array<Wait | null | undefined> = []

  requestMessages(_max: number, wait?: Wait | null): Batch | null {
    if (this.waiting) throw Object.assign(new Error('another receive is pending'), { code: 'BUSY' })
    this.requests++
    this.waits.push(wait)
    const batch = this.ready.shift()
    this.waiting = batch === undefined || answersNothing(batch)
    return batch ?? null
  }

  cancelReceive(): boolean {
    if (!this.waiting || !this.cancellable) return false
    this.waiting = false
    return true
  }

  /** Answers the waiting request through the receiver's callback, as the addon does. */
  answer(receiver: Receiver, batch: Batch): void {
    this.waiting = answersNothing(batch)
    receiver.onMessages(...batch)
  }

  /** Ends the waiting request because its wait ended, as the addon does: nothing taken. */
  endWait(receiver: Receiver, code: ErrorCode, message: string): void {
    this.waiting = false
    const [empty] = pack([]) as [Batch]
    receiver.onMessages(empty[0], { waitEnded: { code, message } })
  }
}

/** A batch with no message and no end: warnings at most. */
function answersNothing([batch, extras]: Batch): boolean {
  return new Uint32Array(batch, 0, 1)[0] === 0 && extras?.ended == null
}

function receiverOf(source: FakeSource) {
  const warnings: SlimError[] = []
  return { receiver: new Receiver(source, 7, (warning) => warnings.push(warning)), warnings }
}

const body = (message: Message) => message.payload.toString()

test('a ready batch answers at once, and its other messages wait for the next receives', async () => {
  const source = new FakeSource()
  source.ready.push(...pack([text('a'), text('b'), text('c', 'org/ns/bob')]))
  const { receiver } = receiverOf(source)
  expect(body(await receiver.receive())).toBe('a')
  expect(body(await receiver.receive())).toBe('b')
  const third = await receiver.receive()
  expect([body(third), third.source, third.identity, third.sessionId]).toEqual([
    'c',
    'org/ns/bob',
    'org/ns/bob-token',
    7,
  ])
  expect(source.requests).toBe(1)
})

test('a waiting receive resolves when the answer comes', async () => {
  const source = new FakeSource()
  const { receiver } = receiverOf(source)
  const pending = receiver.receive()
  expect(source.waiting).toBe(true)
  source.answer(receiver, pack([text('late')])[0] as Batch)
  expect(body(await pending)).toBe('late')
})

test('the addon ends a receive whose wait ended: it took nothing, and the next receive gets what came', async () => {
  const source = new FakeSource()
  const { receiver } = receiverOf(source)
  const timedOut = receiver.receive({ timeout: 100 }).catch((error: SlimError) => error)
  expect(source.waits[0]).toBeDefined()
  source.endWait(receiver, 'TIMEOUT' as ErrorCode, 'getMessage timed out after 100 ms')
  expect(await timedOut).toMatchObject({ code: 'TIMEOUT', message: 'getMessage timed out after 100 ms' })
  expect(source.waiting).toBe(false)
  source.ready.push(pack([text('later')])[0] as Batch)
  expect(body(await receiver.receive({ timeout: 100 }))).toBe('later')
  // A receive that may wait forever passes no wait at all.
  source.ready.push(pack([text('forever')])[0] as Batch)
  expect(body(await receiver.receive())).toBe('forever')
  expect(source.waits.at(-1)).toBeUndefined()
})

test('one signal over many receives makes one native wait, listened to once; its abort ends the receive', async () => {
  const source = new FakeSource()
  const { receiver } = receiverOf(source)
  const controller = new AbortController()
  const listeners = vi.spyOn(controller.signal, 'addEventListener')
  for (const word of ['one', 'two', 'three']) {
    const pending = receiver.receive({ signal: controller.signal })
    source.answer(receiver, pack([text(word)])[0] as Batch)
    expect(body(await pending)).toBe(word)
  }
  expect(listeners).toHaveBeenCalledTimes(1)
  expect(new Set(source.waits).size).toBe(1)
  const aborted = receiver.receive({ signal: controller.signal }).catch((error: SlimError) => error)
  controller.abort(new Error('enough'))
  const [wait] = source.waits
  expect(wait?.cancelled).toBe(true)
  source.endWait(receiver, 'ABORTED' as ErrorCode, 'getMessage was aborted')
  expect(await aborted).toMatchObject({ code: 'ABORTED', cause: new Error('enough') })
  expect(source.waiting).toBe(false)
  // The signal stays aborted: the next receive with it is refused before asking.
  const requests = source.requests
  expect(await receiver.receive({ signal: controller.signal }).catch((error: SlimError) => error)).toMatchObject({
    code: 'ABORTED',
  })
  expect(source.requests).toBe(requests)
})

test('a reply names the envelope of a message of the current numbering, and no other', async () => {
  const source = new FakeSource()
  const { receiver } = receiverOf(source)
  // Packed apart, each batch numbers its envelopes from 0, as after a restart.
  const [first] = pack([text('a')]) as [Batch]
  const [second] = pack([text('b', 'org/ns/bob')]) as [Batch]
  source.ready.push(first)
  const old = (await receiver.receive()) as ReceivedMessage
  expect(old.envelope).toMatchObject({ source: 'org/ns/alice', number: 0, generation: 0 })
  expect(receiver.numbers(old.envelope)).toBe(true)
  // The addon's numbering starts again: the old envelope is no longer its to name.
  source.ready.push([second[0], { ...second[1], envelopesReset: true }])
  const fresh = (await receiver.receive()) as ReceivedMessage
  expect(fresh.envelope).toMatchObject({ source: 'org/ns/bob', number: 0, generation: 1 })
  expect(receiver.numbers(fresh.envelope)).toBe(true)
  expect(receiver.numbers(old.envelope)).toBe(false)
  // Another session's receiver does not know it either.
  expect(receiverOf(new FakeSource()).receiver.numbers(fresh.envelope)).toBe(false)
})

test('warnings alone leave the receive waiting for a message', async () => {
  const source = new FakeSource()
  const { receiver, warnings } = receiverOf(source)
  const pending = receiver.receive()
  const [empty] = pack([]) as [Batch]
  source.answer(receiver, [empty[0], { errors: [{ code: 'DELIVERY_FAILED' as ErrorCode, message: 'lost one' }] }])
  expect(warnings.map((warning) => warning.message)).toEqual(['lost one'])
  expect(source.waiting).toBe(true)
  source.answer(receiver, pack([text('after the warning')])[0] as Batch)
  expect(body(await pending)).toBe('after the warning')
})

test('the last batch: buffered messages first, then SESSION_CLOSED for every receive', async () => {
  const source = new FakeSource()
  const { receiver, warnings } = receiverOf(source)
  const [batch] = pack([text('last')]) as [Batch]
  const ended: BatchExtras = {
    ...batch[1],
    errors: [{ code: 'DELIVERY_FAILED' as ErrorCode, message: 'a message was lost' }],
    ended: { code: 'SESSION_CLOSED' as ErrorCode, message: 'session 7 closed' },
  }
  source.ready.push([batch[0], ended])
  expect(body(await receiver.receive())).toBe('last')
  expect(warnings.map((warning) => warning.code)).toEqual(['DELIVERY_FAILED'])
  for (let i = 0; i < 2; i++) {
    expect(await receiver.receive().catch((error: SlimError) => error)).toMatchObject({
      code: 'SESSION_CLOSED',
      message: 'session 7 closed',
    })
  }
  expect(source.requests).toBe(1)
})

test('a second receive while one waits is BUSY; a batch that cannot be read fails the receive with INTERNAL', async () => {
  const source = new FakeSource()
  const { receiver } = receiverOf(source)
  const first = receiver.receive()
  expect(await receiver.receive().catch((error: SlimError) => error)).toMatchObject({ code: 'BUSY' })
  // A table that claims one message, with no room for its ends.
  source.answer(receiver, [new Uint32Array([1]).buffer, null])
  expect(await first.catch((error: SlimError) => error)).toMatchObject({ code: 'INTERNAL' })
})

const names = fc.constantFrom('org/ns/alice', 'org/ns/bob', 'org/other/carol')
const message = fc.record({
  source: names,
  destination: fc.constantFrom('org/ns/chat', 'org/ns/alice'),
  connection: fc.integer({ min: 0, max: 3 }),
  payloadType: fc.constantFrom('', 'msg', 'json', 'ünïcode'),
  identity: fc.string({ maxLength: 40 }),
  payload: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 300 }),
  metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), {
    nil: undefined,
  }),
})

test('whatever the Rust packer packs, unpackBatch reads back the same messages, in order', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(message, { minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 5 }),
      async (sent) => {
        const source = new FakeSource()
        source.ready.push(...pack(...sent))
        const { receiver } = receiverOf(source)
        for (const expected of sent.flat()) {
          const got = await receiver.receive()
          expect({
            source: got.source,
            destination: got.destination,
            connection: got.inputConnection,
            payloadType: got.payloadType,
            identity: got.identity,
            payload: [...got.payload],
            metadata: got.metadata,
          }).toEqual({
            ...expected,
            payloadType: expected.payloadType || 'msg',
            metadata: expected.metadata && Object.keys(expected.metadata).length > 0 ? expected.metadata : {},
          })
        }
      },
    ),
    { numRuns: 200 },
  )
})
