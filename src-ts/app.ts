import { EventEmitter } from 'node:events'
import type {
  ConnectOptions,
  IdentityOptions,
  App as NativeApp,
  SessionOptions as NativeSessionOptions,
} from '../index.js'
import { type WaitOptions, withSignal } from './cancel.js'
import { call, SlimError, toSlimError } from './errors.js'
import { addon } from './native.js'
import { Session } from './session.js'

export type { ConnectOptions, IdentityOptions }

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

  /** Connects to a SLIM node, e.g. `{ endpoint: 'http://127.0.0.1:46357' }`. */
  async connect(options: ConnectOptions): Promise<void> {
    await call(() => this.#native.connect(options))
    this.#native.connectionLost().then(
      (reason) => this.emit('disconnected', toSlimError(new Error(reason))),
      // The app closed first: nothing to report.
      () => {},
    )
  }

  /** Also receive messages addressed to `name`. */
  subscribe(name: string): Promise<void> {
    return call(() => this.#native.subscribe(name))
  }

  unsubscribe(name: string): Promise<void> {
    return call(() => this.#native.unsubscribe(name))
  }

  /** Routes traffic for `name` through this app's node (invites set routes themselves). */
  setRoute(name: string): Promise<void> {
    return call(() => this.#native.setRoute(name))
  }

  removeRoute(name: string): Promise<void> {
    return call(() => this.#native.removeRoute(name))
  }

  /** Creates a group on `channel` (`org/ns/channel`) moderated by this app. */
  async createGroupSession(channel: string, options: SessionOptions = {}): Promise<Session> {
    return new Session(await call(() => this.#native.createSession(channel, nativeOptions('group', options))))
  }

  /** Opens a point-to-point session with `peer`; resolves once the peer has joined. */
  async createPointToPointSession(peer: string, options: SessionOptions = {}): Promise<Session> {
    return new Session(await call(() => this.#native.createSession(peer, nativeOptions('point-to-point', options))))
  }

  /** Waits until another app invites this one into a session. */
  async listenForSession(options: WaitOptions = {}): Promise<Session> {
    const native = await withSignal(options.signal, 'listenForSession', (token) =>
      this.#native.listenForSession(options.timeout, token),
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

  /** Closes every session, disconnects and releases the app. Idempotent. */
  close(): Promise<void> {
    return call(() => this.#native.close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/** Creates an app; call {@link App.connect} before creating sessions. */
export async function createApp(options: AppOptions): Promise<App> {
  return new App(await call(() => addon.createApp(options)))
}
