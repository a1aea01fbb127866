/**
 * The calling side of slimrpc: {@link RpcChannel}. Requests and answers are bytes; a
 * streamed side is an (async) iterable. Upstream's Rust channel does the wire, the
 * deadlines and the status codes; this adds iterables, AbortSignal and typed errors.
 */
import type { CancelToken, RpcChannel as NativeChannel, RpcAnswer, RpcCall } from '../index.js'
import { type App, nativeApp } from './app.js'
import { abortError, waitOptions, withSignal } from './cancel.js'
import { callSync, RpcError, type SlimError, toSlimError } from './errors.js'
import { bytesOrText, invalid, plainOptions, text } from './input.js'
import type { Payload } from './message.js'
import { addon } from './native.js'
import {
  type BidiStreamLike,
  type ChannelLike,
  type MulticastStreamMessage,
  type RequestWriterLike,
  recordOf,
  type StreamMessage,
  type StreamReaderLike,
  viewOf,
} from './rpc-stream.js'

/**
 * Options of one call.
 *
 * @example
 * ```ts
 * const answer = await channel.unary('example.Greeter', 'SayHello', request, {
 *   timeout: 2_000,
 *   metadata: { 'trace-id': 'abc' },
 *   signal: AbortSignal.timeout(5_000),
 * })
 * ```
 * @group RPC
 */
export interface CallOptions {
  /**
   * Milliseconds the call may take. The server gets the same deadline; when it passes
   * the call fails with an {@link RpcError} of status `DEADLINE_EXCEEDED`.
   */
  timeout?: number
  /** Stops the call: it rejects with `ABORTED`. */
  signal?: AbortSignal
  /** Sent with the request; the handler reads it as `context.metadata`. */
  metadata?: Record<string, string>
}

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
 * One member's answer in a group call: `data`, or the member's own `error`.
 *
 * @example
 * ```ts
 * for await (const answer of group.multicastUnary('example.Health', 'Check', '')) {
 *   console.log(answer.source, answer.error ? answer.error.status : 'ok')
 * }
 * ```
 * @group RPC
 */
export interface GroupAnswer {
  /** The member, `org/ns/app`. */
  readonly source: string
  /** The member's verified identity (with MLS). */
  readonly subject: string | undefined
  /** Who issued that identity, when known. */
  readonly issuer: string | undefined
  /** The answer, unless the member failed. */
  readonly data: Uint8Array | undefined
  /** The member's failure (its status), instead of an answer. */
  readonly error: RpcError | undefined
}

/**
 * Requests of a streaming call: any iterable or async iterable of bytes or strings.
 *
 * @example
 * ```ts
 * const requests: Requests = ['1', '2', '3']
 * ```
 * @group RPC
 */
