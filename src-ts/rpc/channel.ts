/**
 * The calling side of slimrpc: {@link RpcChannel}. Requests and answers are bytes; a
 * streamed side is an (async) iterable. Upstream's Rust channel does the wire, the
 * deadlines and the status codes; this adds iterables, AbortSignal and typed errors.
 */
import type { RpcChannel as NativeChannel } from '../../index.js'
import { type App, nativeApp } from '../core/app.js'
import { callSync, RpcError } from '../core/errors.js'
import { invalid, plainOptions, text } from '../core/input.js'
import type { Payload } from '../core/message.js'
import { addon } from '../core/native.js'
import { Waiting, waiting } from '../core/wait.js'
import { bytes, Call, type CallOptions, type GroupAnswer, groupAnswer, type Requests } from './call.js'
import type { ChannelLike } from './codegen.js'
import { StubCalls } from './stubs.js'

/**
 * Options of a channel.
 *
 * @example
 * ```ts
 * const channel = new RpcChannel(app, 'example/ns/greeter', { connection: 0 })
 * ```
 * @group RPC
 */
export interface ChannelOptions {
  /** Which of the app's connections carries the calls (default: its first). */
  connection?: number
}

/**
 * Calls to a remote slimrpc service: to one server (`new RpcChannel(app, 'org/ns/service')`)
 * or, given several names, to every member of a group at once (the `multicast*` calls,
 * which yield each member's answer). The session is set up on the first call, with MLS,
 * and kept for the next ones. Also the {@link ChannelLike} that generated stubs take.
 *
 * @example
 * ```ts
 * const channel = new RpcChannel(app, 'example/ns/greeter')
 * const reply = await channel.unary('example.Greeter', 'SayHello', 'world', { timeout: 1_000 })
 * for await (const tick of channel.unaryStream('example.Greeter', 'CountDown', '3')) console.log(tick)
 * ```
 * @group RPC
 */
