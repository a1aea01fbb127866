// createLocalApp: an app made and connected in one call, as SLIM's Python examples do.
import type { ConnectOptions as NativeConnectOptions, TelemetryOptions, TlsOptions } from '../../index.js'
import { type App, createApp } from './app.js'
import type { IdentityOptions } from './app-options.js'
import { plainOptions } from './input.js'
import { enableOpentelemetry } from './telemetry.js'
import type { WaitOptions } from './wait.js'

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
