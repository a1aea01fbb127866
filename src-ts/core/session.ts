import { EventEmitter } from 'node:events'
import type {
  BatchExtras,
  PublishOptions as NativePublishOptions,
  Session as NativeSession,
  SessionType as NativeSessionType,
  Participant,
  PublishFailures,
  SessionSettings,
} from '../../index.js'
import { SlimError } from './errors.js'
import { bytesOrText, payloadList, plainOptions, text } from './input.js'
import { type Message, type Payload, ReceivedMessage } from './message.js'
import { Outcomes } from './outcomes.js'
import { Receiver } from './receiver.js'
import type { ParticipantChange } from './roster.js'
import { type WaitOptions, waiting } from './wait.js'

export { MAX_MESSAGE_BYTES, type Message, type Payload } from './message.js'
export type { ParticipantChange } from './roster.js'
export type { Participant, SessionSettings }

/**
 * How a message is published (its payload type and metadata), and how long to wait for
 * its outcome. A publish that times out or is aborted was already handed to SLIM: only
 * the wait ends, and SLIM may still deliver it (once); nothing is withdrawn or sent twice.
 *
 * @example
 * ```ts
 * const options: PublishOptions = { payloadType: 'json', metadata: { trace: 'abc123' }, timeout: 5000 }
 * await session.publish(JSON.stringify({ status: 'ready' }), options)
 * ```
 * @group Options
 */
export interface PublishOptions extends NativePublishOptions, WaitOptions {}

/**
 * The two kinds of session: `'group'`, a channel moderated by the app that created it,
 * which invites and removes members; and `'point-to-point'`, between two apps.
 *
 * @example
 * ```ts
 * const kind: SessionType = session.type
 * if (kind === 'group' && session.isInitiator) await session.invite('agntcy/ns/carol')
 * ```
 * @group Sessions
 */
export type SessionType = `${NativeSessionType}`

/**
 * The events a {@link Session} emits besides messages, with their listeners' arguments.
 *
 * @example
 * ```ts
 * session.on('warning', (error) => console.warn(`session ${session.id}: ${error.message}`))
 * ```
 * @group Sessions
 */
export interface SessionEvents {
  /** SLIM reported a delivery problem on this session (for example a detected loss). */
  warning: [error: SlimError]
  /**
   * A member joined or left the group, or went offline or came back online. Listening
   * starts watching the participant list (its first read reports every member already
   * listed as joined); removing the last listener stops it.
   */
  participant: [change: ParticipantChange]
}

/**
 * A group or point-to-point session. Iterate it with `for await` to receive messages;
 * the loop ends when the session closes. Sessions come from
 * {@link App.createGroupSession}, {@link App.createPointToPointSession},
 * {@link App.listenForSession} and {@link App.sessions}.
 *
 * @example
 * ```ts
 * const chat = await app.createGroupSession('agntcy/ns/chat', { mls: true })
 * await chat.invite('agntcy/ns/bob')
 * await chat.publish('hello, Bob')
 * for await (const message of chat) {
 *   console.log(`${message.source}: ${message.payload.toString()}`)
 * }
 * ```
 * @group Sessions
 */
export class Session extends EventEmitter<SessionEvents> implements AsyncIterable<Message> {
  readonly #native: NativeSession
  readonly #id: number
  readonly #receiver: Receiver
  readonly #outcomes: Outcomes