export class RpcChannel implements ChannelLike {
  readonly #native: NativeChannel
  readonly #stubs = new StubCalls({
    unary: (...args) => this.unary(...args),
    open: (shape, group, service, method, request, options) => {
      if (group) this.#inGroup(shape)
      else this.#pointToPoint(shape)
      return this.#start(service, method, request, undefined, options)
    },
  })

  /**
   * A channel to one server, or to a group given several names.
   *
   * @param app - a connected app
   * @param remote - the server's name, or the group members' names
   * @param options - which connection to use
   */
  constructor(app: App, remote: string | readonly string[], options?: ChannelOptions) {
    const { connection } = plainOptions(options ?? {}, 'channel options')
    const group = typeof remote !== 'string'
    const members = group ? [...remote].map((name) => text(name, 'a member name')) : [text(remote, 'the remote name')]
    this.#native = callSync(() => new addon.RpcChannel(nativeApp(app), members, group, connection))
  }

  /** True for a channel to a group (made with several names). */
  get group(): boolean {
    return this.#native.group
  }

  /** One request, one answer. */
  unary(service: string, method: string, request: Payload, options?: CallOptions): Promise<Uint8Array> {
    this.#pointToPoint('unary')
    const settings = callSettings(options)
    // The call's timeout is its deadline, which upstream's slimrpc enforces on both
    // sides (DEADLINE_EXCEEDED); the signal stops it.
    return waiting(options && { signal: options.signal }, 'the call', (wait) =>
      this.#native.unary(service, method, bytes(request), settings, wait),
    )
  }

  /** One request, a stream of answers. */
  unaryStream(service: string, method: string, request: Payload, options?: CallOptions): AsyncIterable<Uint8Array> {
    this.#pointToPoint('unaryStream')
    return dataOf(this.#start(service, method, bytes(request), undefined, options), 'unaryStream')
  }

  /** A stream of requests, one answer. */
  async streamUnary(service: string, method: string, requests: Requests, options?: CallOptions): Promise<Uint8Array> {
    this.#pointToPoint('streamUnary')
    for await (const answer of dataOf(this.#start(service, method, undefined, requests, options), 'streamUnary')) {
      return answer
    }
    throw new RpcError('INTERNAL', 'the server ended the call without an answer')
  }

  /** Streams both ways: requests are sent while answers arrive. */
  streamStream(service: string, method: string, requests: Requests, options?: CallOptions): AsyncIterable<Uint8Array> {
    this.#pointToPoint('streamStream')
    return dataOf(this.#start(service, method, undefined, requests, options), 'streamStream')
  }

  /** One request to every member; yields each member's answer. */
  multicastUnary(service: string, method: string, request: Payload, options?: CallOptions): AsyncIterable<GroupAnswer> {
    this.#inGroup('multicastUnary')
    return groupAnswers(this.#start(service, method, bytes(request), undefined, options))
  }

  /** One request to every member; yields every answer of every member's stream. */
  multicastUnaryStream(
    service: string,
    method: string,
    request: Payload,
    options?: CallOptions,
  ): AsyncIterable<GroupAnswer> {
    this.#inGroup('multicastUnaryStream')
    return groupAnswers(this.#start(service, method, bytes(request), undefined, options))
  }

  /** A stream of requests to every member; yields each member's answer. */
  multicastStreamUnary(
    service: string,
    method: string,
    requests: Requests,
    options?: CallOptions,
  ): AsyncIterable<GroupAnswer> {
    this.#inGroup('multicastStreamUnary')
    return groupAnswers(this.#start(service, method, undefined, requests, options))
  }

  /** A stream of requests to every member; yields every member's answers. */
  multicastStreamStream(
    service: string,
    method: string,
    requests: Requests,
    options?: CallOptions,
  ): AsyncIterable<GroupAnswer> {
    this.#inGroup('multicastStreamStream')
    return groupAnswers(this.#start(service, method, undefined, requests, options))
  }

  /** The server's verified identity, once a call set up the session; point to point only. */
  async peer(): Promise<
    | {
        /** The server's identity subject. */
        subject: string
        /** Who issued it, when known. */
        issuer?: string | undefined
      }
    | undefined
  > {
    return (await this.#native.peer()) ?? undefined
  }

  /** Ends the channel's session; a later call sets up a new one. */
  async close(): Promise<void> {
    await waiting(undefined, 'close', (wait) => this.#native.close(wait))
  }

  #pointToPoint(what: string): void {
    if (this.group) throw invalid(what, 'needs a point-to-point channel; a group channel makes multicast calls')
  }

  #inGroup(what: string): void {
    if (!this.group) throw invalid(what, 'needs a group channel (made with several member names)')
  }

  #start(
    service: string,
    method: string,
    request: Uint8Array | undefined,
    requests: Requests | undefined,
    options: CallOptions | undefined,
  ): Call {
    const settings = callSettings(options)
    const waiting = Waiting.of(options && { signal: options.signal }, 'the call')
    let native: ReturnType<NativeChannel['open']>
    try {
      native = this.#native.open(text(service, 'service'), text(method, 'method'), request, settings, waiting.wait)
    } catch (error) {
      waiting.release()
      throw waiting.failure(error)
    }
    const call = new Call(native, waiting)
    if (requests !== undefined) call.pump(requests)
    return call
  }

  // The ChannelLike methods generated stubs call (see stubs.ts).

  /** @internal */
  callUnaryAsync(...args: Parameters<ChannelLike['callUnaryAsync']>) {
    return this.#stubs.callUnaryAsync(...args)
  }

  /** @internal */
  callUnaryStreamAsync(...args: Parameters<ChannelLike['callUnaryStreamAsync']>) {
    return this.#stubs.callUnaryStreamAsync(...args)
  }

  /** @internal */
  callStreamUnary(...args: Parameters<ChannelLike['callStreamUnary']>) {
    return this.#stubs.callStreamUnary(...args)
  }

  /** @internal */
  callStreamStream(...args: Parameters<ChannelLike['callStreamStream']>) {
    return this.#stubs.callStreamStream(...args)
  }

  /** @internal */
  callMulticastUnaryAsync(...args: Parameters<ChannelLike['callMulticastUnaryAsync']>) {
    return this.#stubs.callMulticastUnaryAsync(...args)
  }

  /** @internal */
  callMulticastUnaryStreamAsync(...args: Parameters<ChannelLike['callMulticastUnaryStreamAsync']>) {
    return this.#stubs.callMulticastUnaryStreamAsync(...args)
  }

  /** @internal */
  callMulticastStreamUnary(...args: Parameters<ChannelLike['callMulticastStreamUnary']>) {
    return this.#stubs.callMulticastStreamUnary(...args)
  }

  /** @internal */
  callMulticastStreamStream(...args: Parameters<ChannelLike['callMulticastStreamStream']>) {
    return this.#stubs.callMulticastStreamStream(...args)
  }
}

function callSettings(options: CallOptions | undefined): { timeout?: number; metadata?: Record<string, string> } {
  if (options === undefined) return {}
  const { timeout, metadata } = plainOptions(options, 'call options')
  return { timeout, metadata }
}

async function* dataOf(call: Call, what: string): AsyncGenerator<Uint8Array> {
  try {
    for (let answer = await call.next(); answer !== null; answer = await call.next()) {
      if (!answer.data) throw new RpcError('INTERNAL', `${what}: an answer without data`)
      yield answer.data
    }
  } finally {
    call.cancel()
  }
}

async function* groupAnswers(call: Call): AsyncGenerator<GroupAnswer> {
  try {
    for (let answer = await call.next(); answer !== null; answer = await call.next()) yield groupAnswer(answer)
  } finally {
    call.cancel()
  }
}