export type Requests = AsyncIterable<Payload> | Iterable<Payload>

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
    return withSignal(waitOptions(options && { signal: options.signal }, 'the call'), 'the call', (_, token) =>
      this.#native.unary(service, method, bytes(request), settings, token),
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
    await withSignal(undefined, 'close', () => this.#native.close())
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
    const { signal } = waitOptions(options && { signal: options.signal }, 'the call')
    if (signal?.aborted) throw abortError(signal, 'the call')
    const native = callSync(() =>
      this.#native.open(text(service, 'service'), text(method, 'method'), request, settings),
    )
    const call = new Call(native, signal)
    if (requests !== undefined) call.pump(requests)
    return call
  }

  // The ChannelLike methods generated stubs call: timeouts in milliseconds.

  /** @internal For generated stubs; see {@link RpcChannel.unary}. */
  callUnaryAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<Uint8Array> {
    return this.unary(service, method, viewOf(request), { timeout, metadata: recordOf(metadata) })
  }

  /** @internal For generated stubs; see {@link RpcChannel.unaryStream}. */
  async callUnaryStreamAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike> {
    this.#pointToPoint('unaryStream')
    const call = this.#start(service, method, viewOf(request), undefined, { timeout, metadata: recordOf(metadata) })
    return { nextAsync: () => call.step() }
  }

  /** @internal For generated stubs; see {@link RpcChannel.streamUnary}. */
  callStreamUnary(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): RequestWriterLike {
    const bidi = this.callStreamStream(service, method, timeout, metadata)
    return {
      sendAsync: (message) => bidi.sendAsync(message),
      finalizeStreamAsync: async () => {
        await bidi.closeSendAsync()
        const step = await bidi.recvAsync()
        if (step.tag === 'Data') return step.inner[0]
        throw step.tag === 'Error' ? step.inner[0] : new RpcError('INTERNAL', 'the server sent no answer')
      },
    }
  }

  /** @internal For generated stubs; see {@link RpcChannel.streamStream}. */
  callStreamStream(service: string, method: string, timeout?: number, metadata?: Map<string, string>): BidiStreamLike {
    this.#pointToPoint('streamStream')
    const call = this.#start(service, method, undefined, undefined, { timeout, metadata: recordOf(metadata) })
    return call.bidi(() => call.step())
  }

  /** @internal For generated stubs; see {@link RpcChannel.multicastUnary}. */
  async callMulticastUnaryAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>> {
    this.#inGroup('multicastUnary')
    const call = this.#start(service, method, viewOf(request), undefined, { timeout, metadata: recordOf(metadata) })
    return { nextAsync: () => call.groupStep() }
  }

  /** @internal For generated stubs; see {@link RpcChannel.multicastUnaryStream}. */
  callMulticastUnaryStreamAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>> {
    return this.callMulticastUnaryAsync(service, method, request, timeout, metadata)
  }

  /** @internal For generated stubs; see {@link RpcChannel.multicastStreamUnary}. */
  callMulticastStreamUnary(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage> {
    this.#inGroup('multicastStreamUnary')
    const call = this.#start(service, method, undefined, undefined, { timeout, metadata: recordOf(metadata) })
    return call.bidi(() => call.groupStep())
  }

  /** @internal For generated stubs; see {@link RpcChannel.multicastStreamStream}. */
  callMulticastStreamStream(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage> {
    return this.callMulticastStreamUnary(service, method, timeout, metadata)
  }
}

function bytes(payload: Payload): Uint8Array {
  const checked = bytesOrText(payload, 'a request')
  return typeof checked === 'string' ? Buffer.from(checked) : checked
}

function callSettings(options: CallOptions | undefined): { timeout?: number; metadata?: Record<string, string> } {
  if (options === undefined) return {}
  const { timeout, metadata } = plainOptions(options, 'call options')
  return { timeout, metadata }
}

/** One call on the native side, with the caller's signal wired to it. */
class Call {
  readonly #native: RpcCall
  readonly #signal: AbortSignal | undefined
  readonly #token: CancelToken | undefined
  /** Takes the abort listener off the caller's signal, which may outlive many calls. */
  readonly #detach: () => void = () => {}
  #failed: SlimError | undefined

  constructor(native: RpcCall, signal: AbortSignal | undefined) {
    this.#native = native
    this.#signal = signal
    if (signal) {
      const token = new addon.CancelToken()
      const abort = () => {
        token.cancel()
        native.cancel()
      }
      signal.addEventListener('abort', abort, { once: true })
      this.#detach = () => signal.removeEventListener('abort', abort)
      this.#token = token
    }
  }

  /** Sends every request, then ends them; a failure ends the call. */
  pump(requests: Requests): void {
    const sending = (async () => {
      for await (const request of requests) await this.send(bytes(request))
      this.#native.closeSend()
    })()
    sending.catch((error: unknown) => {
      this.#failed ??= toSlimError(error)
      this.#native.cancel()
    })
  }

  async send(request: Uint8Array): Promise<void> {
    try {
      await this.#native.send(request, this.#token)
    } catch (error) {
      throw this.#mapped(error)
    }
  }

  closeSend(): void {
    this.#native.closeSend()
  }

  cancel(): void {
    this.#detach()
    this.#native.cancel()
  }

  /** The next answer, `null` at the end; a failure of the whole call throws. */
  async next(): Promise<RpcAnswer | null> {
    try {
      // An answer already here is read without a promise from the addon.
      const answer = this.#native.tryNext() ?? (await this.#native.next(this.#token))
      if (answer === null) {
        this.#detach()
        if (this.#failed) throw this.#failed
      }
      return answer
    } catch (error) {
      this.#detach()
      throw this.#mapped(error)
    }
  }

  async step(): Promise<StreamMessage> {
    try {
      const answer = await this.next()
      return answer?.data ? { tag: 'Data', inner: [answer.data] } : { tag: 'End' }
    } catch (error) {
      return { tag: 'Error', inner: [asRpcError(error)] }
    }
  }

  async groupStep(): Promise<MulticastStreamMessage> {
    try {
      const answer = await this.next()
      if (answer === null) return { tag: 'End' }
      const member = groupAnswer(answer)
      if (member.error) return { tag: 'Error', inner: { error: member.error } }
      const context = { source: member.source, subject: member.subject, issuer: member.issuer }
      return { tag: 'Data', inner: { item: { context, message: member.data ?? new Uint8Array() } } }
    } catch (error) {
      return { tag: 'Error', inner: { error: asRpcError(error) } }
    }
  }

  bidi<Message>(recv: () => Promise<Message>): BidiStreamLike<Message> {
    return {
      sendAsync: (message) => this.send(viewOf(message)),
      closeSendAsync: async () => this.closeSend(),
      recvAsync: recv,
    }
  }

  #mapped(error: unknown): SlimError {
    const slimError = toSlimError(error)
    return slimError.code === 'ABORTED' && this.#signal ? abortError(this.#signal, 'the call') : slimError
  }
}

/** Generated code expects every failure of a stream as an RpcError. */
function asRpcError(error: unknown): RpcError {
  const slimError = toSlimError(error)
  if (slimError instanceof RpcError) return slimError
  return new RpcError(slimError.code === 'ABORTED' ? 'CANCELLED' : 'UNAVAILABLE', slimError.message, {
    cause: slimError,
  })
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

function groupAnswer(answer: RpcAnswer): GroupAnswer {
  const { failure } = answer
  const source = answer.source ?? ''
  const error = failure && new RpcError(failure.status, failure.message, { details: failure.details, origin: source })
  return { source, subject: answer.subject, issuer: answer.issuer, data: answer.data, error }
}

async function* groupAnswers(call: Call): AsyncGenerator<GroupAnswer> {
  try {
    for (let answer = await call.next(); answer !== null; answer = await call.next()) yield groupAnswer(answer)
  } finally {
    call.cancel()
  }
}
