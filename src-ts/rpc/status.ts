// The one mapping between slim-node's errors and slimrpc statuses, both ways a status
// is made: a caller's failure as generated stubs expect it, and a handler's as its
// caller gets it.
import { RpcError, type RpcStatus, SlimError, type SlimErrorCode } from '../core/errors.js'

/** The status a SlimError travels as; codes not listed are `UNAVAILABLE`. */
const STATUS_OF: Partial<Record<SlimErrorCode, RpcStatus>> = {
  ABORTED: 'CANCELLED',
  TIMEOUT: 'DEADLINE_EXCEEDED',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  INVALID_NAME: 'INVALID_ARGUMENT',
  PAYLOAD_TOO_LARGE: 'RESOURCE_EXHAUSTED',
  BUSY: 'RESOURCE_EXHAUSTED',
  AUTH: 'UNAUTHENTICATED',
  INTERNAL: 'INTERNAL',
}

/**
 * `error` as an RpcError: an RpcError as it is, a SlimError with its code's status
 * (`ABORTED` is `CANCELLED`, `TIMEOUT` is `DEADLINE_EXCEEDED`, a lost session or
 * connection is `UNAVAILABLE`), anything else `UNKNOWN` with its message.
 */
export function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error
  if (error instanceof SlimError) {
    return new RpcError(STATUS_OF[error.code] ?? 'UNAVAILABLE', error.message, { cause: error })
  }
  return new RpcError('UNKNOWN', error instanceof Error ? error.message : String(error), { cause: error })
}
