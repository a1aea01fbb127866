/**
 * The serving side of slimrpc: {@link RpcServer}. Upstream's Rust server receives the
 * calls, demultiplexes them and enforces their deadlines; each call reaches JavaScript
 * as bytes with its context, and the handler's answer (or thrown {@link RpcError}) goes
 * back the same way.
 */
import type { IncomingCall, RpcServer as NativeServer, RpcCallContext, RpcCode, RpcShape } from '../../index.js'
import { type App, nativeApp } from '../core/app.js'
import { callSync, RpcError, toSlimError } from '../core/errors.js'
import { bytesOrText, plainOptions, text } from '../core/input.js'
import type { Payload } from '../core/message.js'
import { addon } from '../core/native.js'
import {
  arrayBufferOf,
  type ContextLike,
  type RequestStreamLike,
  type ResponseSinkLike,
  type ServerLike,
  type StreamStreamHandler,
  type StreamUnaryHandler,
  type UnaryStreamHandler,
  type UnaryUnaryHandler,
  viewOf,
} from './codegen.js'
import { toRpcError } from './status.js'

/**
 * What a handler knows about its call.
 *
 * @example
 * ```ts
 * server.registerUnaryUnary('example.Greeter', 'SayHello', async (request, context) => {
 *   console.log(context.peer?.subject, context.metadata['trace-id'], context.remainingMs)
 *   return `hello ${new TextDecoder().decode(request)}`
 * })
 * ```
 * @group RPC
 */
export class RpcContext implements ContextLike {
  /** The SLIM session the call came on (shared by the caller's calls). */
  readonly sessionId: string
  /** The caller's metadata, with slimrpc's own keys (`service`, `method`, `rpc-id`, …). */
  readonly metadata: Readonly<Record<string, string>>
  /** When the caller stops waiting; the call is cancelled then. */
  readonly deadline: Date
  /** The caller's verified identity: its MLS credential's subject and issuer. */
  readonly peer: ContextLike['peer']
  #signal: AbortSignal | undefined

  /** @internal */
  constructor(context: RpcCallContext) {
    this.sessionId = context.sessionId
    this.metadata = Object.freeze({ ...context.metadata })
    this.deadline = new Date(context.deadline)
    this.peer =
      context.peerSubject === undefined ? undefined : { subject: context.peerSubject, issuer: context.peerIssuer }
  }

  /** Milliseconds left before the deadline (0 once it passed). */
  get remainingMs(): number {
    return Math.max(0, this.deadline.getTime() - Date.now())
  }

  /** Aborts at the deadline: pass it on to work the handler starts. */
  get signal(): AbortSignal {
    this.#signal ??= AbortSignal.timeout(Math.min(this.remainingMs, 2_147_483_647))
    return this.#signal
  }
}

/**
 * A unary method: one request, one answer.
 *
 * @example
 * ```ts
 * const echo: UnaryMethod = (request) => request
 * ```
 * @group RPC
 */
export type UnaryMethod = (request: Uint8Array, context: RpcContext) => Payload | Promise<Payload>
/**
 * A server-streaming method: one request, answers as an (async) iterable.
 *
 * @example
 * ```ts
 * const count: UnaryStreamMethod = function* (request) {
 *   for (let i = Number(new TextDecoder().decode(request)); i > 0; i--) yield String(i)
 * }
 * ```
 * @group RPC
 */
export type UnaryStreamMethod = (request: Uint8Array, context: RpcContext) => AsyncIterable<Payload> | Iterable<Payload>
/**
 * A client-streaming method: requests as an async iterable, one answer.
 *
 * @example
 * ```ts
 * const total: StreamUnaryMethod = async (requests) => {
 *   let bytes = 0
 *   for await (const request of requests) bytes += request.byteLength
 *   return String(bytes)
 * }
 * ```
 * @group RPC
 */
export type StreamUnaryMethod = (requests: AsyncIterable<Uint8Array>, context: RpcContext) => Payload | Promise<Payload>
/**
 * A bidirectional-streaming method: requests in, answers out, both as iterables.
 *
 * @example
 * ```ts
 * const echo: StreamStreamMethod = async function* (requests) {
 *   for await (const request of requests) yield request
 * }
 * ```
 * @group RPC
 */
export type StreamStreamMethod = (
  requests: AsyncIterable<Uint8Array>,
  context: RpcContext,
) => AsyncIterable<Payload> | Iterable<Payload>

/**
 * Options of a server.
 *
 * @example
 * ```ts
 * const server = new RpcServer(app, 'example/ns/greeter', { connection: 0 })
 * ```
 * @group RPC
 */
export interface RpcServerOptions {
  /** Which of the app's connections the server's name is subscribed on (default: its first). */
  connection?: number
}

type Runner = (call: IncomingCall, context: RpcContext) => Promise<void>

/**
 * Serves slimrpc methods under a SLIM name (by default the app's). Register every method,
 * then `serve()`: it takes every session that invites the app and resolves once the
 * server (or the app) closes. Handlers run concurrently, one call each. Also the
 * {@link ServerLike} that generated `register…Servicer` functions take.
 *
 * @example
 * ```ts
 * const server = new RpcServer(app, 'example/ns/greeter')
 * server.registerUnaryUnary('example.Greeter', 'SayHello', (request) => `hello ${request}`)
 * server.registerUnaryStream('example.Greeter', 'CountDown', function* () { yield '3'; yield '2'; yield '1' })
 * process.once('SIGINT', () => server.close())
 * await server.serve()
 * ```
 * @group RPC
 */
