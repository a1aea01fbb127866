// Publish outcomes: the addon returns a ticket for each publish and later reports the
// tickets that settled, in batches (crates/slim-node/src/session/publisher.rs); this
// turns them back into one promise per publish.
import type { PublishOptions as NativePublishOptions, PublishFailures } from '../../index.js'
import { type WaitOptions, waitOptions, within } from './cancel.js'
import { fromInfo, SlimError, toSlimError } from './errors.js'
import { plainOptions } from './input.js'

interface Pending {
  resolve: () => void
  reject: (error: SlimError) => void
}

/** The publishes of one session that await their outcome, by native ticket. */
export class Outcomes {
  readonly #pending = new Map<number, Pending>()
  /** Whether the addon keeps Node alive for outcomes: while any publish awaits one. */
  readonly #keepAlive: (alive: boolean) => void

  constructor(keepAlive: (alive: boolean) => void) {
    this.#keepAlive = keepAlive
  }

  /**
   * Queues a publish natively and returns a promise settled from the batched outcomes;
   * `queue` returns no ticket when there was nothing to send.
   */
  track(
    options: (NativePublishOptions & WaitOptions) | undefined,
    what: string,
    queue: (publish: NativePublishOptions | undefined) => number | undefined,
  ): Promise<void> {
    let ticket: number | undefined
    let wait: WaitOptions = {}
    try {
      const publish = plainOptions(options, `${what} options`)
      if (publish !== undefined) wait = waitOptions(publish, what)
      ticket = queue(publish)
    } catch (error) {
      return Promise.reject(toSlimError(error))
    }
    if (ticket === undefined) return Promise.resolve()
    const settled = new Promise<void>((resolve, reject) => this.#pending.set(ticket, { resolve, reject }))
    // Like any pending promise of I/O, awaited publishes keep Node running.
    if (this.#pending.size === 1) this.#keepAlive(true)
    const queued = ticket
    return within(settled, wait, what, () => this.#forget(queued))
  }

  /** Stops reporting a publish whose caller stopped waiting. */
  #forget(ticket: number): void {
    if (this.#pending.delete(ticket) && this.#pending.size === 0) this.#keepAlive(false)
  }

  /** One call of the session's outcome callback; never throws into Node's event loop. */
  settle(done: Uint32Array, failures: PublishFailures | null): void {
    try {
      for (const ticket of done) {
        this.#pending.get(ticket)?.resolve()
        this.#pending.delete(ticket)
      }
      if (failures) this.#fail(failures)
      if (this.#pending.size === 0) this.#keepAlive(false)
    } catch (error) {
      // Every publish still waiting learns of it.
      const bug = new SlimError('INTERNAL', 'slim-node could not read publish outcomes', { cause: error })
      for (const pending of this.#pending.values()) pending.reject(bug)
      this.#pending.clear()
      this.#keepAlive(false)
    }
  }

  #fail(failures: PublishFailures): void {
    failures.tickets.forEach((ticket, i) => {
      this.#pending.get(ticket)?.reject(fromInfo(failures.reasons[i]))
      this.#pending.delete(ticket)
    })
    if (failures.ended != null) {
      const reason = fromInfo(failures.ended)
      for (const pending of this.#pending.values()) pending.reject(reason)
      this.#pending.clear()
    }
  }
}
