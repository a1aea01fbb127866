import { EventEmitter } from 'node:events'
import type { App as NativeApp, SessionOptions as NativeSessionOptions } from '../../index.js'
import type { AppEvents, AppOptions, ConnectOptions, RoutingOptions, SessionOptions } from './app-options.js'
import { type AppStatus, Statuses } from './connection.js'
import { call, callSync, SlimError } from './errors.js'
import { plainOptions, text } from './input.js'
import { addon } from './native.js'
import { Session } from './session.js'
import { type WaitOptions, waiting } from './wait.js'

let nativeOfApp: (app: App) => NativeApp

/**
 * The addon's app behind `app`, for the RPC classes.
 * @internal
 */
export function nativeApp(app: App): NativeApp {
  if (!(app instanceof App)) throw new SlimError('INVALID_ARGUMENT', 'expected an App from createApp or createLocalApp')
  return nativeOfApp(app)
}

/**
 * A SLIM application: a named endpoint with an identity, connected to one node. It
 * creates sessions, is invited into others, and manages subscriptions and routes on its
 * node. Create one with {@link createLocalApp} or {@link createApp}; close it with
 * {@link App.close} (or `await using`) to end its sessions and let the process exit.
 *
 * @example
 * ```ts
 * import { createApp } from 'slim-node'
 *
 * const app = await createApp({ name: 'agntcy/ns/bob', identity: { sharedSecret } })
 * await app.connect({ endpoint: 'http://127.0.0.1:46357' })
 * for await (const session of app.sessions()) {
 *   for await (const message of session) console.log(message.source, message.payload.toString())
 * }
 * ```
 * @group Apps
 */
export class App extends EventEmitter<AppEvents> {
  readonly #native: NativeApp
  readonly #statuses = new Statuses(this)

  static {
    nativeOfApp = (app) => app.#native
  }

  /** @internal Use {@link createApp} or {@link createLocalApp}. */
  constructor(native: NativeApp) {
    super()
    this.#native = native
  }

  /**
   * What happens to the app's connections, as it happens: `disconnect`, `reconnecting`
   * (with the attempt), `reconnect` and `error` (see {@link AppStatus}). The loop ends
   * when the app closes, or with `ABORTED` when `signal` fires.
   *
   * @param options - A signal that stops the loop.
   * @example
   * ```ts
   * for await (const status of app.status()) console.log(status.type, status.connection)
   * ```
   */
  status(options: { signal?: AbortSignal } = {}): AsyncGenerator<AppStatus> {
    const { signal } = plainOptions(options, 'status options') ?? {}
    return this.#statuses.loop(this.closed, signal)
  }

  /** The app's name, `org/ns/app`. */
  get name(): string {
    return this.#native.name
  }

  /** This instance's 128-bit id as a UUID, derived from its identity. */
  get id(): string {
    return this.#native.id
  }

  /** True once the app is closed; every call then rejects with `CLOSED`. */
  get closed(): boolean {
    return this.#native.closed
  }

