// A session's receiving side, the counterpart of the addon's session/receiver.rs: one
// receive at a time asks the addon for a batch, and what the batch holds beyond that
// receive waits here for the next ones. The addon also answers a receive whose wait
// ended. This does no I/O of its own: it talks to the addon through a ReceiveSource,
// which the tests replace with a fake.
import type { BatchExtras, Wait } from '../../index.js'
import { fromInfo, SlimError, toSlimError } from './errors.js'
import { type Message, type NumberedEnvelope, unpackBatch } from './message.js'
import { Waiting, type WaitOptions, waitOptions } from './wait.js'

/** Messages asked for at a time; one JavaScript wake-up serves a whole batch. */
export const RECEIVE_BATCH = 512

/** The addon's side of a receive (`Session.requestMessages` and `Session.cancelReceive`). */
export interface ReceiveSource {
  /**
   * Asks for up to `max` messages: what is queued already comes back at once, else
   * `null` and the answer (messages, the session's end, or the end of `wait` as
   * `extras.waitEnded`) comes later through {@link Receiver.onMessages}. Throws `BUSY`
   * while another request waits.
   */
  requestMessages(max: number, wait?: Wait | null): [ArrayBuffer, BatchExtras | null] | null
  /** Withdraws the waiting request; false when its answer is already on its way. */
  cancelReceive(): boolean
}

/** A receive waiting for the addon's answer. */
interface Receiving {
  resolve: (message: Message) => void
  reject: (error: SlimError) => void
  waiting: Waiting | undefined
}

export class Receiver {
  readonly #source: ReceiveSource
  readonly #sessionId: number
  readonly #onWarning: (warning: SlimError) => void
  readonly #buffer: Message[] = []
  #bufferStart = 0
  /** The receive waiting for the addon's answer, if any. */
  #receiving: Receiving | undefined
  /** Every sender context the addon numbered for this session, by number. */
  readonly #envelopes: NumberedEnvelope[] = []
  /** How many times the addon started its numbering again, as it counts too. */
  #generation = 0
  /**
   * The wait of the last receive that had a signal and no timeout: a loop that passes one
   * signal to every receive makes one native wait for it, not one per receive.
   */
  #signalWait: Waiting | undefined
  /** Why the session ended, once its last batch came. */
  #ended: SlimError | undefined

  constructor(source: ReceiveSource, sessionId: number, onWarning: (warning: SlimError) => void) {
    this.#source = source
    this.#sessionId = sessionId
    this.#onWarning = onWarning
  }

  /** The next message; see `Session.getMessage`. */
  receive(options?: WaitOptions): Promise<Message> {
    let waiting: Waiting | undefined
    let ready: [ArrayBuffer, BatchExtras | null] | null
    try {
      const wait = waitOptions(options, 'getMessage')
      const buffered = this.#takeBuffered()
      if (buffered) return Promise.resolve(buffered)
      if (this.#ended) return Promise.reject(this.#ended)
      waiting = this.#waiting(wait)
      ready = this.#source.requestMessages(RECEIVE_BATCH, waiting?.wait)
    } catch (error) {
      return Promise.reject(waiting ? waiting.failure(error) : toSlimError(error))
    }
    return new Promise<Message>((resolve, reject) => {
      this.#receiving = { resolve, reject, waiting }
      if (ready) this.onMessages(ready[0], ready[1])
    })
  }

  /** Whether a reply to `envelope` can name it: it is of this session's current numbering. */
  numbers(envelope: NumberedEnvelope): boolean {
    return envelope.generation === this.#generation && this.#envelopes[envelope.number] === envelope
  }

  /** Each answer to `requestMessages`, and the warnings that come while one waits. */
  onMessages(batch: ArrayBuffer, extras: BatchExtras | null): void {
    try {
      this.#deliver(batch, extras)
    } catch (error) {
      // Never thrown into Node's event loop: the waiting receive learns of it.
      if (!this.#receiving) return
      this.#source.cancelReceive()
      this.#settled()?.reject(new SlimError('INTERNAL', 'slim-node could not read a received batch', { cause: error }))
    }
  }

  /** The native wait of a receive; none for one that may wait forever. */
  #waiting(wait: WaitOptions): Waiting | undefined {
    if (wait.signal !== this.#signalWait?.signal) {
      this.#signalWait?.release()
      this.#signalWait = undefined
    }
    if (wait.signal === undefined || wait.timeout !== undefined) return Waiting.ifAny(wait, 'getMessage')
    if (this.#signalWait === undefined) this.#signalWait = new Waiting(wait, 'getMessage')
    else if (wait.signal.aborted) throw this.#signalWait.failure(new SlimError('ABORTED', 'getMessage was aborted'))
    return this.#signalWait
  }

  /** The receive that waited, now that it is settled; a wait of its own is released. */
  #settled(): Receiving | undefined {
    const receiving = this.#receiving
    this.#receiving = undefined
    if (receiving?.waiting !== this.#signalWait) receiving?.waiting?.release()
    return receiving
  }

  #deliver(batch: ArrayBuffer, extras: BatchExtras | null): void {
    if (extras) this.#takeExtras(extras)
    unpackBatch(batch, extras, this.#envelopes, this.#sessionId, this.#buffer)
    if (!this.#receiving) return
    const message = this.#takeBuffered()
    if (message) this.#settled()?.resolve(message)
    else if (this.#ended) this.#settled()?.reject(this.#ended)
    else if (extras?.waitEnded) {
      // The addon ended the receive, which took nothing: no message is lost.
      const receiving = this.#settled()
      receiving?.reject(receiving.waiting?.failure(fromInfo(extras.waitEnded)) ?? fromInfo(extras.waitEnded))
    }
    // Otherwise warnings only: the receive goes on waiting.
  }

  #takeExtras(extras: BatchExtras): void {
    if (extras.envelopesReset) {
      this.#envelopes.length = 0
      this.#generation++
    }
    for (const envelope of extras.envelopes ?? []) {
      this.#envelopes.push({ ...envelope, number: this.#envelopes.length, generation: this.#generation })
    }
    for (const reason of extras.errors ?? []) this.#onWarning(fromInfo(reason))
    if (extras.ended != null) {
      this.#ended = fromInfo(extras.ended)
      this.#signalWait?.release()
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