export class RpcServer implements ServerLike {
  readonly #native: NativeServer
  readonly #runners: Runner[] = []
  #closing: Promise<void> | undefined

  /**
   * A server for `name` on `app`.
   *
   * @param app - a connected app; the server takes all the sessions it is invited to
   * @param name - the name callers use, `org/ns/service` (default: the app's)
   * @param options - which connection to subscribe the name on
   */
  constructor(app: App, name?: string, options?: RpcServerOptions) {
    const { connection } = plainOptions(options ?? {}, 'server options')
    const served = name === undefined ? app.name : text(name, 'the server name')
    this.#native = callSync(() => new addon.RpcServer(nativeApp(app), served, connection))
  }

  /** Registers a unary method (a function, or a generated handler object). */
  registerUnaryUnary(service: string, method: string, handler: UnaryMethod | UnaryUnaryHandler): void {
    const run: UnaryMethod =
      typeof handler === 'function'
        ? handler
        : async (request, context) => viewOf(await handler.handle(arrayBufferOf(request), context))
    this.#register(service, method, 'unary-unary', async (call, context) => {
      call.respond(bytes(await run(call.takeRequest() ?? new Uint8Array(), context)))
    })
  }

  /** Registers a server-streaming method. */
  registerUnaryStream(service: string, method: string, handler: UnaryStreamMethod | UnaryStreamHandler): void {
    this.#register(service, method, 'unary-stream', async (call, context) => {
      const request = call.takeRequest() ?? new Uint8Array()
      if (typeof handler === 'function') await stream(call, handler(request, context))
      else await handler.handle(arrayBufferOf(request), context, sinkOf(call))
    })
  }

  /** Registers a client-streaming method. */
  registerStreamUnary(service: string, method: string, handler: StreamUnaryMethod | StreamUnaryHandler): void {
    this.#register(service, method, 'stream-unary', async (call, context) => {
      const answer =
        typeof handler === 'function'
          ? await handler(requestsOf(call), context)
          : viewOf(await handler.handle(requestStreamOf(call), context))
      call.respond(bytes(answer))
    })
  }

  /** Registers a bidirectional-streaming method. */
  registerStreamStream(service: string, method: string, handler: StreamStreamMethod | StreamStreamHandler): void {
    this.#register(service, method, 'stream-stream', async (call, context) => {
      if (typeof handler === 'function') await stream(call, handler(requestsOf(call), context))
      else await handler.handle(requestStreamOf(call), context, sinkOf(call))
    })
  }

  /**
   * Serves until {@link RpcServer.close} or the app closes. Rejects with `BUSY` while the
   * app itself listens for sessions.
   */
  async serve(): Promise<void> {
    const serving = callSync(() => this.#native.serve())
    const dispatching = (async () => {
      for (let call = await this.#native.nextCall(); call !== null; call = await this.#native.nextCall()) {
        void this.#dispatch(call)
      }
    })()
    try {
      await Promise.all([serving, dispatching])
    } catch (error) {
      throw toSlimError(error)
    }
  }

  /**
   * Stops serving: no new calls; calls in progress finish first (queued ones that no
   * handler started get `UNAVAILABLE`). Closing the sessions goes on in the background
   * once the calls are done, so this does not wait on callers that already left.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#native.close().catch((error: unknown) => {
      throw toSlimError(error)
    })
    return this.#closing
  }

  /** Closes the server (`await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #register(service: string, method: string, shape: `${RpcShape}`, runner: Runner): void {
    const handler = callSync(() =>
      this.#native.register(text(service, 'service'), text(method, 'method'), shape as RpcShape),
    )
    this.#runners[handler] = runner
  }

  async #dispatch(call: IncomingCall): Promise<void> {
    try {
      const runner = this.#runners[call.handler]
      if (!runner) throw new RpcError('UNIMPLEMENTED', 'no handler')
      await runner(call, new RpcContext(call.context))
      // A streaming answer the handler left open ends with it.
      call.end()
    } catch (error) {
      fail(call, error)
    }
  }
}

function bytes(answer: Payload): Uint8Array {
  const checked = bytesOrText(answer, 'an answer')
  return typeof checked === 'string' ? Buffer.from(checked) : checked
}

/** Answers the caller with what the handler threw, as a status (see `toRpcError`). */
function fail(call: IncomingCall, error: unknown): void {
  const { status, message, details } = toRpcError(error)
  call.fail(status as RpcCode, message, details)
}

async function stream(call: IncomingCall, answers: AsyncIterable<Payload> | Iterable<Payload>): Promise<void> {
  for await (const answer of answers) {
    const data = bytes(answer)
    if (!call.trySend(data)) await call.send(data)
  }
  call.end()
}

async function* requestsOf(call: IncomingCall): AsyncGenerator<Uint8Array> {
  for (let request = await call.nextRequest(); request !== null; request = await call.nextRequest()) {
    yield request
  }
}

function requestStreamOf(call: IncomingCall): RequestStreamLike {
  return {
    nextAsync: async () => {
      try {
        const request = await call.nextRequest()
        return request === null ? { tag: 'End' } : { tag: 'Data', inner: [request] }
      } catch (error) {
        const slimError = toSlimError(error)
        const rpcError = slimError instanceof RpcError ? slimError : new RpcError('INTERNAL', slimError.message)
        return { tag: 'Error', inner: [rpcError] }
      }
    },
  }
}

function sinkOf(call: IncomingCall): ResponseSinkLike {
  return {
    sendAsync: (message) => call.send(viewOf(message)),
    sendErrorAsync: async (error) => fail(call, error),
    closeAsync: async () => call.end(),
  }
}
