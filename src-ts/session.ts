import { EventEmitter } from 'node:events'
import type {
  BatchExtras,
  Envelope,
  PublishOptions as NativePublishOptions,
  Session as NativeSession,
  Participant,
  PublishFailures,
  SessionSettings,
} from '../index.js'
import { abortError, type WaitOptions, waitFor, waitOptions, within, withSignal } from './cancel.js'
import { fromReason, SlimError, toSlimError } from './errors.js'
import { bytesOrText, plainOptions, text } from './input.js'
import { addon } from './native.js'

export type { Participant, SessionSettings }

/**
 * How a message is published, and how long to wait for its outcome. A publish that times
 * out or is aborted was already handed to SLIM: only the wait ends, and SLIM may still
 * deliver it (once); nothing is withdrawn or sent twice.
 */
export interface PublishOptions extends NativePublishOptions, WaitOptions {}

/** The two kinds of session. */
export type SessionType = 'group' | 'point-to-point'

/** A message received on a session, with its sender's context. */
export interface Message extends Readonly<Envelope> {
  /**
   * The payload bytes: a view into the buffer its receive batch shares (copy it with
   * `Buffer.from(payload)` to keep one payload alone for long).
   */
  readonly payload: Buffer
  /** Message metadata set by the sender. */
  readonly metadata: Readonly<Record<string, string>>
  /** The session the message belongs to. */
  readonly sessionId: number
  /** The sender's identity token, as verified by this app. */
  readonly identity: string
}

/** A received message; the identity token is decoded only if it is read. */
class ReceivedMessage implements Message {
  readonly source: string
  readonly sourceId: string
  readonly destination: string
  readonly payloadType: string
  readonly inputConnection: number
  readonly payload: Buffer
  readonly metadata: Readonly<Record<string, string>>
  readonly sessionId: number
  /** The batch's identity tokens and where this message's one lies among them. */
  readonly #tokens: Buffer
  readonly #tokenStart: number
  readonly #tokenEnd: number

  constructor(
    envelope: Envelope,
    payload: Buffer,
    metadata: Readonly<Record<string, string>>,
    sessionId: number,
    tokens: Buffer,
    tokenStart: number,
    tokenEnd: number,
  ) {
    this.source = envelope.source
    this.sourceId = envelope.sourceId
    this.destination = envelope.destination
    this.payloadType = envelope.payloadType
    this.inputConnection = envelope.inputConnection
    this.payload = payload
    this.metadata = metadata
    this.sessionId = sessionId
    this.#tokens = tokens
    this.#tokenStart = tokenStart
    this.#tokenEnd = tokenEnd
  }

  get identity(): string {
    return this.#tokens.toString('utf8', this.#tokenStart, this.#tokenEnd)
  }
}

/**
 * The most bytes of payload, payload type and metadata one message may carry (3.5 MiB
 * less 64 KiB): gRPC carries at most 4 MiB per message, and MLS pads large messages to
 * a multiple of 512 KiB. Larger publishes reject with `PAYLOAD_TOO_LARGE` before
 * anything is sent.
 */
export const MAX_MESSAGE_BYTES: number = addon.MAX_MESSAGE_BYTES

const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({})

/** What can be published: bytes, or a string sent as UTF-8. */
export type Payload = Uint8Array | string

/** Messages asked for at a time; one JavaScript wake-up serves a whole batch. */
const RECEIVE_BATCH = 512

interface Pending<T> {
  resolve: (value: T) => void
  reject: (error: SlimError) => void
}

/** A receive waiting for the native answer. */
interface Receiving extends Pending<Message> {
  signal: AbortSignal | undefined
}

/** Events a session emits besides messages. */
export interface SessionEvents {
  /** SLIM reported a delivery problem on this session (for example a detected loss). */
  warning: [error: SlimError]
}

/**
 * A group or point-to-point session. Iterate it with `for await` to receive messages;
 * the loop ends when the session closes.
 */
export class Session extends EventEmitter<SessionEvents> implements AsyncIterable<Message> {
  readonly #native: NativeSession
  readonly #id: number
  readonly #buffer: Message[] = []
  #bufferStart = 0
  /** The receive waiting for the native answer, if any. */
  #receiving: Receiving | undefined
  /** Every sender context the native side numbered for this session, by number. */
  readonly #envelopes: Envelope[] = []
  /**
   * The signal the abort listener is on: a loop that passes one signal to every
   * receive registers it once, not once per receive.
   */
  #watched: AbortSignal | undefined
  readonly #onAbort = (): void => {
    if (this.#receiving) this.#native.abortReceive()
  }
  /** Why the session ended, once its last batch came. */
  #ended: SlimError | undefined
  /** Publishes awaiting their outcome, by native ticket. */
  readonly #pending = new Map<number, Pending<void>>()

  /** @internal Sessions come from {@link App.createGroupSession}, {@link App.listenForSession}, … */
  constructor(native: NativeSession) {
    super()
    this.#native = native
    this.#id = native.id
    native.attach(
      (batch, extras) => this.#onMessages(batch, extras),
      (done, failures) => this.#onOutcomes(done, failures),
    )
  }

