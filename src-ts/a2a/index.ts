/**
 * A2A over SLIM: the A2A protocol's SLIMRPC binding for the A2A JavaScript SDK
 * (`@a2a-js/sdk`, with `@grpc/grpc-js` and `@bufbuild/protobuf` for its protobuf codecs;
 * peer dependencies of this entry point only). Calls are slimrpc calls to the service
 * `lf.a2a.v1.A2AService` with A2A 1.0's protobuf messages, as upstream's Python `slima2a`
 * makes them; errors travel as slimrpc statuses carrying a `google.rpc.Status` with the
 * A2A `ErrorInfo` in the details.
 *
 * @example
 * ```ts
 * import { createA2AClient } from 'slim-node/a2a'
 * const client = await createA2AClient(app, 'agntcy/demo/echo_agent')
 * const answer = await client.sendMessage({ message: { messageId: '1', role: Role.ROLE_USER, parts: [...] } })
 * ```
 * @packageDocumentation
 * @module slim-node/a2a
 */
export {
  createA2AClient,
  SlimRpcTransport,
  SlimRpcTransportFactory,
  type SlimRpcTransportOptions,
} from './client.js'
export { A2A_SERVICE, SLIMRPC_BINDING } from './protocol.js'
export { type ServeA2AOptions, serveA2A } from './server.js'
