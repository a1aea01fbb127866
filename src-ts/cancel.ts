import type { CancelToken } from '../index.js'
import { SlimError, toSlimError } from './errors.js'
import { addon } from './native.js'

/** Options shared by every call that waits for something. */
export interface WaitOptions {
  /** Milliseconds to wait before rejecting with `TIMEOUT`. Waits forever when omitted. */
  timeout?: number
  /** Rejects the call with `ABORTED` when this signal fires. */
  signal?: AbortSignal
}

export function abortError(signal: AbortSignal, what: string): SlimError {
  return new SlimError('ABORTED', `${what} was aborted`, { cause: signal.reason })
}

/**
 * Runs a native call that accepts a cancel token, wiring `signal` to it.
 * Dropping a promise cancels nothing in Rust, so the signal has to reach the native side.
 */
export async function withSignal<T>(
  signal: AbortSignal | undefined,
  what: string,
  fn: (token: CancelToken | undefined) => Promise<T>,
): Promise<T> {
  if (!signal) {
    try {
      return await fn(undefined)
    } catch (error) {
      throw toSlimError(error)
    }
  }
  if (signal.aborted) throw abortError(signal, what)
  const token = new addon.CancelToken()
  const onAbort = () => token.cancel()
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await fn(token)
  } catch (error) {
    const slimError = toSlimError(error)
    throw slimError.code === 'ABORTED' ? abortError(signal, what) : slimError
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