  /**
   * Connects to a SLIM node, e.g. `{ endpoint: 'http://127.0.0.1:46357' }`, and subscribes
   * the app's name there. Each attempt gives up with `CONNECT` after 10 s; `timeout` and
   * `signal` bound the whole call, and a connect given up on leaves no connection behind.
   * Once connected, the app reconnects by itself whenever the node goes away, as
   * `reconnect` allows (forever by default), and reports each step (see {@link App.status}).
   *
   * @param options - The node's URL, its TLS settings, and how long to wait.
   * @throws {SlimError} `CONNECT` when the node cannot be reached or the app is already
   * connected, `INVALID_ARGUMENT` for malformed options, `TIMEOUT` or `ABORTED` when
   * `timeout` or `signal` end the wait, `CLOSED` when the app is closed.
   * @example
   * ```ts
   * await app.connect({ endpoint: 'http://127.0.0.1:46357', timeout: 5000 })
   * ```
   */
  async connect(options: ConnectOptions): Promise<number> {
    const { timeout, signal, ...where } = plainOptions(options, 'connect options') ?? ({} as ConnectOptions)
    const connection = await waiting({ timeout, signal }, 'connect', (wait) => this.#native.connect(where, wait))
    // From the first connection on, the statuses' callback keeps Node running until close.
    this.#statuses.watch(this.#native)
    return connection
  }

  /** The ids of the app's connections, oldest first (names and routes use the oldest by default). */
  get connections(): number[] {
    return this.#native.connections
  }

  /**
   * Closes one connection (the oldest when none is given) without closing the app; the
   * app can connect again. Python: `disconnect`.
   *
   * @param connection - A connection id that {@link App.connect} resolved with.
   * @throws {SlimError} `INVALID_ARGUMENT` for an id that is not one of this app's,
   * `CONNECT` when the app has no connection, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   * @example
   * ```ts
   * const id = await app.connect({ endpoint: 'http://127.0.0.1:46357' })
   * await app.disconnect(id)
   * ```
   */
  disconnect(connection?: number, options?: WaitOptions): Promise<void> {
    return waiting(options, 'disconnect', (wait) => this.#native.disconnect(connection, wait))
  }

  /**
   * Sends publishes that have no route through `connection` (the oldest by default).
   * Python: `set_default_gateway`.
   *
   * @example
   * ```ts
   * const edge = await app.connect({ endpoint: 'http://edge.internal:46357' })
   * app.setDefaultGateway(edge)
   * ```
   */
  setDefaultGateway(connection?: number): void {
    callSync(() => this.#native.setDefaultGateway(connection))
  }

  /**
   * Undoes {@link App.setDefaultGateway}. Python: `clear_default_gateway`.
   *
   * @example
   * ```ts
   * app.clearDefaultGateway()
   * ```
   */
  clearDefaultGateway(): void {
    callSync(() => this.#native.clearDefaultGateway())
  }

  /**
   * Also receives messages addressed to `name` (`org/ns/app`), besides those addressed
   * to the app's own name.
   *
   * @param name - The name to subscribe to.
   * @param options - How long to wait for the node.
   * @throws {SlimError} `INVALID_NAME` for a malformed name, `CONNECT` when the app is not
   * connected, `CLOSED` when the app is closed, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   */
  subscribe(name: string, options?: RoutingOptions): Promise<void> {
    const { connection, ...wait } = plainOptions(options, 'subscribe options') ?? {}
    return waiting(wait, 'subscribe', (native) =>
      this.#native.subscribe(text(name, 'subscribe name'), connection, native),
    )
  }

  /**
   * Stops receiving messages addressed to `name`, undoing {@link App.subscribe}.
   *
   * @param name - The name subscribed to.
   * @param options - How long to wait for the node.
   * @throws {SlimError} `INVALID_NAME` for a malformed name, `CONNECT` when the app is not
   * connected, `CLOSED` when the app is closed, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   */
  unsubscribe(name: string, options?: RoutingOptions): Promise<void> {
    const { connection, ...wait } = plainOptions(options, 'unsubscribe options') ?? {}
    return waiting(wait, 'unsubscribe', (native) =>
      this.#native.unsubscribe(text(name, 'unsubscribe name'), connection, native),
    )
  }

  /**
   * Routes traffic for `name` through this app's node. {@link Session.invite} and
   * point-to-point sessions set the routes they need themselves.
   *
   * @param name - The name to route, `org/ns/app`.
   * @param options - How long to wait for the node.
   * @throws {SlimError} `INVALID_NAME` for a malformed name, `CONNECT` when the app is not
   * connected, `CLOSED` when the app is closed, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   */
  setRoute(name: string, options?: RoutingOptions): Promise<void> {
    const { connection, ...wait } = plainOptions(options, 'setRoute options') ?? {}
    return waiting(wait, 'setRoute', (native) => this.#native.setRoute(text(name, 'setRoute name'), connection, native))
  }

  /**
   * Removes the route for `name` that {@link App.setRoute} set.
   *
   * @param name - The routed name, `org/ns/app`.
   * @param options - How long to wait for the node.
   * @throws {SlimError} `INVALID_NAME` for a malformed name, `CONNECT` when the app is not
   * connected, `CLOSED` when the app is closed, `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   */
  removeRoute(name: string, options?: RoutingOptions): Promise<void> {
    const { connection, ...wait } = plainOptions(options, 'removeRoute options') ?? {}
    return waiting(wait, 'removeRoute', (native) =>
      this.#native.removeRoute(text(name, 'removeRoute name'), connection, native),
    )
  }

  /**
   * Creates a group on `channel` (`org/ns/channel`) moderated by this app; add members
   * with {@link Session.invite}. `timeout` and `signal` bound the call; a group given up
   * on is closed again.
   *
   * @param channel - The group's channel name.
   * @param options - Retries, interval, MLS and metadata of the group, and how long to
   * wait for it to be set up.
   * @throws {SlimError} `INVALID_NAME` for a malformed channel, `INVALID_ARGUMENT` for
   * malformed options, `CONNECT` when the app is not connected, `CLOSED` when the app is
   * closed, `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * const chat = await app.createGroupSession('agntcy/ns/chat', { mls: true })
   * await chat.invite('agntcy/ns/bob')
   * await chat.publish('hello, group')
   * ```
   */
  createGroupSession(channel: string, options?: SessionOptions): Promise<Session> {
    return this.#createSession('group', channel, options)
  }

  /**
   * Opens a point-to-point session with `peer` (`org/ns/app`); resolves once the peer has
   * joined. `timeout` and `signal` bound the call; a session given up on is closed again.
   *
   * @param peer - The app to talk to.
   * @param options - Retries, interval, MLS and metadata of the session, and how long to
   * wait for the peer to join.
   * @throws {SlimError} `INVALID_NAME` for a malformed name, `INVALID_ARGUMENT` for
   * malformed options, `DELIVERY_FAILED` when the peer does not answer or refuses this
   * app's identity, `CONNECT` when the app is not connected, `CLOSED` when the app is
   * closed, `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * const session = await app.createPointToPointSession('agntcy/ns/bob', { timeout: 10_000 })
   * await session.publish('hi, Bob')
   * const reply = await session.getMessage({ timeout: 5000 })
   * ```
   */
  createPointToPointSession(peer: string, options?: SessionOptions): Promise<Session> {
    return this.#createSession('point-to-point', peer, options)
  }

  async #createSession(
    type: NativeSessionOptions['type'],
    destination: string,
    options: SessionOptions | undefined,
  ): Promise<Session> {
    const what = type === 'group' ? 'createGroupSession' : 'createPointToPointSession'
    const { timeout, signal, ...settings } = plainOptions(options, `${what} options`) ?? {}
    const native = await waiting({ timeout, signal }, what, (wait) =>
      this.#native.createSession(text(destination, `${what} name`), { ...settings, type }, wait),
    )
    return new Session(native)
  }

  /**
   * Waits until another app invites this one into a session. One listen at a time per
   * app; {@link App.sessions} loops over it.
   *
   * @param options - How long to wait for an invitation.
   * @returns The session this app was invited into.
   * @throws {SlimError} `BUSY` when another listen is pending on this app, `CLOSED` when
   * the app closes, `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * const session = await app.listenForSession({ timeout: 60_000 })
   * console.log(`joined ${session.destination}, created by another app`)
   * ```
   */
  async listenForSession(options?: WaitOptions): Promise<Session> {
    const native = await waiting(options, 'listenForSession', (wait) => this.#native.listenForSession(wait))
    return new Session(native)
  }

  /**
   * Resumes the group sessions an earlier run of this app kept in its store (see
   * {@link AppOptions.persistence}), over the current connection and without a new
   * invitation. Connect first. Python: `restore_sessions`.
   *
   * @param options - How long to wait for the store and the node.
   * @returns The restored sessions (none when nothing was kept).
   * @throws {SlimError} `CONNECT` when the app is not connected, `STORE` when the store
   * cannot be read (a wrong passphrase, a damaged file), `TIMEOUT` or `ABORTED` when `timeout` or
   * `signal` end the wait.
   * @example
   * ```ts
   * const app = await createApp({ name: 'agntcy/ns/alice', identity, persistence: { path: './state', passphrase } })
   * await app.connect({ endpoint: 'http://127.0.0.1:46357' })
   * for (const session of await app.restoreSessions()) console.log(`back in ${session.destination}`)
   * ```
   */
  async restoreSessions(options?: WaitOptions): Promise<Session[]> {
    const natives = await waiting(options, 'restoreSessions', (wait) => this.#native.restoreSessions(wait))
    return natives.map((native) => new Session(native))
  }

  /**
   * The sessions this app is invited into, as they come; the loop ends when the app
   * closes, or with `ABORTED` when `signal` fires.
   *
   * @param options - A signal that stops the loop.
   * @throws {SlimError} `BUSY` when another listen is pending on this app, `ABORTED` when
   * `signal` fires.
   * @example
   * ```ts
   * for await (const session of app.sessions()) {
   *   void serve(session) // handle each session on its own
   * }
   * ```
   */
  async *sessions(options: { signal?: AbortSignal } = {}): AsyncGenerator<Session> {
    for (;;) {
      try {
        yield await this.listenForSession(options)
      } catch (error) {
        if (error instanceof SlimError && error.code === 'CLOSED') return
        throw error
      }
    }
  }

  /**
   * Closes every session, disconnects and releases the app. Idempotent. Pending receives
   * and listens settle with `SESSION_CLOSED` / `CLOSED`. A close that times out or is
   * aborted goes on in the background.
   *
   * @param options - How long to wait for the close.
   * @throws {SlimError} `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   */
  async close(options?: WaitOptions): Promise<void> {
    await waiting(options, 'close', (wait) => this.#native.close(wait))
    this.#statuses.close()
  }

  /** Closes the app at the end of an `await using` block, as {@link App.close} does. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/**
 * Creates an app with its name and identity, not yet connected: call
 * {@link App.connect} before creating sessions, or use {@link createLocalApp} to do both.
 *
 * @param options - The app's name and identity.
 * @returns The new app.
 * @throws {SlimError} `INVALID_NAME` for a malformed name, `INVALID_ARGUMENT` for missing
 * or conflicting identity settings, `AUTH` when the identity cannot be set up (an
 * expired token file, an unreachable SPIRE agent).
 * @example
 * ```ts
 * import { createApp } from 'slim-node'
 *
 * const app = await createApp({
 *   name: 'agntcy/ns/alice',
 *   identity: { sharedSecret: 'a-shared-secret-of-at-least-32-bytes!' },
 * })
 * await app.connect({ endpoint: 'http://127.0.0.1:46357' })
 * ```
 * @group Apps
 */
export async function createApp(options: AppOptions): Promise<App> {
  const copied = plainOptions(options, 'createApp options')
  return new App(await call(() => addon.createApp(copied)))
}