  /** The session id, the same for every participant. */
  get id(): number {
    return this.#id
  }

  /** `'group'` or `'point-to-point'`. */
  get type(): SessionType {
    return this.#native.type
  }

  /** This app's name, `org/ns/app`. */
  get source(): string {
    return this.#native.source
  }

  /** The group channel, or the peer of a point-to-point session. */
  get destination(): string {
    return this.#native.destination
  }

  /** Whether this app created the session (and so moderates a group). */
  get isInitiator(): boolean {
    return this.#native.isInitiator
  }

  /** Session metadata set by the creator. */
  get metadata(): Readonly<Record<string, string>> {
    return this.#native.metadata
  }

  /** Retries, interval and MLS as in force for this session. */
  get settings(): SessionSettings {
    return this.#native.settings
  }

  /** True once the session has ended, locally or remotely. */
  get closed(): boolean {
    return this.#native.closed
  }

  /**
   * Publishes to every other participant. In a reliable session the promise resolves
   * when delivery is acknowledged and rejects with `DELIVERY_FAILED` when retries run out.
   * Publishes leave in call order.
   */
  publish(data: Payload, options?: PublishOptions): Promise<void> {
    return this.#track(options, 'publish', (publish) =>
      this.#native.publish(bytesOrText(data, 'publish data'), publish),
    )
  }

  /** Replies to the sender of `message`. */
  publishTo(message: Message, data: Payload, options?: PublishOptions): Promise<void> {
    return this.#track(options, 'publishTo', (publish) => {
      // A message this package made needs no copy; anything else is read once here.
      const to = message instanceof ReceivedMessage ? message : plainOptions(message, 'publishTo message')
      if (typeof to !== 'object' || to === null) {
        throw new SlimError('INVALID_ARGUMENT', 'publishTo needs the message being replied to')
      }
      return this.#native.publishTo(to, bytesOrText(data, 'publishTo data'), publish)
    })
  }

  /** Queues a publish natively and returns a promise settled from the batched outcomes. */
  #track(
    options: PublishOptions | undefined,
    what: string,
    queue: (publish: NativePublishOptions | undefined) => number,
  ): Promise<void> {
    let ticket: number
    let wait: WaitOptions = {}
    try {
      const publish = plainOptions(options, `${what} options`)
      if (publish !== undefined) wait = waitOptions(publish, what)
      ticket = queue(publish)
    } catch (error) {
      return Promise.reject(toSlimError(error))
    }
    const settled = new Promise<void>((resolve, reject) => this.#pending.set(ticket, { resolve, reject }))
    // Like any pending promise of I/O, awaited publishes keep Node running.
    if (this.#pending.size === 1) this.#native.holdOutcomes(true)
    return within(settled, wait, what, () => this.#forget(ticket))
  }

  /** Stops reporting a publish whose caller stopped waiting. */
  #forget(ticket: number): void {
    if (this.#pending.delete(ticket) && this.#pending.size === 0) this.#native.holdOutcomes(false)
  }

  #onOutcomes(done: Uint32Array, failures: PublishFailures | null): void {
    try {
      this.#settleOutcomes(done, failures)
    } catch (error) {
      // Never thrown into Node's event loop: every publish still waiting learns of it.
      const bug = new SlimError('INTERNAL', 'slim-node could not read publish outcomes', { cause: error })
      for (const pending of this.#pending.values()) pending.reject(bug)
      this.#pending.clear()
      this.#native.holdOutcomes(false)
    }
  }

  #settleOutcomes(done: Uint32Array, failures: PublishFailures | null): void {
    for (const ticket of done) {
      this.#pending.get(ticket)?.resolve()
      this.#pending.delete(ticket)
    }
    if (failures) this.#onFailures(failures)
    if (this.#pending.size === 0) this.#native.holdOutcomes(false)
  }

  #onFailures(failures: PublishFailures): void {
    failures.tickets.forEach((ticket, i) => {
      this.#pending.get(ticket)?.reject(fromReason(failures.reasons[i] ?? ''))
      this.#pending.delete(ticket)
    })
    if (failures.ended != null) {
      const reason = fromReason(failures.ended)
      for (const pending of this.#pending.values()) pending.reject(reason)
      this.#pending.clear()
    }
  }

  /** Receives the next message; rejects with `TIMEOUT`, `ABORTED` or `SESSION_CLOSED`. */
  getMessage(options?: WaitOptions): Promise<Message> {
    let wait: WaitOptions
    try {
      wait = waitOptions(options, 'getMessage')
    } catch (error) {
      return Promise.reject(error)
    }
    const buffered = this.#takeBuffered()
    if (buffered) return Promise.resolve(buffered)
    if (this.#ended) return Promise.reject(this.#ended)
    const { signal, timeout } = wait
    if (signal?.aborted) return Promise.reject(abortError(signal, 'getMessage'))
    try {
      // Throws BUSY when another receive waits.
      this.#native.requestMessages(RECEIVE_BATCH, timeout, signal !== undefined)
    } catch (error) {
      return Promise.reject(toSlimError(error))
    }
    this.#watch(signal)
    return new Promise<Message>((resolve, reject) => {
      this.#receiving = { resolve, reject, signal }
    })
  }

  /** Each answer to `requestMessages`, and the warnings that come while one waits. */
  #onMessages(batch: ArrayBuffer, extras: BatchExtras | null): void {
    try {
      this.#deliver(batch, extras)
    } catch (error) {
      // Never thrown into Node's event loop: the waiting receive learns of it.
      const receiving = this.#receiving
      this.#receiving = undefined
      receiving?.reject(new SlimError('INTERNAL', 'slim-node could not read a received batch', { cause: error }))
    }
  }

  #deliver(batch: ArrayBuffer, extras: BatchExtras | null): void {
    if (extras) this.#takeExtras(extras)
    this.#unpack(batch, extras)
    const receiving = this.#receiving
    if (!receiving) return
    const message = this.#takeBuffered()
    const failure = extras?.failure != null ? this.#failure(extras.failure, receiving) : this.#ended
    if (!message && !failure) return // warnings only: the receive goes on waiting
    this.#receiving = undefined
    if (message) receiving.resolve(message)
    else if (failure) receiving.reject(failure)
  }

  #takeExtras(extras: BatchExtras): void {
    if (extras.envelopesReset) this.#envelopes.length = 0
    if (extras.envelopes) this.#envelopes.push(...extras.envelopes)
    for (const reason of extras.errors ?? []) this.emit('warning', fromReason(reason))
    if (extras.ended != null) {
      this.#ended = fromReason(extras.ended)
      this.#watch(undefined)
    }
  }

  #failure(reason: string, receiving: Receiving): SlimError {
    const failure = fromReason(reason)
    return failure.code === 'ABORTED' && receiving.signal ? abortError(receiving.signal, 'getMessage') : failure
  }

  #watch(signal: AbortSignal | undefined): void {
    if (signal === this.#watched) return
    this.#watched?.removeEventListener('abort', this.#onAbort)
    this.#watched = signal
    signal?.addEventListener('abort', this.#onAbort)
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      try {
        yield await this.getMessage()
      } catch (error) {
        if ((error as SlimError).code === 'SESSION_CLOSED') return
        throw error
      }
    }
  }

  /** Invites `member` (`org/ns/app`) into this group; resolves once it has joined. Moderator only. */
  invite(member: string, options?: WaitOptions): Promise<void> {
    return withSignal(options, 'invite', (timeout, token) =>
      this.#native.invite(text(member, 'invite name'), timeout, token),
    )
  }

  /**
   * Removes `member` from this group; resolves once it has left. Moderator only; a name
   * that is not listed rejects with `NOT_MEMBER`.
   */
  remove(member: string, options?: WaitOptions): Promise<void> {
    return withSignal(options, 'remove', (timeout, token) =>
      this.#native.remove(text(member, 'remove name'), timeout, token),
    )
  }

  /** The current members, this app included. */
  participants(options?: WaitOptions): Promise<Participant[]> {
    return waitFor(options, 'participants', () => this.#native.participants())
  }

  /**
   * Leaves the session, ending it for everyone when this app moderates it. Idempotent.
   * A close that times out or is aborted goes on in the background.
   */
  close(options?: WaitOptions): Promise<void> {
    return waitFor(options, 'close', () => this.#native.close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Builds message objects from a native batch (its layout: crates/slim-node/src/message.rs). */
  #unpack(data: ArrayBuffer, extras: BatchExtras | null): void {
    const table = new Uint32Array(data, 0, data.byteLength >>> 2)
    const count = table[0] as number
    if (count === 0) return
    const batch = Buffer.from(data)
    const payloadsAt = 4 * (1 + 3 * count)
    const identitiesAt = payloadsAt + (table[count] as number)
    const metadataOf = extras?.metadataOf
    const metadata = extras?.metadata
    let withMetadata = 0
    let start = payloadsAt
    let tokenStart = identitiesAt
    for (let i = 1; i <= count; i++) {
      const end = payloadsAt + (table[i] as number)
      const tokenEnd = identitiesAt + (table[count + i] as number)
      const hasMetadata = metadataOf !== undefined && metadataOf[withMetadata] === i - 1
      this.#buffer.push(
        new ReceivedMessage(
          this.#envelopes[table[2 * count + i] as number] as Envelope,
          batch.subarray(start, end),
          hasMetadata ? (metadata?.[withMetadata++] ?? NO_METADATA) : NO_METADATA,
          this.#id,
          batch,
          tokenStart,
          tokenEnd,
        ),
      )
      start = end
      tokenStart = tokenEnd
    }
  }

  #takeBuffered(): Message | undefined {
    if (this.#bufferStart >= this.#buffer.length) return undefined
    const message = this.#buffer[this.#bufferStart++]
    if (this.#bufferStart === this.#buffer.length) {
      this.#buffer.length = 0
      this.#bufferStart = 0
    }
    return message
  }
}
