import type { ConnectionStatus } from '../index.js'
import { fromInfo, type SlimError } from './errors.js'

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
