// The A2A service as slimrpc carries it: its name, its binding's name, and its methods
// with their codecs (the A2A SDK's gRPC service definition).
import type { A2AService } from '@a2a-js/sdk/server/grpc'

/**
 * The slimrpc service of A2A 1.0, as slima2a serves it.
 *
 * @example
 * ```ts
 * const raw = await new RpcChannel(app, 'agntcy/demo/echo_agent').unary(A2A_SERVICE, 'GetTask', bytes)
 * ```
 */
export const A2A_SERVICE = 'lf.a2a.v1.A2AService'

/**
 * The protocol binding name an agent card lists for SLIMRPC, as slima2a reads it.
 *
 * @example
 * ```ts
 * const slim = card.supportedInterfaces.find((entry) => entry.protocolBinding === SLIMRPC_BINDING)
 * ```
 */
export const SLIMRPC_BINDING = 'slimrpc'

export type Methods = typeof A2AService
export type Method = Methods[keyof Methods]
export type RequestOf<M extends Method> = Parameters<M['requestSerialize']>[0]
export type ResponseOf<M extends Method> = ReturnType<M['responseDeserialize']>

/** `SendMessage` from `/lf.a2a.v1.A2AService/SendMessage`. */
export const nameOf = (method: Method): string => method.path.slice(method.path.lastIndexOf('/') + 1)
