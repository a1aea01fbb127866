/**
 * slim-node: the Node.js SDK for SLIM (Secure Low-Latency Interactive Messaging).
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
 */
import type { NameParts, ServerTlsOptions, TelemetryOptions, TlsOptions } from '../index.js'
import { type App, createApp, type IdentityOptions } from './app.js'
import type { WaitOptions } from './cancel.js'
import { call, callSync } from './errors.js'
import { plainOptions, text } from './input.js'
import { addon } from './native.js'

export {
  App,
  type AppEvents,
  type AppOptions,
  type ConnectOptions,
  createApp,
  type IdentityOptions,
  type SessionOptions,
} from './app.js'
export { MAX_TIMEOUT_MS, type WaitOptions } from './cancel.js'
export { isSlimError, SLIM_ERROR_CODES, SlimError, type SlimErrorCode } from './errors.js'
export { type ServerOptions, SlimServer, startServer } from './server.js'
export {
  MAX_MESSAGE_BYTES,
  type Message,
  type Participant,
  type Payload,
  type PublishOptions,
  Session,
  type SessionEvents,
  type SessionSettings,
  type SessionType,
} from './session.js'
export type { NameParts, ServerTlsOptions, TelemetryOptions, TlsOptions }

/** Where the app's SLIM node is, in the seed's `slim` shape. */
export interface SlimConnection {
  /** e.g. `http://127.0.0.1:46357`, or `https://…` for a node that serves TLS */
  endpoint: string
  /** CA, client certificate for mutual TLS, or `insecure` for plain text. */
  tls?: TlsOptions
}

/** The seed's `create_local_app` parameters; `timeout` and `signal` bound the connect. */
export interface LocalAppOptions extends WaitOptions {
  /** This app's name, `org/ns/app`. */
  local: string
  /** The node to connect to. */
  slim: SlimConnection
  /** Shared secret for identity (at least 32 bytes); for local testing and examples. */
  sharedSecret?: string
  /** Path of a JWT file this app presents (see the README for what SLIM core 3.x allows). */
  jwt?: string
  /** A private key this app signs its own JWTs with. */
  jwtSigningKey?: IdentityOptions['jwtSigningKey']
  /** Trust domain -> base64 JWKS: the keys peers' JWTs must be signed with. */
  spireTrustBundle?: string
  /** Audiences peers' JWTs must carry. */
  audience?: string[]
  /** Identity and trust bundles from a SPIRE agent's workload API. */
  spire?: IdentityOptions['spire']
  /** Export traces over OTLP gRPC (`true`: to http://localhost:4317). */
  enableOpentelemetry?: boolean | TelemetryOptions
}

/** Creates an app and connects it to a node: the seed's `create_local_app`. */
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

/** Splits `org/ns/app` or `org/ns/app/<uuid>` into parts; throws `INVALID_NAME` when malformed. */
export function parseName(name: string): NameParts {
  return callSync(() => addon.parseName(text(name, 'parseName text')))
}

/** Formats name parts as `org/ns/app` (plus `/<uuid>` when an id is given). */
export function formatName(parts: NameParts): string {
  return callSync(() => addon.formatName(plainOptions(parts, 'formatName parts')))
}

/** The versions of slim-node and of the embedded upstream SLIM core. */
export function version(): { slimNode: string; slimCore: string } {
  return addon.version()
}

/**
 * Exports traces over OTLP gRPC (default `http://localhost:4317`). Process-wide: call it
 * once, before creating apps or nodes. Logs stay off unless `RUST_LOG` is set.
 */
export function enableOpentelemetry(options: TelemetryOptions = {}): Promise<void> {
  return call(async () => addon.enableOpentelemetry(plainOptions(options, 'enableOpentelemetry options')))
}

/** Sends the spans recorded so far; call before exiting to lose none. */
export function flushTelemetry(): Promise<void> {
  return call(() => addon.flushTelemetry())
}
