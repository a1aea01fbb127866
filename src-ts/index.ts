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
import type {
  BuildInfo,
  NameParts,
  ConnectOptions as NativeConnectOptions,
  TelemetryOptions,
  TlsOptions,
  Versions,
} from '../index.js'
import { type App, createApp, type IdentityOptions } from './app.js'
import type { WaitOptions } from './cancel.js'
import { call, callSync } from './errors.js'
import { plainOptions, text } from './input.js'
import { addon } from './native.js'

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
export {
  App,
  type AppDirection,
  type AppEvents,
  type AppOptions,
  type ConnectOptions,
  createApp,
  type IdentityOptions,
  type RoutingOptions,
  type SessionOptions,
} from './app.js'
export { MAX_TIMEOUT_MS, type WaitOptions } from './cancel.js'
export type { AppStatus } from './connection.js'
export {
  type ErrorCode,
  isSlimError,
  RpcError,
  type RpcErrorFields,
  type RpcStatus,
  SLIM_ERROR_CODES,
  SlimError,
  type SlimErrorCode,
} from './errors.js'
export {
  type CallOptions,
  type ChannelOptions,
  type GroupAnswer,
  type Requests,
  RpcChannel,
} from './rpc-channel.js'
export {
  RpcContext,
  RpcServer,
  type RpcServerOptions,
  type StreamStreamMethod,
  type StreamUnaryMethod,
  type UnaryMethod,
  type UnaryStreamMethod,
} from './rpc-server.js'
export {
  type BidiStreamLike,
  type Bytes,
  type ChannelLike,
  type ContextLike,
  type MulticastStreamMessage,
  MulticastStreamMessage_Tags,
  type RequestStreamLike,
  type RequestWriterLike,
  type ResponseSinkLike,
  RpcCode,
  type RpcMessageContext,
  type ServerLike,
  type StreamMessage,
  StreamMessage_Tags,
  type StreamReaderLike,
  type StreamStreamHandler,
  type StreamUnaryHandler,
  type UnaryStreamHandler,
  type UnaryUnaryHandler,
} from './rpc-stream.js'
export { type ServerOptions, SlimServer, startServer } from './server.js'
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
} from './session.js'

/**
 * Where an app's SLIM node is and how to reach it: the `slim` field of
 * {@link LocalAppOptions}, in the same JSON shape the example programs take as `--slim`.
 *
 * @example
 * ```ts
 * const slim: SlimConnection = {
 *   endpoint: 'https://slim.example.org:46357',
 *   tls: { caFile: '/etc/slim/ca.pem' },
 * }
 * ```
 * @group Options
 */
export interface SlimConnection extends Omit<NativeConnectOptions, 'endpoint' | 'tls'> {
  /** The node's URL, e.g. `http://127.0.0.1:46357`, or `https://…` for a node that serves TLS. */
  endpoint: string
  /**
   * How to secure the connection: a CA that signs the node's certificate, this app's own
   * certificate for mutual TLS, or `{ insecure: true }` for plain text.
   */
  tls?: TlsOptions
}

/**
 * Options for {@link createLocalApp}: the app's name, its node, how it proves who it is,
 * and whether to export telemetry. The identity fields are those of {@link IdentityOptions}:
 * pass `sharedSecret`, or `jwtSigningKey` (or `jwt`) with `spireTrustBundle` and
 * `audience`, or `spire`. `timeout` and `signal` bound the connect to the node.
 *
 * @example
 * ```ts
 * const options: LocalAppOptions = {
 *   local: 'agntcy/ns/alice',
 *   slim: { endpoint: 'http://127.0.0.1:46357' },
 *   jwtSigningKey: { pem: readFileSync('alice-key.pem', 'utf8'), algorithm: 'ES256' },
 *   spireTrustBundle: JSON.stringify({ 'example.org': base64Jwks }),
 *   audience: ['my-deployment'],
 *   timeout: 10_000,
 * }
 * ```
 * @group Options
 */
