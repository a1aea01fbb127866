/**
 * Typed errors. Every failure from slim-node is a {@link SlimError} with a stable
 * {@link SlimErrorCode}; the native layer encodes the code as `[CODE] message`.
 */

/** Stable error codes; new codes may be added, existing ones never change meaning. */
export type SlimErrorCode =
  /** A SLIM name is malformed (expected `org/namespace/app`). */
  | 'INVALID_NAME'
  /** An argument has the wrong type or value. */
  | 'INVALID_ARGUMENT'
  /** Identity or authentication failed. */
  | 'AUTH'
  /** The app cannot reach or talk to its SLIM node. */
  | 'CONNECT'
  /** A timeout given by the caller elapsed. */
  | 'TIMEOUT'
  /** The caller's AbortSignal fired. */
  | 'ABORTED'
  /** Another receive or listen is already pending on the same object. */
  | 'BUSY'
  /** The app (or node) was closed. */
  | 'CLOSED'
  /** The session ended or was closed. */
  | 'SESSION_CLOSED'
  /** Only the moderator of a group may do this. */
  | 'NOT_INITIATOR'
  /** The operation needs a group session. */
  | 'NOT_GROUP'
  /** The name is not a member of the group. */
  | 'NOT_MEMBER'
  /** SLIM could not deliver a message (retries exhausted, peer gone). */
  | 'DELIVERY_FAILED'
  /** A message is larger than SLIM carries ({@link MAX_MESSAGE_BYTES}); nothing was sent. */
  | 'PAYLOAD_TOO_LARGE'
  /** The embedded node could not start or stop. */
  | 'SERVER'
  /** A bug: an unexpected failure inside slim-node or SLIM (including a caught panic). */
  | 'INTERNAL'

/** Every {@link SlimErrorCode}, for validation and exhaustive handling. */
export const SLIM_ERROR_CODES: readonly SlimErrorCode[] = [
  'INVALID_NAME',
  'INVALID_ARGUMENT',
  'AUTH',
  'CONNECT',
  'TIMEOUT',
  'ABORTED',
  'BUSY',
  'CLOSED',
  'SESSION_CLOSED',
  'NOT_INITIATOR',
  'NOT_GROUP',
  'NOT_MEMBER',
  'DELIVERY_FAILED',
  'PAYLOAD_TOO_LARGE',
  'SERVER',
  'INTERNAL',
]

/** The error class of everything slim-node rejects or throws. */
export class SlimError extends Error {
  override readonly name = 'SlimError'
  readonly code: SlimErrorCode

  constructor(code: SlimErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/** True when `error` is a {@link SlimError}, optionally with the given code. */
export function isSlimError(error: unknown, code?: SlimErrorCode): error is SlimError {
  try {
    return error instanceof SlimError && (code === undefined || error.code === code)
  } catch {
    // A proxy whose getPrototypeOf trap throws is no SlimError.
    return false
  }
}

const ENCODED = /^\[([A-Z_]+)\] ([\s\S]*)$/

/** Converts whatever the native layer threw into a SlimError, keeping the original as `cause`. */
export function toSlimError(error: unknown): SlimError {
  if (error instanceof SlimError) return error
  const message = error instanceof Error ? error.message : String(error)
  const encoded = ENCODED.exec(message)
  if (encoded) return new SlimError(encoded[1] as SlimErrorCode, encoded[2] ?? '', { cause: error })
  // napi rejects mistyped arguments before our code runs, with a status code
  // such as InvalidArg or StringExpected.
  const status = (error as { code?: unknown }).code
  if (error instanceof TypeError || (typeof status === 'string' && /^InvalidArg$|Expected$/.test(status))) {
    return new SlimError('INVALID_ARGUMENT', message, { cause: error })
  }
  // Every error napi or the addon makes has a status; one without came from JavaScript the
  // addon ran while reading an argument: a caller's getter, proxy trap or toString.
  if (typeof status !== 'string') {
    return new SlimError('INVALID_ARGUMENT', `an argument could not be read: ${message}`, { cause: error })
  }
  return new SlimError('INTERNAL', message, { cause: error })
}

/** The SlimError for a `[CODE] message` reason the addon reported through a callback. */
export function fromReason(reason: string): SlimError {
  const encoded = ENCODED.exec(reason)
  return encoded
    ? new SlimError(encoded[1] as SlimErrorCode, encoded[2] ?? '')
    : new SlimError('INTERNAL', `the addon reported an uncoded failure: ${reason}`)
}

/** Runs a native call, mapping its failure (sync or async) to a SlimError. */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    throw toSlimError(error)
  }
}

/** The synchronous twin of {@link call}. */
export function callSync<T>(fn: () => T): T {
  try {
    return fn()
  } catch (error) {
    throw toSlimError(error)
  }
}
