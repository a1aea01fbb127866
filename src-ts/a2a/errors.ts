// A2A errors as slimrpc statuses, both ways, as slima2a sends and reads them.
import { A2AError } from '@a2a-js/sdk/errors'
import * as grpcErrors from '@a2a-js/sdk/errors/grpc'
import { Metadata } from '@grpc/grpc-js'
import { RpcError, type RpcStatus } from '../core/errors.js'
import { toRpcError } from '../rpc/status.js'
import { type Method, nameOf } from './protocol.js'

const STATUS_NAMES = new Map<number, RpcStatus>(
  Object.entries(grpcErrors.GRPC_STATUS_CODE).map(([name, code]) => [code, name as RpcStatus]),
)

/**
 * slima2a names the A2A error in the message (`TaskNotFoundError: …`): upstream's slimrpc
 * 3.4.6 carries a status and a message but drops an error's binary details, where
 * slima2a (and the A2A SDK's gRPC binding) put the `google.rpc.Status` with A2A's
 * `ErrorInfo`. Both are read: the details if they arrive, else the name.
 */
const NAMED = /^(\w+Error): ([\s\S]*)$/

/** slima2a's statuses where they differ from the A2A SDK's gRPC binding. */
const SLIMA2A_STATUS: Readonly<Record<string, RpcStatus>> = {
  PushNotificationNotSupportedError: 'UNIMPLEMENTED',
  UnsupportedOperationError: 'UNIMPLEMENTED',
  VersionNotSupportedError: 'UNIMPLEMENTED',
}

type GrpcErrorClass = new (options: { message: string; status: number }) => Error

/** A slimrpc failure as the A2A SDK's error class (`TaskNotFoundError`, …). */
export function toA2AError(error: unknown, method: Method): unknown {
  if (!(error instanceof RpcError)) return error
  const code = grpcErrors.GRPC_STATUS_CODE[error.status]
  const named = NAMED.exec(error.message)
  const known = named && (grpcErrors as unknown as Record<string, GrpcErrorClass | undefined>)[`Grpc${named[1]}`]
  if (!error.details && named && known) return new known({ message: named[2] ?? '', status: code })
  const details = error.details ? [Buffer.from(error.details)] : []
  const serviceError = {
    code,
    details: error.message,
    metadata: { get: (key: string) => (key === grpcErrors.GRPC_STATUS_DETAILS_BIN ? details : []) },
  }
  return grpcErrors.fromGrpcError(
    serviceError as unknown as Parameters<typeof grpcErrors.fromGrpcError>[0],
    nameOf(method),
  )
}

/** An A2A SDK error (or any other, see `toRpcError`) as the slimrpc status and message slima2a sends. */
export function a2aToRpcError(error: unknown): RpcError {
  if (!(error instanceof A2AError)) return toRpcError(error)
  const status = SLIMA2A_STATUS[error.name] ?? STATUS_NAMES.get(grpcErrors.grpcStatusFor(error)) ?? 'UNKNOWN'
  const details = grpcErrors.buildGrpcErrorMetadata(Metadata, error)?.get(grpcErrors.GRPC_STATUS_DETAILS_BIN)[0]
  return new RpcError(status, `${error.name}: ${error.message}`, {
    details: typeof details === 'string' ? Buffer.from(details) : details,
  })
}
