import { EventEmitter, on } from 'node:events'
import type { ConnectionStatus, App as NativeApp } from '../../index.js'
import { fromInfo, type SlimError } from './errors.js'
import { abortError } from './wait.js'

/**
 * What happened to one of an app's connections: the items of {@link App.status} and the
 * argument of the app's events of the same names. The node went away (`disconnect`), an
 * attempt to reach it again starts (`reconnecting`, from attempt 1), the connection is
 * back with its subscriptions, routes and sessions (`reconnect`), or reconnecting gave up
 * after `reconnect.maxAttempts` and the connection is gone (`error`, code `CONNECT`).
 *
 * @example
 * ```ts
 * for await (const status of app.status()) {
 *   if (status.type === 'reconnecting') console.log(`attempt ${status.attempt}`)
 *   if (status.type === 'error') console.error(status.error.message)
 * }
 * ```
 * @group Apps
 */
export type AppStatus =
  | {
      /** The node went away; reconnecting starts. */
      type: 'disconnect'
      /** The connection's id, as {@link App.connect} resolved with it. */
      connection: number
    }
  | {
      /** An attempt to reach the node again starts. */
      type: 'reconnecting'
      /** The connection's id, as {@link App.connect} resolved with it. */
      connection: number
      /** The attempt, from 1. */
      attempt: number
    }
  | {
      /** The connection is back, with its subscriptions, routes and sessions. */
      type: 'reconnect'
      /** The connection's id, as {@link App.connect} resolved with it. */
      connection: number
    }
  | {
      /** Reconnecting gave up: the connection is gone. */
      type: 'error'
      /** The connection's id, as {@link App.connect} resolved with it. */
      connection: number
      /** Why (`CONNECT`). */
      error: SlimError
    }

/** The facade's form of a status the addon reported. */
export function appStatus(status: ConnectionStatus): AppStatus {
  const { type, connection } = status
  switch (type) {
    case 'reconnecting':
      return { type, connection, attempt: status.attempt ?? 0 }
    case 'error':
      return { type, connection, error: fromInfo(status.error ?? undefined) }
    default:
      return { type, connection }
  }
}

/**
 * An app's statuses on their way to its events and its {@link App.status} loops. The
 * loops are fed apart from the app's own events, whose `error` would end them.
 */
export class Statuses {
  readonly #app: EventEmitter
  readonly #loops = new EventEmitter()
  #watching = false
  #closed = false

  constructor(app: EventEmitter) {
    this.#app = app
  }

  /** Starts reporting; from then on the addon's callback keeps Node running until close. */
  watch(native: NativeApp): void {
    if (this.#watching) return
    this.#watching = true
    native.watchStatuses((status) => this.#report(appStatus(status)))
  }

  #report(status: AppStatus): void {
    this.#loops.emit('status', status)
    this.#app.emit('status', status)
    // Each status under its own type; TypeScript cannot pair them through a union.
    if (status.type !== 'error') this.#app.emit(status.type, status)
    else if (this.#app.listenerCount('error') > 0) this.#app.emit('error', status.error, status)
  }

  async *loop(closed: boolean, signal: AbortSignal | undefined): AsyncGenerator<AppStatus> {
    if (closed) return
    try {
      for await (const [status] of on(this.#loops, 'status', { signal, close: ['close'] })) {
        yield status as AppStatus
      }
    } catch (error) {
      throw signal?.aborted ? abortError(signal, 'status') : error
    }
  }

  /** Ends the loops and emits the app's `close`, once. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#loops.emit('close')
    this.#app.emit('close')
  }
}
