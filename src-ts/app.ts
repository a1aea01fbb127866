import { EventEmitter } from 'node:events'
import type {
  IdentityOptions,
  App as NativeApp,
  ConnectOptions as NativeConnectOptions,
  SessionOptions as NativeSessionOptions,
} from '../index.js'
import { type WaitOptions, waitFor, withSignal } from './cancel.js'
import { call, fromReason, SlimError } from './errors.js'
import { plainOptions, text } from './input.js'
import { addon } from './native.js'
import { Session } from './session.js'

export type { IdentityOptions }

/** Where and how to reach a SLIM node, and how long to wait for it. */
export interface ConnectOptions extends NativeConnectOptions, WaitOptions {}

/** Options for a new session. */
export interface SessionOptions {
  /** Retransmissions per message before `DELIVERY_FAILED` (default 10). */
  maxRetries?: number
  /** Milliseconds between retransmissions (default 1000). */
  interval?: number
  /** The seed's name for {@link SessionOptions.interval}; used when `interval` is absent. */
  timeout?: number
  /** Acknowledged delivery with retransmissions (default true). */
  reliable?: boolean
  /** End-to-end encryption with MLS (default false). */
  mls?: boolean
  /** Session metadata, visible to every participant. */
  metadata?: Record<string, string>
}

/** Options for {@link createApp}. */
export interface AppOptions {
  /** The app's name, `org/ns/app`. */
  name: string
  /** How the app proves who it is; a shared secret of at least 32 bytes for now. */
  identity: IdentityOptions
}

function nativeOptions(type: NativeSessionOptions['type'], options: SessionOptions): NativeSessionOptions {
  const { timeout, interval, ...rest } = options
  return { ...rest, type, interval: interval ?? timeout }
}

/** Events an app emits. */
export interface AppEvents {
  /**
   * SLIM gave the connection to the node up (its own reconnecting after a node restart
   * stopped): the app's sessions have ended and the error (`CONNECT`) says so. Create
   * the app again to go on.
   */
  disconnected: [error: SlimError]
}

/** A SLIM application: a named endpoint with an identity, connected to one node. */
export class App extends EventEmitter<AppEvents> {
  readonly #native: NativeApp

  /** @internal Use {@link createApp} or {@link createLocalApp}. */
  constructor(native: NativeApp) {
    super()
    this.#native = native
  }

  /** The app's name, `org/ns/app`. */
  get name(): string {
    return this.#native.name
  }

  /** This instance's 128-bit id as a UUID, derived from its identity. */
  get id(): string {
    return this.#native.id
  }

  get closed(): boolean {
    return this.#native.closed
  }

  /**
   * Connects to a SLIM node, e.g. `{ endpoint: 'http://127.0.0.1:46357' }`. Each attempt
   * gives up with `CONNECT` after 10 s; `timeout` and `signal` bound the whole call, and a
   * connect given up on leaves no connection behind.
   */
  async connect(options: ConnectOptions): Promise<void> {
    const { timeout, signal, ...where } = plainOptions(options, 'connect options') ?? ({} as ConnectOptions)
    await withSignal({ timeout, signal }, 'connect', (ms, token) => this.#native.connect(where, ms, token))
    this.#native.connectionLost().then(
      (reason) => this.emit('disconnected', fromReason(reason)),
      // The app closed first: nothing to report.
      () => {},
    )
  }

  /** Also receive messages addressed to `name`. */
  subscribe(name: string, options?: WaitOptions): Promise<void> {
    return waitFor(options, 'subscribe', () => this.#native.subscribe(text(name, 'subscribe name')))
  }

  unsubscribe(name: string, options?: WaitOptions): Promise<void> {
    return waitFor(options, 'unsubscribe', () => this.#native.unsubscribe(text(name, 'unsubscribe name')))
  }

  /** Routes traffic for `name` through this app's node (invites set routes themselves). */
  setRoute(name: string, options?: WaitOptions): Promise<void> {
    return waitFor(options, 'setRoute', () => this.#native.setRoute(text(name, 'setRoute name')))
  }

  removeRoute(name: string, options?: WaitOptions): Promise<void> {
    return waitFor(options, 'removeRoute', () => this.#native.removeRoute(text(name, 'removeRoute name')))
  }

  /**
   * Creates a group on `channel` (`org/ns/channel`) moderated by this app. `wait` bounds
   * the call; a group given up on is closed again.
   */
  createGroupSession(channel: string, options?: SessionOptions, wait?: WaitOptions): Promise<Session> {
    return this.#createSession('group', channel, options, wait)
  }

  /**
   * Opens a point-to-point session with `peer`; resolves once the peer has joined. `wait`
   * bounds the call; a session given up on is closed again.
   */
  createPointToPointSession(peer: string, options?: SessionOptions, wait?: WaitOptions): Promise<Session> {
    return this.#createSession('point-to-point', peer, options, wait)
  }

  async #createSession(
    type: NativeSessionOptions['type'],
    destination: string,
    options: SessionOptions | undefined,
    wait: WaitOptions | undefined,
  ): Promise<Session> {
    const what = type === 'group' ? 'createGroupSession' : 'createPointToPointSession'
    const native = nativeOptions(type, plainOptions(options, `${what} options`) ?? {})
    return new Session(
      await withSignal(wait, what, (timeout, token) =>
        this.#native.createSession(text(destination, `${what} name`), native, timeout, token),
      ),
    )
  }

  /** Waits until another app invites this one into a session. */
  async listenForSession(options?: WaitOptions): Promise<Session> {
    const native = await withSignal(options, 'listenForSession', (timeout, token) =>
      this.#native.listenForSession(timeout, token),
    )
    return new Session(native)
  }

  /** Sessions this app is invited into, until the app closes. */
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
   * Closes every session, disconnects and releases the app. Idempotent. A close that
   * times out or is aborted goes on in the background.
   */
  close(options?: WaitOptions): Promise<void> {
    return waitFor(options, 'close', () => this.#native.close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/** Creates an app; call {@link App.connect} before creating sessions. */
export async function createApp(options: AppOptions): Promise<App> {
  const copied = plainOptions(options, 'createApp options')
  return new App(await call(() => addon.createApp(copied)))
}
