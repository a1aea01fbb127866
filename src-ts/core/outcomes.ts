// Publish outcomes: the addon returns a ticket for each publish and later reports the
// tickets that settled, in batches (crates/slim-node/src/session/publisher.rs); this
// turns them back into one promise per publish. The end of a publish's wait is an
// outcome too: the addon reports it (session/watched.rs).
import type { PublishOptions as NativePublishOptions, PublishFailures, Wait } from '../../index.js'
import { fromInfo, SlimError, toSlimError } from './errors.js'
import { plainOptions } from './input.js'
import { Waiting, type WaitOptions, waitOptions } from './wait.js'

interface Pending {
  resolve: () => void
  reject: (error: SlimError) => void
  /** The caller's wait, when it can end. */
  waiting: Waiting | undefined
}

/** The publishes of one session that await their outcome, by native ticket. */
export class Outcomes {
  readonly #pending = new Map<number, Pending>()

  /**
   * Queues a publish natively and returns a promise settled from the batched outcomes;
   * `queue` returns no ticket when there was nothing to send.
   */
  track(
    options: (NativePublishOptions & WaitOptions) | undefined,
    what: string,
    queue: (publish: NativePublishOptions | undefined, wait: Wait | undefined) => number | undefined,
  ): Promise<void> {
    let ticket: number | undefined
    let waiting: Waiting | undefined
    try {
      const publish = plainOptions(options, `${what} options`)
      waiting = Waiting.ifAny(waitOptions(publish, what), what)
      ticket = queue(publish, waiting?.wait)
    } catch (error) {
      waiting?.release()
      return Promise.reject(toSlimError(error))
    }
    if (ticket === undefined) {
      waiting?.release()
      return Promise.resolve()
    }
    // The addon keeps Node running until the outcome comes, as for any pending I/O.
    return new Promise<void>((resolve, reject) => this.#pending.set(ticket, { resolve, reject, waiting }))
  }

  /** One call of the session's outcome callback; never throws into Node's event loop. */
  settle(done: Uint32Array, failures: PublishFailures | null): void {
    try {
      for (const ticket of done) this.#take(ticket)?.resolve()
      if (failures) this.#fail(failures)
    } catch (error) {
      // Every publish still waiting learns of it.
      this.#failAll(new SlimError('INTERNAL', 'slim-node could not read publish outcomes', { cause: error }))
    }
  }

  #fail(failures: PublishFailures): void {
    failures.tickets.forEach((ticket, i) => {
      const pending = this.#take(ticket)
      const reason = fromInfo(failures.reasons[i])
      pending?.reject(pending.waiting ? pending.waiting.failure(reason) : reason)
    })
    if (failures.ended != null) this.#failAll(fromInfo(failures.ended))
  }

  /** The publish of `ticket`, no longer pending; a ticket reported again finds none. */
  #take(ticket: number): Pending | undefined {
    const pending = this.#pending.get(ticket)
    if (!pending) return undefined
    this.#pending.delete(ticket)
    pending.waiting?.release()
    return pending
  }

  #failAll(reason: SlimError): void {
    for (const pending of this.#pending.values()) {
      pending.waiting?.release()
      pending.reject(reason)
    }
    this.#pending.clear()
  }
}
