// The one wait of every call that waits: `{ timeout, signal }` becomes a native Wait (a
// deadline and a cancellation) that the call takes last, and Rust enforces it
// (crates/slim-node/src/wait.rs). This side only wires the signal to it.
import type { Wait } from '../../index.js'
import { callSync, SlimError, toSlimError } from './errors.js'
import { describe, invalid } from './input.js'
import { addon } from './native.js'

/**
 * How long a call may wait: part of the options of every call that waits for something.
 * When the wait ends first, the call rejects with `TIMEOUT` or `ABORTED` (the signal's
 * reason as `cause`); what happens to the work it started is said on each call.
 *
 * @example
 * ```ts
 * const controller = new AbortController()
 * process.once('SIGINT', () => controller.abort())
 * const message = await session.getMessage({ timeout: 30_000, signal: controller.signal })
 * ```
 * @group Options
 */
export interface WaitOptions {
  /**
   * Milliseconds to wait before rejecting with `TIMEOUT` (at most {@link MAX_TIMEOUT_MS},
   * about 24.8 days). Waits forever when omitted.
   */
  timeout?: number
  /** Rejects the call with `ABORTED` when this signal fires. */
  signal?: AbortSignal
}

/**
 * The longest `timeout` a call accepts, in milliseconds: 2 147 483 647 (about 24.8 days),
 * the limit of `setTimeout`. Larger values reject with `INVALID_ARGUMENT`.
 *
 * @example
 * ```ts
 * const timeout = Math.min(hours * 3_600_000, MAX_TIMEOUT_MS)
 * await app.listenForSession({ timeout })
 * ```
 * @group Options
 */
export const MAX_TIMEOUT_MS: number = addon.MAX_TIMEOUT_MS

export function abortError(signal: AbortSignal, what: string): SlimError {
  return new SlimError('ABORTED', `${what} was aborted`, { cause: signal.reason })
}

/** A native wait with the caller's signal wired to it, until {@link Waiting.release}. */
export class Waiting {
  /** What the native call takes; none for a call that may wait forever. */
  readonly wait: Wait | undefined
  /** The caller's signal, if any. */
  readonly signal: AbortSignal | undefined
  readonly #what: string
  readonly #onAbort = (): void => this.wait?.cancel()

  /**
   * Checks `options` and makes their wait; throws `INVALID_ARGUMENT` for bad options and
   * `ABORTED` for a signal that already fired, so a refused call starts nothing.
   */
  static of(options: WaitOptions | undefined, what: string): Waiting {
    return new Waiting(waitOptions(options, what), what)
  }

  /** The wait of options {@link waitOptions} has read, if there is anything to wait for. */
  static ifAny(wait: WaitOptions, what: string): Waiting | undefined {
    return wait.timeout === undefined && wait.signal === undefined ? undefined : new Waiting(wait, what)
  }

  /** The wait of options {@link waitOptions} has read; `ABORTED` for a fired signal. */
  constructor({ timeout, signal }: WaitOptions, what: string) {
    this.#what = what
    this.signal = signal
    if (signal?.aborted) throw abortError(signal, what)
    if (timeout === undefined && signal === undefined) return
    this.wait = callSync(() => new addon.Wait(timeout))
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  /** The call's failure, an abort carrying the signal's reason. */
  failure(error: unknown): SlimError {
    const slimError = toSlimError(error)
    return slimError.code === 'ABORTED' && this.signal ? abortError(this.signal, this.#what) : slimError
  }

  /** Takes the listener off the signal, which may outlive many calls. */
  release(): void {
    this.signal?.removeEventListener('abort', this.#onAbort)
  }
}

/** Runs a native call under the wait of `options`. */
export async function waiting<T>(
  options: WaitOptions | undefined,
  what: string,
  call: (wait: Wait | undefined) => Promise<T>,
): Promise<T> {
  const waiting = Waiting.of(options, what)
  try {
    return await call(waiting.wait)
  } catch (error) {
    throw waiting.failure(error)
  } finally {
    waiting.release()
  }
}

/** `{ timeout, signal }` of `value`, read once; the timeout's range is the addon's to check. */
export function waitOptions(value: WaitOptions | undefined, what: string): WaitOptions {
  if (value === undefined) return NO_WAIT
  if (typeof value !== 'object' || value === null) {
    throw invalid(`${what} options`, `must be an object, got ${describe(value)}`)
  }
  let timeout: unknown
  let signal: unknown
  try {
    ;({ timeout, signal } = value)
  } catch (error) {
    throw invalid(`${what} options`, `could not be read: ${describe(error)}`, error)
  }
  if (timeout !== undefined && typeof timeout !== 'number') {
    throw invalid(`${what}'s timeout`, `must be a number of milliseconds, got ${describe(timeout)}`)
  }
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw invalid(`${what}'s signal`, `must be an AbortSignal, got ${describe(signal)}`)
  }
  if (timeout === undefined && signal === undefined) return NO_WAIT
  return { timeout, signal: signal as AbortSignal | undefined }
}

const NO_WAIT: WaitOptions = Object.freeze({})

const abortedGetter = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get

/** A real AbortSignal: the platform's brand check, which proxies and look-alikes fail. */
function isAbortSignal(value: unknown): value is AbortSignal {
  try {
    abortedGetter?.call(value)
    return abortedGetter !== undefined
  } catch {
    return false
  }
}
