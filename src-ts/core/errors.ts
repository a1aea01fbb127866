/**
 * Typed errors. Every failure from slim-node is a {@link SlimError} with a stable
 * {@link SlimErrorCode}. The addon sets the code on the errors it throws and passes it
 * beside the message in what it reports through callbacks; the codes themselves are
 * defined once, in Rust, and generated into `index.d.ts` as the `ErrorCode` enum.
 */
import type { ErrorCode, ErrorInfo, RpcCode } from '../../index.js'
// Loaded first, so that a missing binary is reported by native.ts.
import { addon } from './native.js'

// The codes are defined and documented once, in Rust, as the generated ErrorCode enum.
// Re-exported as a type only: a runtime re-export would load index.js as an ES module
// while native.ts require()s it, which Node 20 refuses as a cycle.
export type { ErrorCode } from '../../index.js'

/**
 * A stable error code, one of the strings of {@link ErrorCode}: new codes may be added,
 * existing ones never change meaning.
 *
 * @example
 * ```ts
 * function retryable(code: SlimErrorCode): boolean {
 *   return code === 'TIMEOUT' || code === 'DELIVERY_FAILED' || code === 'CONNECT'
 * }
 * ```
 * @group Errors
 */
export type SlimErrorCode = `${ErrorCode}`

/**
 * Every {@link SlimErrorCode}, for validation and exhaustive handling.
 *
 * @example
 * ```ts
 * const known = (code: string): code is SlimErrorCode => SLIM_ERROR_CODES.includes(code as SlimErrorCode)
 * ```
 * @group Errors
 */
export const SLIM_ERROR_CODES: readonly SlimErrorCode[] = Object.freeze(
  Object.values(addon.ErrorCode as Record<string, SlimErrorCode>),
)

const KNOWN = new Set<string>(SLIM_ERROR_CODES)

/**
 * The error class of everything slim-node rejects or throws.
 *
 * @example
 * ```ts
 * try {
 *   await session.getMessage({ timeout: 1_000 })
 * } catch (error) {
 *   if (error instanceof SlimError && error.code === 'TIMEOUT') console.log('nothing yet')
 *   else throw error
 * }
 * ```
 * @group Errors
 */
export class SlimError extends Error {
  /** `'SlimError'`, or `'RpcError'` for a {@link RpcError}. */
  override readonly name: string = 'SlimError'
  /** Why it failed; see {@link SlimErrorCode}. */
  readonly code: SlimErrorCode

  /**
   * Makes an error with a stable code; slim-node makes these, applications rarely need to.
   *
   * @param code - the stable code
   * @param message - what happened, for people
   * @param options - `cause`: the error this one wraps
   */
  constructor(code: SlimErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }
}

/**
 * The status of a failed remote procedure call, one of the strings of {@link RpcCode}
 * (gRPC's codes): `'NOT_FOUND'`, `'DEADLINE_EXCEEDED'`, …
 *
 * @example
 * ```ts
 * const retry = (status: RpcStatus) => status === 'UNAVAILABLE' || status === 'DEADLINE_EXCEEDED'
 * ```
 * @group RPC
 */
export type RpcStatus = `${RpcCode}`

/**
 * The fields upstream's bindings construct an RPC error from.
 *
 * @example
 * ```ts
 * const error = new RpcError({ code: 'INTERNAL', message: 'boom' })
 * ```
 * @group RPC
 */
export interface RpcErrorFields {
  /** The status. */
  code: RpcStatus
  /** What happened. */
  message: string
  /** Binary details for the caller. */
  details?: Uint8Array | ArrayBuffer | undefined
}

/**
 * A failed remote procedure call: `code` is always `'RPC'`, `status` says why. A handler
 * throws one to answer with that status; any other error it throws reaches the caller as
 * `UNKNOWN`.
 *
 * @example
 * ```ts
 * server.registerUnaryUnary('example.Users', 'Get', async (request) => {
 *   throw new RpcError('NOT_FOUND', `no user ${new TextDecoder().decode(request)}`)
 * })
 * try {
 *   await channel.unary('example.Users', 'Get', 'alice')
 * } catch (error) {
 *   if (error instanceof RpcError && error.status === 'NOT_FOUND') console.log(error.message)
 * }
 * ```
 * @group RPC
 */
