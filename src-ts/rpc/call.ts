// One slimrpc call in progress on the calling side, with the caller's signal wired to
// it, and what its answers become for the caller.
import type { RpcAnswer, RpcCall } from '../../index.js'
import { RpcError, type SlimError, toSlimError } from '../core/errors.js'
import { bytesOrText } from '../core/input.js'
import type { Payload } from '../core/message.js'
import type { Waiting } from '../core/wait.js'

/**
 * Options of one call.
 *
 * @example
 * ```ts
 * const answer = await channel.unary('example.Greeter', 'SayHello', request, {
 *   timeout: 2_000,
 *   metadata: { 'trace-id': 'abc' },
 *   signal: AbortSignal.timeout(5_000),
 * })
 * ```
 * @group RPC
 */
export interface CallOptions {
  /**
   * Milliseconds the call may take. The server gets the same deadline; when it passes
   * the call fails with an {@link RpcError} of status `DEADLINE_EXCEEDED`.
   */
  timeout?: number
  /** Stops the call: it rejects with `ABORTED`. */
  signal?: AbortSignal
  /** Sent with the request; the handler reads it as `context.metadata`. */
  metadata?: Record<string, string>
}

/**
 * One member's answer in a group call: `data`, or the member's own `error`.
 *
 * @example
 * ```ts
 * for await (const answer of group.multicastUnary('example.Health', 'Check', '')) {
 *   console.log(answer.source, answer.error ? answer.error.status : 'ok')
 * }
 * ```
 * @group RPC
 */
export interface GroupAnswer {
  /** The member, `org/ns/app`. */
  readonly source: string
  /** The member's verified identity (with MLS). */
  readonly subject: string | undefined
  /** Who issued that identity, when known. */
  readonly issuer: string | undefined
  /** The answer, unless the member failed. */
  readonly data: Uint8Array | undefined
  /** The member's failure (its status), instead of an answer. */
  readonly error: RpcError | undefined
}

/**
 * Requests of a streaming call: any iterable or async iterable of bytes or strings.
 *
 * @example
 * ```ts
 * const requests: Requests = ['1', '2', '3']
 * ```
 * @group RPC
 */
export type Requests = AsyncIterable<Payload> | Iterable<Payload>

/** One call on the native side, under the caller's wait (its signal stops the call). */
export class Call {
  readonly #native: RpcCall
  readonly #waiting: Waiting
  #failed: SlimError | undefined

  constructor(native: RpcCall, waiting: Waiting) {
    this.#native = native
    this.#waiting = waiting
  }

  /** Sends every request, then ends them; a failure ends the call. */
  pump(requests: Requests): void {
    const sending = (async () => {
      for await (const request of requests) await this.send(bytes(request))
      this.#native.closeSend()
    })()
    sending.catch((error: unknown) => {
      this.#failed ??= toSlimError(error)
      this.#native.cancel()
    })
  }

  async send(request: Uint8Array): Promise<void> {
    try {
      await this.#native.send(request)
    } catch (error) {
      throw this.#mapped(error)
    }
  }

  closeSend(): void {
    this.#native.closeSend()
  }

  cancel(): void {
    this.#waiting.release()
    this.#native.cancel()
  }

  /** The next answer, `null` at the end; a failure of the whole call throws. */
  async next(): Promise<RpcAnswer | null> {
    try {
      // An answer already here is read without a promise from the addon.
      const answer = this.#native.tryNext() ?? (await this.#native.next())
      if (answer === null) {
        this.#waiting.release()
        if (this.#failed) throw this.#failed
      }
      return answer
    } catch (error) {
      this.#waiting.release()
      throw this.#mapped(error)
    }
  }

  #mapped(error: unknown): SlimError {
    return this.#waiting.failure(error)
  }
}

/** A payload as bytes, strings as UTF-8. */
export function bytes(payload: Payload): Uint8Array {
  const checked = bytesOrText(payload, 'a request')
  return typeof checked === 'string' ? Buffer.from(checked) : checked
}

/** A group member's answer, or its own failure. */
export function groupAnswer(answer: RpcAnswer): GroupAnswer {
  const { failure } = answer
  const source = answer.source ?? ''
  const error = failure && new RpcError(failure.status, failure.message, { details: failure.details, origin: source })
  return { source, subject: answer.subject, issuer: answer.issuer, data: answer.data, error }
}
