// Received messages, as the addon lays them out in one buffer per batch (the layout is
// written in crates/slim-node/src/message.rs and docs/architecture.md), and what one
// message may carry.
import type { BatchExtras, Envelope } from '../../index.js'
import { addon } from './native.js'

/**
 * A message received on a session, with its sender's context. Pass it to
 * {@link Session.publishTo} to reply to its sender.
 *
 * @example
 * ```ts
 * const message: Message = await session.getMessage()
 * console.log(`${message.source} (${message.payloadType}): ${message.payload.toString()}`)
 * await session.publishTo(message, 'got it')
 * ```
 * @group Sessions
 */
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

/**
 * An envelope as its session numbered it, in the numbering `generation` (how many times
 * the session's numbering started again): a reply names it, not its sender.
 */
export interface NumberedEnvelope extends Envelope {
  readonly number: number
  readonly generation: number
}

/** A received message; the identity token is decoded only if it is read. */
export class ReceivedMessage implements Message {
  readonly source: string
  readonly sourceId: string
  readonly destination: string
  readonly payloadType: string
  readonly inputConnection: number
  readonly payload: Buffer
  readonly metadata: Readonly<Record<string, string>>
  readonly sessionId: number
  /** What a reply names. */
  readonly envelope: NumberedEnvelope
  /** The batch's identity tokens and where this message's one lies among them. */
  readonly #tokens: Buffer
  readonly #tokenStart: number
  readonly #tokenEnd: number

  constructor(
    envelope: NumberedEnvelope,
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
    this.envelope = envelope
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
 * less 64 KiB), with or without MLS: gRPC carries at most 4 MiB per message, and MLS pads
 * large messages to a multiple of 512 KiB. Larger publishes reject with
 * `PAYLOAD_TOO_LARGE` before anything is sent.
 *
 * @example
 * ```ts
 * for (let at = 0; at < file.length; at += MAX_MESSAGE_BYTES) {
 *   await session.publish(file.subarray(at, at + MAX_MESSAGE_BYTES))
 * }
 * ```
 * @group Sessions
 */
export const MAX_MESSAGE_BYTES: number = addon.MAX_MESSAGE_BYTES

const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({})

/**
 * What can be published: bytes (a `Uint8Array`, such as a `Buffer`), or a string sent as
 * UTF-8. Received payloads are always a `Buffer`.
 *
 * @example
 * ```ts
 * const payload: Payload = new TextEncoder().encode('hello')
 * await session.publish(payload)
 * ```
 * @group Sessions
 */
export type Payload = Uint8Array | string

/**
 * Appends the messages of a native batch to `into`. Envelopes are numbered per session:
 * `envelopes` holds every one the addon sent so far.
 */
export function unpackBatch(
  data: ArrayBuffer,
  extras: BatchExtras | null,
  envelopes: readonly NumberedEnvelope[],
  sessionId: number,
  into: Message[],
): void {
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
    into.push(
      new ReceivedMessage(
        envelopes[table[2 * count + i] as number] as NumberedEnvelope,
        batch.subarray(start, end),
        hasMetadata ? (metadata?.[withMetadata++] ?? NO_METADATA) : NO_METADATA,
        sessionId,
        batch,
        tokenStart,
        tokenEnd,
      ),
    )
    start = end
    tokenStart = tokenEnd
  }
}