export interface LocalAppOptions extends WaitOptions {
  /** This app's name, `org/ns/app`. */
  local: string
  /** The node to connect to, and the TLS settings for it. */
  slim: SlimConnection
  /**
   * A secret shared by every app of the deployment (at least 32 bytes): for local testing
   * and examples.
   */
  sharedSecret?: string
  /**
   * Path of a JWT file this app presents, re-read when it changes (for example one a SPIRE
   * agent keeps fresh). SLIM core 3.x cannot hold sessions with such an identity: session
   * calls reject with `AUTH`; use `jwtSigningKey` or `sharedSecret` instead.
   */
  jwt?: string
  /**
   * A private key this app signs its own JWTs with: `pem` (PEM text of the key),
   * `algorithm` (a JWS algorithm such as `ES256`, `RS256` or `EdDSA`), and optionally
   * `subject` (the `sub` claim, default the app's name) and `issuer` (the `iss` claim,
   * default the subject). The token header's key id (`kid`) is always the subject, so the
   * trust bundle's JWKS must list the public key under that id.
   */
  jwtSigningKey?: IdentityOptions['jwtSigningKey']
  /**
   * JSON object mapping each trust domain to its base64-encoded JWKS: the keys peers' JWTs
   * must be signed with.
   */
  spireTrustBundle?: string
  /** Audiences a peer's JWT must carry (at least one); the JWTs this app signs carry them too. */
  audience?: string[]
  /**
   * Identity and trust bundles from a SPIRE agent's workload API: `socketPath` (default
   * the `SPIFFE_ENDPOINT_SOCKET` variable), `targetSpiffeId` (when the workload has
   * several) and `trustDomains` (default the workload's own).
   */
  spire?: IdentityOptions['spire']
  /**
   * Export spans and metrics over OTLP gRPC before the app is created: `true` exports to
   * `http://localhost:4317`; an object sets the collector and service name (see
   * {@link enableOpentelemetry}).
   */
  enableOpentelemetry?: boolean | TelemetryOptions
}

/**
 * Creates an app named `local` and connects it to the node at `slim.endpoint`: the
 * one-call start of most programs, mirroring `create_local_app` of SLIM's Python
 * examples. Telemetry is enabled first when `enableOpentelemetry` is set. If the connect
 * fails, the app is closed again before the promise rejects.
 *
 * @param options - The app's name, its node, its identity and optional telemetry.
 * @returns The connected app; close it with {@link App.close} when done.
 * @throws {SlimError} `INVALID_ARGUMENT` for missing or conflicting options,
 * `INVALID_NAME` for a malformed `local`, `AUTH` when the identity cannot be set up,
 * `CONNECT` when the node cannot be reached, `TIMEOUT` or `ABORTED` when `timeout` or
 * `signal` end the connect.
 * @example
 * ```ts
 * import { createLocalApp } from 'slim-node'
 *
 * const app = await createLocalApp({
 *   local: 'agntcy/ns/alice',
 *   slim: { endpoint: 'http://127.0.0.1:46357' },
 *   sharedSecret: process.env.SLIM_SHARED_SECRET,
 *   timeout: 10_000,
 * })
 * const chat = await app.createGroupSession('agntcy/ns/chat', { mls: true })
 * // ...
 * await app.close()
 * ```
 * @group Apps
 */
export async function createLocalApp(options: LocalAppOptions): Promise<App> {
  const {
    local,
    slim,
    enableOpentelemetry: telemetry,
    timeout,
    signal,
    ...identity
  } = plainOptions(options, 'createLocalApp options') ?? ({} as LocalAppOptions)
  if (telemetry) await enableOpentelemetry(telemetry === true ? {} : telemetry)
  const app = await createApp({ name: local, identity })
  try {
    await app.connect({ ...slim, timeout, signal })
  } catch (error) {
    await app.close()
    throw error
  }
  return app
}

/**
 * Splits a SLIM name, `org/ns/app` or `org/ns/app/<uuid>`, into its parts.
 *
 * @param name - The name to parse.
 * @returns The name's organisation, namespace and app, and its instance id when it has one.
 * @throws {SlimError} `INVALID_NAME` when the name is malformed, `INVALID_ARGUMENT` when it
 * is not a string.
 * @example
 * ```ts
 * import { parseName } from 'slim-node'
 *
 * const { org, namespace, app } = parseName('agntcy/ns/alice') // 'agntcy', 'ns', 'alice'
 * ```
 * @group Names
 */
export function parseName(name: string): NameParts {
  return callSync(() => addon.parseName(text(name, 'parseName text')))
}

/**
 * Formats name parts as `org/ns/app`, or `org/ns/app/<uuid>` when an id is given:
 * the inverse of {@link parseName}.
 *
 * @param parts - The organisation, namespace and app, and optionally the instance id.
 * @returns The formatted name.
 * @throws {SlimError} `INVALID_NAME` when a part is empty or malformed,
 * `INVALID_ARGUMENT` when `parts` is not an object.
 * @example
 * ```ts
 * import { formatName } from 'slim-node'
 *
 * formatName({ org: 'agntcy', namespace: 'ns', app: 'alice' }) // 'agntcy/ns/alice'
 * ```
 * @group Names
 */