export class RpcError extends SlimError {
  override readonly name: string = 'RpcError'
  /** The call's status; never `'OK'`. */
  readonly status: RpcStatus
  /** Binary details the server attached, if any. */
  readonly details: Uint8Array | undefined
  /** In a group call, the member (`org/ns/app`) that failed. */
  readonly origin: string | undefined

  /** Upstream's name for the class, which generated code uses; the same class. */
  static readonly Rpc: typeof RpcError
  /** Upstream's name for a group member's failure; the same class. */
  static readonly MulticastRpc: typeof RpcError

  /**
   * An RPC failure with a status.
   *
   * @param status - the status, or `{ code, message, details }` as upstream's bindings take it
   * @param message - what happened, for the caller
   * @param options - `details` for the caller, `origin` (a group member), `cause`
   */
  constructor(
    status: RpcStatus | RpcErrorFields,
    message?: string,
    options?: ErrorOptions & { details?: Uint8Array; origin?: string },
  ) {
    const fields = typeof status === 'object' ? status : { code: status, message: message ?? status }
    super('RPC', fields.message, options)
    this.status = fields.code === 'OK' ? 'UNKNOWN' : fields.code
    const details = options?.details ?? fields.details
    this.details = details instanceof ArrayBuffer ? new Uint8Array(details) : details
    this.origin = options?.origin
  }
}
Object.defineProperties(RpcError, { Rpc: { value: RpcError }, MulticastRpc: { value: RpcError } })

/**
 * True when `error` is a {@link SlimError}, optionally with the given code.
 *
 * @example
 * ```ts
 * const message = await session.getMessage({ timeout: 500 }).catch((error) => {
 *   if (isSlimError(error, 'TIMEOUT')) return undefined
 *   throw error
 * })
 * ```
 * @group Errors
 */
export function isSlimError(error: unknown, code?: SlimErrorCode): error is SlimError {
  try {
    return error instanceof SlimError && (code === undefined || error.code === code)
  } catch {
    // A proxy whose getPrototypeOf trap throws is no SlimError.
    return false
  }
}

/**
 * Converts whatever the native layer threw into a SlimError, keeping the original as `cause`.
 * @internal
 */
export function toSlimError(error: unknown): SlimError {
  if (error instanceof SlimError) return error
  const message = error instanceof Error ? error.message : String(error)
  const code = (error as { code?: unknown } | null | undefined)?.code
  if (code === 'RPC') {
    const { status, details, origin } = error as { status: RpcStatus; details?: Uint8Array; origin?: string }
    return new RpcError(status, message, { cause: error, details, origin })
  }
  if (typeof code === 'string' && KNOWN.has(code)) {
    return new SlimError(code as SlimErrorCode, message, { cause: error })
  }
  // napi rejects mistyped arguments before our code runs, with a status code
  // such as InvalidArg or StringExpected.
  if (error instanceof TypeError || (typeof code === 'string' && /^InvalidArg$|Expected$/.test(code))) {
    return new SlimError('INVALID_ARGUMENT', message, { cause: error })
  }
  // Every error napi or the addon makes has a code; one without came from JavaScript the
  // addon ran while reading an argument: a caller's getter, proxy trap or toString.
  if (typeof code !== 'string') {
    return new SlimError('INVALID_ARGUMENT', `an argument could not be read: ${message}`, { cause: error })
  }
  return new SlimError('INTERNAL', message, { cause: error })
}

/**
 * The SlimError for a failure the addon reported through a callback.
 * @internal
 */
export function fromInfo(info: ErrorInfo | undefined): SlimError {
  return info && KNOWN.has(info.code)
    ? new SlimError(info.code, info.message)
    : new SlimError('INTERNAL', `the addon reported a failure without a known code: ${JSON.stringify(info)}`)
}

/**
 * Runs a native call, mapping its failure (sync or async) to a SlimError.
 * @internal
 */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    throw toSlimError(error)
  }
}

/**
 * The synchronous twin of {@link call}.
 * @internal
 */
export function callSync<T>(fn: () => T): T {
  try {
    return fn()
  } catch (error) {
    throw toSlimError(error)
  }
}
