/**
 * slim-node: the Node.js SDK for SLIM (Secure Low-Latency Interactive Messaging).
 *
 * Start with {@link createLocalApp} (an app connected to a node) or {@link startServer}
 * (a node inside this process); an {@link App} creates and joins {@link Session}s. Every
 * failure is a {@link SlimError} with a stable {@link SlimErrorCode}.
 *
 * @example
 * ```ts
 * import { createLocalApp } from 'slim-node'
 * const app = await createLocalApp({
 *   local: 'agntcy/ns/moderator',
 *   slim: { endpoint: 'http://127.0.0.1:46357', tls: { insecure: true } },
 *   sharedSecret: 'a-shared-secret-of-at-least-32-bytes!',
 * })
 * ```
 * @packageDocumentation
 * @module slim-node
 */
export type {
  BasicCredentials,
  Build,
  BuildInfo,
  JwtCredentials,
  JwtSigningKey,
  KeepaliveOptions,
  MlsOptions,
  NameParts,
  NodeAuth,
  PersistenceOptions,
  ProxyOptions,
  ReconnectOptions,
  ServerKeepaliveOptions,
  ServerTlsOptions,
  SpireOptions,
  TelemetryOptions,
  TlsOptions,
  Versions,
} from '../index.js'
export { App, createApp } from './core/app.js'
export type {
  AppDirection,
  AppEvents,
  AppOptions,
  ConnectOptions,
  IdentityOptions,
  RoutingOptions,
  SessionOptions,
} from './core/app-options.js'
export type { AppStatus } from './core/connection.js'
export {
  type ErrorCode,
  isSlimError,
  RpcError,
  type RpcErrorFields,
  type RpcStatus,
  SLIM_ERROR_CODES,
  SlimError,
  type SlimErrorCode,
} from './core/errors.js'
export { createLocalApp, type LocalAppOptions, type SlimConnection } from './core/local.js'
export { formatName, parseName } from './core/names.js'
export { setPeerTimeout } from './core/peer.js'
export { type ServerOptions, SlimServer, startServer } from './core/server.js'
export {
  MAX_MESSAGE_BYTES,
  type Message,
  type Participant,
  type ParticipantChange,
  type Payload,
  type PublishOptions,
  Session,
  type SessionEvents,
  type SessionSettings,
  type SessionType,
} from './core/session.js'
export { enableOpentelemetry, flushTelemetry } from './core/telemetry.js'
export { buildInfo, version } from './core/versions.js'
export { MAX_TIMEOUT_MS, type WaitOptions } from './core/wait.js'
export type { CallOptions, GroupAnswer, Requests } from './rpc/call.js'
export { type ChannelOptions, RpcChannel } from './rpc/channel.js'
export type {
  BidiStreamLike,
  Bytes,
  ChannelLike,
  ContextLike,
  RequestStreamLike,
  RequestWriterLike,
  ResponseSinkLike,
  ServerLike,
  StreamReaderLike,
  StreamStreamHandler,
  StreamUnaryHandler,
  UnaryStreamHandler,
  UnaryUnaryHandler,
} from './rpc/codegen.js'
export {
  RpcContext,
  RpcServer,
  type RpcServerOptions,
  type StreamStreamMethod,
  type StreamUnaryMethod,
  type UnaryMethod,
  type UnaryStreamMethod,
} from './rpc/server.js'
export {
  type MulticastStreamMessage,
  MulticastStreamMessage_Tags,
  RpcCode,
  type RpcMessageContext,
  type StreamMessage,
  StreamMessage_Tags,
} from './rpc/stream.js'
