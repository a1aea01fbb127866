import type { CancelToken } from '../../index.js'
import { call, SlimError, toSlimError } from './errors.js'
import { describe, invalid } from './input.js'
import { addon } from './native.js'

/**
 * How long a call may wait: the last argument of every call that waits for something
 * (for session creation, the third). When the wait ends first, the call rejects with
 * `TIMEOUT` or `ABORTED` (the signal's reason as `cause`); what happens to the work it
 * started is said on each call.
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

/**
 * Runs a native call that takes a timeout and a cancel token, wiring `signal` to the token.
 * Dropping a promise cancels nothing in Rust, so the signal has to reach the native side.
 */
export async function withSignal<T>(
  options: WaitOptions | undefined,
  what: string,
  fn: (timeout: number | undefined, token: CancelToken | undefined) => Promise<T>,
): Promise<T> {
  const { timeout, signal } = waitOptions(options, what)
  if (!signal) {
    try {
      return await fn(timeout, undefined)
    } catch (error) {
      throw toSlimError(error)
    }
  }
  if (signal.aborted) throw abortError(signal, what)
  const token = new addon.CancelToken()
  const onAbort = () => token.cancel()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await fn(timeout, token)
  } catch (error) {
    const slimError = toSlimError(error)
    throw slimError.code === 'ABORTED' ? abortError(signal, what) : slimError
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** A native call whose work goes on by itself, waited for within `options`. */
export async function waitFor<T>(options: WaitOptions | undefined, what: string, fn: () => Promise<T>): Promise<T> {
  // Checked before the call starts, so a bad option leaves no call behind.
  const wait = waitOptions(options, what)
  return within(call(fn), wait, what)
}

/**
 * Settles as `promise` does, or with `TIMEOUT` / `ABORTED` once the caller stops waiting;
 * `giveUp` runs then. For waits whose work is SLIM's and goes on regardless (a publish
 * already handed over, a close): only the wait ends.
 */
export function within<T>(promise: Promise<T>, wait: WaitOptions, what: string, giveUp?: () => void): Promise<T> {
  const { timeout, signal } = wait
  if (timeout === undefined && signal === undefined) return promise
  if (signal?.aborted) {
    giveUp?.()
    promise.catch(() => {})
    return Promise.reject(abortError(signal, what))
  }
  return new Promise<T>((resolve, reject) => {
    const stop = (error: SlimError) => {
      finish()
      giveUp?.()
      promise.catch(() => {})
      reject(error)
    }
    const onAbort = () => stop(abortError(signal as AbortSignal, what))
    const timer =
      timeout === undefined
        ? undefined
        : setTimeout(() => stop(new SlimError('TIMEOUT', `${what} timed out after ${timeout} ms`)), timeout)
    const finish = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        finish()
        resolve(value)
      },
      (error: unknown) => {
        finish()
        reject(toSlimError(error))
      },
    )
  })
}

/** Checks `{ timeout, signal }` and returns the two, read once. */
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
  if (timeout !== undefined && !(typeof timeout === 'number' && timeout >= 0 && timeout <= MAX_TIMEOUT_MS)) {
    throw invalid(
      `${what}'s timeout`,
      `must be a number of milliseconds from 0 to ${MAX_TIMEOUT_MS}, got ${describe(timeout)}`,
    )
  }
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw invalid(`${what}'s signal`, `must be an AbortSignal, got ${describe(signal)}`)
  }
  if (timeout === undefined && signal === undefined) return NO_WAIT
  return { timeout: timeout as number | undefined, signal: signal as AbortSignal | undefined }
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