export function formatName(parts: NameParts): string {
  return callSync(() => addon.formatName(plainOptions(parts, 'formatName parts')))
}

/**
 * The versions of this package and of the upstream SLIM core compiled into its addon.
 *
 * @returns `slimNode`, this package's version, and `slimCore`, the SLIM core's.
 * @example
 * ```ts
 * import { version } from 'slim-node'
 *
 * const { slimNode, slimCore } = version()
 * console.log(`slim-node ${slimNode}, SLIM core ${slimCore}`)
 * ```
 * @group Versions
 */
export function version(): Versions {
  return addon.version()
}

/**
 * How this addon and the SLIM core inside it were built: version, git commit, build date
 * and cargo profile of each (`debug` in a development build, `release` in the packages).
 *
 * @example
 * ```ts
 * import { buildInfo } from 'slim-node'
 *
 * const { slimNode, slimCore } = buildInfo()
 * console.log(`slim-node ${slimNode.version} ${slimNode.gitSha} ${slimNode.profile}, core ${slimCore.version}`)
 * ```
 * @group Versions
 */
export function buildInfo(): BuildInfo {
  return addon.buildInfo()
}

/**
 * Exports spans and metrics over OTLP gRPC (default `http://localhost:4317`).
 * Process-wide: call it once, before creating apps or nodes; calling it again with the
 * same endpoint does nothing. Logs stay off unless `RUST_LOG` is set.
 *
 * @param options - The collector, service name and metrics interval; defaults for each.
 * @throws {SlimError} `INVALID_ARGUMENT` when the options are malformed, or telemetry is
 * already set up differently: enabled with another endpoint, or logging to `RUST_LOG`
 * started without it because an app or node was created first.
 * @example
 * ```ts
 * import { enableOpentelemetry, flushTelemetry } from 'slim-node'
 *
 * await enableOpentelemetry({ endpoint: 'http://collector:4317', serviceName: 'chat-bot' })
 * // ... create apps, exchange messages ...
 * await flushTelemetry()
 * ```
 * @group Telemetry
 */
export function enableOpentelemetry(options: TelemetryOptions = {}): Promise<void> {
  return call(async () => addon.enableOpentelemetry(plainOptions(options, 'enableOpentelemetry options')))
}

/**
 * Sends the spans and metrics recorded so far; call it before exiting, since what is
 * still buffered at exit is lost. Does nothing when telemetry is not enabled.
 *
 * @throws {SlimError} `INTERNAL` when the exporter fails to flush.
 * @example
 * ```ts
 * import { flushTelemetry } from 'slim-node'
 *
 * await app.close()
 * await flushTelemetry() // the last spans, before the program exits
 * ```
 * @group Telemetry
 */
export function flushTelemetry(): Promise<void> {
  return call(() => addon.flushTelemetry())
}

/**
 * Sets how soon a point-to-point session (slimrpc's and MCP's included) ends once its
 * peer's process is gone. SLIM lists a silent peer offline only after three missed 10 s
 * heartbeats and keeps the session open, so a `getMessage`, an RPC or an MCP call waiting
 * on a dead peer waited 30 s or until its own timeout. slim-node's point-to-point sessions
 * heartbeat every eighth of the peer timeout and say so to their peer; once a slim-node
 * peer stayed silent for the timeout, the session ends with `SESSION_CLOSED` ("its peer …
 * went offline") and what waits on it fails.
 *
 * A peer that is only slow is not taken for dead: heartbeats come from the addon's own
 * threads, not from JavaScript, so a busy event loop does not stop them, and while this
 * app is cut off from its node its peers' silence does not count. Peers built on other
 * SLIM SDKs do not say their interval and are still judged by SLIM's 30 s. Each
 * point-to-point session then sends about three small heartbeats a second each way; 0
 * turns that off. Process-wide; applies to the sessions created or joined after the call.
 *
 * @param ms - Default 3000, past the 2 s a peer takes at most to reconnect after its node
 * restarted with the default `reconnect` settings; from 500 to 30 000; 0 turns it off
 * (SLIM's behaviour).
 * @throws {SlimError} `INVALID_ARGUMENT` for a value that is not 0 or from 500 to 30 000.
 * @example
 * ```ts
 * import { setPeerTimeout } from 'slim-node'
 *
 * setPeerTimeout(10_000) // peers on a flaky network: give them 10 s before giving up
 * ```
 * @group Sessions
 */
export function setPeerTimeout(ms: number): void {
  callSync(() => addon.setPeerTimeout(ms))
}