  /** @internal Sessions come from {@link App.createGroupSession}, {@link App.listenForSession}, … */
  constructor(native: NativeSession) {
    super()
    this.#native = native
    this.#id = native.id
    this.#receiver = new Receiver(native, this.#id, (warning) => this.emit('warning', warning))
    this.#outcomes = new Outcomes()
    // Node's own events about listeners, outside SessionEvents: the addon reads the
    // participant list only while someone listens.
    const emitter = this as unknown as EventEmitter
    emitter.on('newListener', (event: string | symbol) => {
      if (event === 'participant' && this.listenerCount('participant') === 0) native.watchParticipants(true)
    })
    emitter.on('removeListener', (event: string | symbol) => {
      if (event === 'participant' && this.listenerCount('participant') === 0) native.watchParticipants(false)
    })
    // One event stream: message batches, publish outcomes, participant changes.
    native.attach((kind, first, second) => {
      if (kind === 0) this.#receiver.onMessages(first as ArrayBuffer, second as BatchExtras | null)
      else if (kind === 1) this.#outcomes.settle(first as Uint32Array, second as PublishFailures | null)
      else for (const change of first as ParticipantChange[]) this.emit('participant', change)
    })
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

  /** Session metadata set by the creator, the same for every participant. */
  get metadata(): Readonly<Record<string, string>> {
    return this.#native.metadata
  }

  /** Retries, retransmission interval and MLS as in force for this session. */
  get settings(): SessionSettings {
    return this.#native.settings
  }

  /** True once the session has ended, locally or remotely. */
  get closed(): boolean {
    return this.#native.closed
  }

  /**
   * Publishes to every other participant. In a reliable session the promise resolves
   * once every member online acknowledged it (members that went offline meanwhile are
   * not waited for), and rejects with `DELIVERY_FAILED` when nobody acknowledged it
   * before its retries ran out or no member is online; otherwise it resolves once SLIM
   * took the message. A group with no member yet holds what is published for the first
   * member to join. Publishes leave in call order, and awaiting them applies backpressure;
   * publishes fired without awaiting wait in the session's queue, which holds at most
   * 64 MiB (a message counts its payload plus 256 bytes).
   *
   * @param data - The payload: bytes, or a string sent as UTF-8.
   * @param options - Payload type, metadata, and how long to wait for the outcome.
   * @throws {SlimError} `DELIVERY_FAILED` when the message could not be delivered,
   * `PAYLOAD_TOO_LARGE` when it exceeds {@link MAX_MESSAGE_BYTES}, `SESSION_CLOSED` when
   * the session has ended, `INVALID_ARGUMENT` for a payload that is neither bytes nor a
   * string, `BUSY` (nothing sent) when the session's queue has no room for it, `TIMEOUT`
   * or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * await session.publish('hello')
   * await session.publish(Buffer.from([1, 2, 3]), { payloadType: 'bytes', metadata: { seq: '1' } })
   * ```
   */
  publish(data: Payload, options?: PublishOptions): Promise<void> {
    return this.#outcomes.track(options, 'publish', (publish, wait) =>
      this.#native.publish(bytesOrText(data, 'publish data'), publish, wait),
    )
  }

