// A session's receiving side, the counterpart of the addon's session/receiver.rs: one
// receive at a time asks the addon for a batch, and what the batch holds beyond that
// receive waits here for the next ones. It does no I/O of its own: it talks to the addon
// through a ReceiveSource, which the tests replace with a fake.
import type { BatchExtras, Envelope } from '../../index.js'
import { abortError, type WaitOptions, waitOptions } from './cancel.js'
import { fromInfo, SlimError, toSlimError } from './errors.js'
import { type Message, unpackBatch } from './message.js'

/** Messages asked for at a time; one JavaScript wake-up serves a whole batch. */
export const RECEIVE_BATCH = 512

/** The addon's side of a receive (`Session.requestMessages` and `Session.cancelReceive`). */
export interface ReceiveSource {
  /**
   * Asks for up to `max` messages: what is queued already comes back at once, else
   * `null` and the answer comes later through {@link Receiver.onMessages}. Throws `BUSY`
   * while another request waits.
   */
  requestMessages(max: number): [ArrayBuffer, BatchExtras | null] | null
  /** Withdraws the waiting request; false when its answer is already on its way. */
  cancelReceive(): boolean
}

/** A receive waiting for the addon's answer. */
interface Receiving {
  resolve: (message: Message) => void
  reject: (error: SlimError) => void
  signal: AbortSignal | undefined
  /** Ends the wait with TIMEOUT. */
  timer: ReturnType<typeof setTimeout> | undefined
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
  readonly #envelopes: Envelope[] = []
  /**
   * The signal the abort listener is on: a loop that passes one signal to every
   * receive registers it once, not once per receive.
   */
  #watched: AbortSignal | undefined
  readonly #onAbort = (): void => {
    const signal = this.#receiving?.signal
    if (signal) this.#stopWaiting(abortError(signal, 'getMessage'))
  }
  /** Why the session ended, once its last batch came. */
  #ended: SlimError | undefined

  constructor(source: ReceiveSource, sessionId: number, onWarning: (warning: SlimError) => void) {
    this.#source = source
    this.#sessionId = sessionId
    this.#onWarning = onWarning
  }

  /** The next message; see `Session.getMessage`. */
  receive(options?: WaitOptions): Promise<Message> {
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
    let ready: [ArrayBuffer, BatchExtras | null] | null
    try {
      ready = this.#source.requestMessages(RECEIVE_BATCH)
    } catch (error) {
      return Promise.reject(toSlimError(error))
    }
    return new Promise<Message>((resolve, reject) => {
      this.#receiving = { resolve, reject, signal, timer: undefined }
      if (ready) this.onMessages(ready[0], ready[1])
      const receiving = this.#receiving
      if (!receiving) return
      // Still waiting: the addon answers through onMessages.
      this.#watch(signal)
      if (timeout !== undefined) {
        receiving.timer = setTimeout(
          () => this.#stopWaiting(new SlimError('TIMEOUT', `getMessage timed out after ${timeout} ms`)),
          timeout,
        )
      }
    })
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

  /** Ends the waiting receive with `error`; it takes nothing, so no message is lost. */
  #stopWaiting(error: SlimError): void {
    if (this.#receiving && this.#source.cancelReceive()) this.#settled()?.reject(error)
  }

  /** The receive that waited, now that it is settled: no longer waiting, its timer gone. */
  #settled(): Receiving | undefined {
    const receiving = this.#receiving
    this.#receiving = undefined
    clearTimeout(receiving?.timer)
    return receiving
  }

  #deliver(batch: ArrayBuffer, extras: BatchExtras | null): void {
    if (extras) this.#takeExtras(extras)
    unpackBatch(batch, extras, this.#envelopes, this.#sessionId, this.#buffer)
    if (!this.#receiving) return
    const message = this.#takeBuffered()
    if (message) this.#settled()?.resolve(message)
    else if (this.#ended) this.#settled()?.reject(this.#ended)
    // Otherwise warnings only: the receive goes on waiting.
  }

  #takeExtras(extras: BatchExtras): void {
    if (extras.envelopesReset) this.#envelopes.length = 0
    if (extras.envelopes) this.#envelopes.push(...extras.envelopes)
    for (const reason of extras.errors ?? []) this.#onWarning(fromInfo(reason))
    if (extras.ended != null) {
      this.#ended = fromInfo(extras.ended)
      this.#watch(undefined)
    }
  }

  #watch(signal: AbortSignal | undefined): void {
    if (signal === this.#watched) return
    this.#watched?.removeEventListener('abort', this.#onAbort)
    this.#watched = signal
    signal?.addEventListener('abort', this.#onAbort)
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
