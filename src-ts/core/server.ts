import type { Server as NativeServer, ServerOptions } from '../../index.js'
import { call } from './errors.js'
import { plainOptions } from './input.js'
import { addon } from './native.js'
import { type WaitOptions, waiting } from './wait.js'

export type { ServerOptions }

/**
 * A SLIM node running inside this process, which apps of this or other processes connect
 * to. Start one with {@link startServer}; stop it with {@link SlimServer.stop} (or
 * `await using`).
 *
 * @example
 * ```ts
 * import { createLocalApp, startServer } from 'slim-node'
 *
 * const node = await startServer({ endpoint: '127.0.0.1:0' })
 * const app = await createLocalApp({ local: 'agntcy/ns/alice', slim: { endpoint: node.url }, sharedSecret })
 * // ...
 * await app.close()
 * await node.stop()
 * ```
 * @group Server
 */
export class SlimServer {
  readonly #native: NativeServer

  /** @internal Use {@link startServer}. */
  constructor(native: NativeServer) {
    this.#native = native
  }

  /** `host:port` the node listens on; the real port when 0 was requested. */
  get endpoint(): string {
    return this.#native.endpoint
  }

  /** The URL apps pass to `connect`, e.g. `http://127.0.0.1:46357`. */
  get url(): string {
    return this.#native.url
  }

  /** True until the node stops. */
  get running(): boolean {
    return this.#native.running
  }

  /**
   * Resolves when the node has stopped, through {@link SlimServer.stop} or otherwise. A
   * running node does not keep Node.js alive by itself: a program that only serves awaits
   * this promise.
   *
   * @param options - How long to wait; the node keeps running when the wait ends.
   * @throws {SlimError} `TIMEOUT` or `ABORTED` when `timeout` or `signal` end the wait.
   * @example
   * ```ts
   * const node = await startServer()
   * process.once('SIGINT', () => void node.stop())
   * await node.stopped() // serves until Ctrl+C
   * ```
   */
  stopped(options?: WaitOptions): Promise<void> {
    return waiting(options, 'stopped', (wait) => this.#native.stopped(wait))
  }

  /**
   * Stops the node and closes every connection to it: apps connected to it lose their
   * connection. Idempotent. A stop that times out or is aborted goes on in the background.
   *
   * @param options - How long to wait for the stop.
   * @throws {SlimError} `SERVER` when the node fails to shut down cleanly, `TIMEOUT` or
   * `ABORTED` when `timeout` or `signal` end the wait.
   */
  stop(options?: WaitOptions): Promise<void> {
    return waiting(options, 'stop', (wait) => this.#native.stop(wait))
  }

  /** Stops the node at the end of an `await using` block, as {@link SlimServer.stop} does. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}

/**
 * Starts an embedded SLIM node and resolves once it accepts connections. It listens on
 * `127.0.0.1:46357` unless `endpoint` says otherwise (port 0 picks a free port), serves
 * TLS when given a certificate, and links to `peers` when given some.
 *
 * @param options - Where to listen, TLS, and the nodes to link to.
 * @returns The running node; its {@link SlimServer.url} is what apps connect to.
 * @throws {SlimError} `SERVER` when the node cannot start or listen (for example the
 * address is in use), `INVALID_ARGUMENT` for malformed options or unusable TLS settings.
 * @example
 * ```ts
 * import { startServer } from 'slim-node'
 *
 * const node = await startServer({
 *   endpoint: '0.0.0.0:46357',
 *   tls: { certFile: 'server.pem', keyFile: 'server.key', clientCaFile: 'ca.pem' },
 * })
 * console.log(`SLIM node listening on ${node.url}`)
 * ```
 * @group Server
 */
export async function startServer(options: ServerOptions = {}): Promise<SlimServer> {
  const copied = plainOptions(options, 'startServer options')
  return new SlimServer(await call(() => addon.startServer(copied)))
}