  /**
   * Publishes several messages, in order, with the same options, in one call into the
   * addon: for a stream of messages this costs less per message than one
   * {@link Session.publish} each. Every message still takes its own place in the
   * session's window of unacknowledged messages. The promise settles once every message
   * has: it resolves when all were delivered (acknowledged, in a reliable session) and
   * rejects when any failed, with the first failure's code and a message that says how
   * many failed and where the first one was. `timeout` and `signal` bound the wait for
   * the whole batch; an empty list resolves at once.
   *
   * @param messages - The payloads (bytes, or strings sent as UTF-8), read once at the call.
   * @param options - Payload type, metadata and routing for every message, and how long
   * to wait for the outcome.
   * @throws {SlimError} The same as {@link Session.publish}; `INVALID_ARGUMENT` when
   * `messages` is not an iterable of payloads, and `PAYLOAD_TOO_LARGE` (nothing sent)
   * when any message is too large.
   * @example
   * ```ts
   * const readings = [12.5, 12.7, 13.1].map((celsius) => JSON.stringify({ celsius }))
   * await session.publishMany(readings, { payloadType: 'json' })
   * ```
   */
  publishMany(messages: Iterable<Payload>, options?: PublishOptions): Promise<void> {
    return this.#outcomes.track(options, 'publishMany', (publish, wait) => {
      const payloads = payloadList(messages, 'publishMany messages')
      return payloads.length === 0 ? undefined : this.#native.publishMany(payloads, publish, wait)
    })
  }

  /**
   * Replies to the sender of `message` alone, through the connection it came on.
   *
   * @param message - A message received on this session.
   * @param data - The payload: bytes, or a string sent as UTF-8.
   * @param options - Payload type, metadata, and how long to wait for the outcome.
   * @throws {SlimError} The same as {@link Session.publish}, and `INVALID_ARGUMENT` when
   * `message` is not a received message.
   * @example
   * ```ts
   * for await (const message of session) {
   *   await session.publishTo(message, `echo: ${message.payload.toString()}`)
   * }
   * ```
   */
  publishTo(message: Message, data: Payload, options?: PublishOptions): Promise<void> {
    return this.#outcomes.track(options, 'publishTo', (publish, wait) => {
      // A message this package made needs no copy; anything else is read once here.
      const payload = bytesOrText(data, 'publishTo data')
      // A message of this session names its sender by envelope, sent to the addon once.
      if (message instanceof ReceivedMessage && this.#receiver.numbers(message.envelope)) {
        const { generation, number } = message.envelope
        return this.#native.publishReply(generation, number, payload, publish, wait)
      }
      const to = message instanceof ReceivedMessage ? message : plainOptions(message, 'publishTo message')
      if (typeof to !== 'object' || to === null) {
        throw new SlimError('INVALID_ARGUMENT', 'publishTo needs the message being replied to')
      }
      return this.#native.publishTo(to, payload, publish, wait)
    })
  }

  /**
   * Receives the next message. One receive at a time per session; a receive that times
   * out or is aborted takes nothing, so a message that arrives later is returned by the
   * next one.
   *
   * @param options - How long to wait for a message.
   * @returns The next message.
   * @throws {SlimError} `SESSION_CLOSED` when the session has ended, `BUSY` when another
   * receive is waiting on this session, `TIMEOUT` or `ABORTED` when `timeout` or `signal`
   * end the wait.
   * @example
   * ```ts
   * const message = await session.getMessage({ timeout: 5000 })
   * console.log(message.payload.toString())
   * ```
   */
  getMessage(options?: WaitOptions): Promise<Message> {
    return this.#receiver.receive(options)
  }

  /**
   * Receives the session's messages one after another, for `for await`; the loop ends
   * when the session closes, and throws what {@link Session.getMessage} rejects with
   * otherwise.
   */
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

  /**
   * Invites `member` (`org/ns/app`) into this group, setting the route to it; resolves
   * once it has joined. Moderator only.
   *
   * @param member - The app to invite.
   * @param options - How long to wait for it to join.
   * @throws {SlimError} `NOT_GROUP` in a point-to-point session, `NOT_INITIATOR` when this
   * app does not moderate the group, `INVALID_NAME` for a malformed name,
   * `DELIVERY_FAILED` when the member does not answer or refuses this app's identity,
   * `SESSION_CLOSED` when the session has ended, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   * @example
   * ```ts
   * await chat.invite('agntcy/ns/bob', { timeout: 10_000 })
   * ```
   */
  invite(member: string, options?: WaitOptions): Promise<void> {
    return waiting(options, 'invite', (wait) => this.#native.invite(text(member, 'invite name'), wait))
  }

  /**
   * Removes `member` from this group; resolves once it has left. Moderator only.
   *
   * @param member - The member to remove, `org/ns/app`.
   * @param options - How long to wait for it to leave.
   * @throws {SlimError} `NOT_MEMBER` when the name is not a member, `NOT_GROUP` in a
   * point-to-point session, `NOT_INITIATOR` when this app does not moderate the group,
   * `INVALID_NAME` for a malformed name, `SESSION_CLOSED` when the session has ended,
   * `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * await chat.remove('agntcy/ns/bob')
   * ```
   */
  remove(member: string, options?: WaitOptions): Promise<void> {
    return waiting(options, 'remove', (wait) => this.#native.remove(text(member, 'remove name'), wait))
  }

  /**
   * Tells the group this member goes offline for a while (a soft close), keeping the
   * session: the moderator's {@link Session.participants} lists it offline, publishes stop
   * waiting for its acknowledgements (with no member left online they fail at once with
   * `DELIVERY_FAILED`), and {@link Session.rejoin} brings it back. Group members only.
   * Python: `close_with_mode(CloseMode.SOFT)`.
   *
   * @param options - How long to wait for the group to take note.
   * @throws {SlimError} `NOT_GROUP` in a point-to-point session, `SESSION_CLOSED` when the
   * session has ended, `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * await chat.goOffline()
   * // … later, in the same process or after restoring the session:
   * await chat.rejoin()
   * ```
   */
  goOffline(options?: WaitOptions): Promise<void> {
    return waiting(options, 'goOffline', (wait) => this.#native.goOffline(wait))
  }

  /**
   * Tells the group this member is back after {@link Session.goOffline}; resolves when
   * the group acknowledged it. With MLS, a member that missed a change of the group's
   * keys while offline (an epoch change) is refused.
   *
   * @param options - How long to wait for the group's answer.
   * @throws {SlimError} `NOT_GROUP` in a point-to-point session, `DELIVERY_FAILED` when the
   * group refuses or does not answer, `SESSION_CLOSED` when the session has ended,
   * `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * await chat.rejoin({ timeout: 10_000 })
   * ```
   */
  rejoin(options?: WaitOptions): Promise<void> {
    return waiting(options, 'rejoin', (wait) => this.#native.rejoin(wait))
  }

  /**
   * The current members, this app included, each with its name, id and whether it is
   * online.
   *
   * @param options - How long to wait for the list.
   * @throws {SlimError} `SESSION_CLOSED` when the session has ended, `TIMEOUT` or
   * `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * const online = (await chat.participants()).filter((member) => member.online)
   * ```
   */
  participants(options?: WaitOptions): Promise<Participant[]> {
    return waiting(options, 'participants', (wait) => this.#native.participants(wait))
  }

  /**
   * Leaves the session, ending it for everyone when this app moderates it. Idempotent.
   * A pending receive settles with `SESSION_CLOSED`. A close that times out or is aborted
   * goes on in the background.
   *
   * @param options - How long to wait for the close.
   * @throws {SlimError} `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   */
  close(options?: WaitOptions): Promise<void> {
    return waiting(options, 'close', (wait) => this.#native.close(wait))
  }

  /** Closes the session at the end of an `await using` block, as {@link Session.close} does. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
