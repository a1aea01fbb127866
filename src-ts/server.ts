import type { Server as NativeServer, ServerOptions } from '../index.js'
import { type WaitOptions, waitFor } from './cancel.js'
import { call } from './errors.js'
import { plainOptions } from './input.js'
import { addon } from './native.js'

export type { ServerOptions }

/** A SLIM node running inside this process. */
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

  get running(): boolean {
    return this.#native.running
  }

  /**
   * Resolves when the node stops. A running node does not keep Node.js alive by
   * itself; a program that only serves awaits this.
   */
  closed(options?: WaitOptions): Promise<void> {
    return waitFor(options, 'closed', () => this.#native.closed())
  }

  /** Stops the node; connected apps lose their connection. Idempotent. */
  stop(options?: WaitOptions): Promise<void> {
    return waitFor(options, 'stop', () => this.#native.stop())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}

/** Starts an embedded SLIM node (default `127.0.0.1:46357`; port 0 picks a free one). */
export async function startServer(options: ServerOptions = {}): Promise<SlimServer> {
  const copied = plainOptions(options, 'startServer options')
  return new SlimServer(await call(() => addon.startServer(copied)))
}
