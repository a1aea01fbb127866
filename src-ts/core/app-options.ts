// What an app is made, connected and routed with, and the events it emits.
import type {
  Direction,
  IdentityOptions,
  MlsOptions,
  ConnectOptions as NativeConnectOptions,
  PersistenceOptions,
} from '../../index.js'
import type { AppStatus } from './connection.js'
import type { SlimError } from './errors.js'
import type { WaitOptions } from './wait.js'

export type { IdentityOptions }

/**
 * Where and how to reach a SLIM node, and how long to wait for it: the argument of
 * {@link App.connect}.
 *
 * @example
 * ```ts
 * const options: ConnectOptions = {
 *   endpoint: 'https://slim.example.org:46357',
 *   tls: { caFile: '/etc/slim/ca.pem', certFile: 'app.pem', keyFile: 'app.key' },
 *   timeout: 15_000,
 * }
 * await app.connect(options)
 * ```
 * @group Options
 */
export interface ConnectOptions extends NativeConnectOptions, WaitOptions {}

/**
 * Which of the app's connections a name or route concerns (its oldest by default), and
 * how long to wait.
 *
 * @example
 * ```ts
 * const second = await app.connect({ endpoint: 'http://10.0.0.2:46357' })
 * await app.setRoute('agntcy/ns/bob', { connection: second })
 * ```
 * @group Options
 */
export interface RoutingOptions extends WaitOptions {
  /** A connection id that {@link App.connect} resolved with. */
  connection?: number
}

/**
 * How a new session delivers messages: the options of {@link App.createGroupSession} and
 * {@link App.createPointToPointSession}. Every field is optional.
 *
 * @example
 * ```ts
 * const options: SessionOptions = { maxRetries: 5, interval: 5000, mls: true, metadata: { topic: 'ops' } }
 * const chat = await app.createGroupSession('agntcy/ns/chat', options)
 * ```
 * @group Options
 */
export interface SessionOptions extends WaitOptions {
  /** Retransmissions per message before `DELIVERY_FAILED` (default 10). */
  maxRetries?: number
  /**
   * Milliseconds between retransmissions (default 1000): what the session configuration
   * of SLIM's Python example calls `timeout`. Here `timeout`, as everywhere, bounds the
   * wait for the session to be set up.
   */
  interval?: number
  /** Acknowledged delivery with retransmissions (default true). */
  reliable?: boolean
  /**
   * End-to-end encryption with MLS (default false); {@link MlsOptions} turn it on with
   * settings other than the defaults.
   */
  mls?: boolean | MlsOptions
  /** Session metadata, visible to every participant. */
  metadata?: Record<string, string>
}

/**
 * Options for {@link createApp}: the app's name and identity.
 *
 * @example
 * ```ts
 * const options: AppOptions = {
 *   name: 'agntcy/ns/alice',
 *   identity: { sharedSecret: 'a-shared-secret-of-at-least-32-bytes!' },
 * }
 * const app = await createApp(options)
 * ```
 * @group Options
 */
export interface AppOptions {
  /** The app's name, `org/ns/app`. */
  name: string
  /**
   * How the app proves who it is and which peers it trusts: a shared secret of at least
   * 32 bytes, JWTs it signs itself (or presents) with a trust bundle and audiences, or a
   * SPIRE agent.
   */
  identity: IdentityOptions
  /**
   * An encrypted store for the app's group sessions, so that after a restart
   * {@link App.restoreSessions} resumes them. Set a `passphrase`: without one the key
   * derives from the app's public name, which detects tampering but keeps nothing secret.
   */
  persistence?: PersistenceOptions
  /**
   * Which data messages the app takes part in: `'send'`, `'receive'`, `'bidirectional'`
   * (the default) or `'none'`. Control messages (joins, acknowledgements) flow either way.
   */
  direction?: AppDirection
}

/**
 * Which data messages an app sends and receives (see {@link AppOptions.direction}).
 *
 * @example
 * ```ts
 * const direction: AppDirection = 'receive'
 * const dashboard = await createApp({ name: 'agntcy/ns/dashboard', identity, direction })
 * ```
 * @group Apps
 */
export type AppDirection = `${Direction}`

/**
 * The events an {@link App} emits, with their listeners' arguments: each status of its
 * connections (see {@link AppStatus}), under `status` and under its own type. An `error`
 * is emitted only while it has listeners, so that an app nobody watches does not throw.
 *
 * @example
 * ```ts
 * app.on('reconnecting', ({ attempt }) => console.warn(`node away, attempt ${attempt}`))
 * app.on('error', (error) => console.error(`gave the node up (${error.code}): ${error.message}`))
 * ```
 * @group Apps
 */
export interface AppEvents {
  /** Every status, in order. */
  status: [status: AppStatus]
  /** The node went away; reconnecting starts. */
  disconnect: [status: Extract<AppStatus, { type: 'disconnect' }>]
  /** An attempt to reconnect starts. */
  reconnecting: [status: Extract<AppStatus, { type: 'reconnecting' }>]
  /** The connection is back, with its subscriptions, routes and sessions. */
  reconnect: [status: Extract<AppStatus, { type: 'reconnect' }>]
  /**
   * Reconnecting gave up (`reconnect.maxAttempts`): the connection is gone (`CONNECT`)
   * and, when it was the app's last, so are its sessions; create the app again.
   */
  error: [error: SlimError, status: Extract<AppStatus, { type: 'error' }>]
  /** The app closed; {@link App.status} loops end. */
  close: []
}
