// The interfaces slimrpc's code generator (`protoc-gen-slimrpc-node`) programs against:
// a channel, a server, a handler's context and its streams. slim-node's RpcChannel and
// RpcServer satisfy them, so generated stubs run on slim-node with
// `bindings_import=slim-node`.
import type { RpcError } from '../core/errors.js'
import type { MulticastStreamMessage, StreamMessage } from './stream.js'

/**
 * Bytes as generated code passes them: an exact ArrayBuffer or a view.
 *
 * @example
 * ```ts
 * const bytes: Bytes = new Uint8Array([1, 2])
 * ```
 * @group RPC
 */
export type Bytes = ArrayBuffer | Uint8Array

/**
 * What a handler knows about its call; {@link RpcContext} is the one slim-node passes.
 *
 * @example
 * ```ts
 * const handler = { handle: async (request: ArrayBuffer, context: ContextLike) => request }
 * ```
 * @group RPC
 */
export interface ContextLike {
  /** The SLIM session the call came on (shared by the caller's calls). */
  readonly sessionId: string
  /** The caller's metadata, with slimrpc's own keys (`service`, `method`, `rpc-id`, …). */
  readonly metadata: Readonly<Record<string, string>>
  /** When the caller stops waiting; the call is cancelled then. */
  readonly deadline: Date
  /** The caller's verified identity: its MLS credential's subject and issuer. */
  readonly peer:
    | {
        /** The identity's subject (for a shared secret, the app's name and a suffix). */
        readonly subject: string
        /** Who issued it, when known. */
        readonly issuer: string | undefined
      }
    | undefined
  /** Milliseconds left before the deadline (0 once it passed). */
  readonly remainingMs: number
  /** Aborts at the deadline: pass it on to work the handler starts. */
  readonly signal: AbortSignal
}

/**
 * Reads a stream step by step.
 *
 * @example
 * ```ts
 * for (let step = await reader.nextAsync(); step.tag === 'Data'; step = await reader.nextAsync()) {}
 * ```
 * @group RPC
 */
export interface StreamReaderLike<Message = StreamMessage> {
  /** The next step; after `End` or `Error` there are no more. */
  nextAsync(): Promise<Message>
}

/**
 * A handler's requests, step by step.
 *
 * @example
 * ```ts
 * const first = await requests.nextAsync()
 * ```
 * @group RPC
 */
export type RequestStreamLike = StreamReaderLike<StreamMessage>

/**
 * Where a streaming handler writes its answers.
 *
 * @example
 * ```ts
 * await sink.sendAsync(new Uint8Array([1]))
 * await sink.closeAsync()
 * ```
 * @group RPC
 */
export interface ResponseSinkLike {
  /** Sends one message; waits while the queue is full. */
  sendAsync(message: Bytes): Promise<void>
  /** Ends the answers with this error. */
  sendErrorAsync(error: RpcError): Promise<void>
  /** Ends the answers normally. */
  closeAsync(): Promise<void>
}

/**
 * The request side of a client-streaming call.
 *
 * @example
 * ```ts
 * await writer.sendAsync(bytes)
 * const answer = await writer.finalizeStreamAsync()
 * ```
 * @group RPC
 */
export interface RequestWriterLike {
  /** Sends one message; waits while the queue is full. */
  sendAsync(message: Bytes): Promise<void>
  /** Ends the requests and waits for the one answer. */
  finalizeStreamAsync(): Promise<Uint8Array>
}

/**
 * Both sides of a streaming call.
 *
 * @example
 * ```ts
 * await bidi.sendAsync(bytes)
 * await bidi.closeSendAsync()
 * const step = await bidi.recvAsync()
 * ```
 * @group RPC
 */
export interface BidiStreamLike<Message = StreamMessage> {
  /** Sends one message; waits while the queue is full. */
  sendAsync(message: Bytes): Promise<void>
  /** Ends the requests; answers go on. */
  closeSendAsync(): Promise<void>
  /** The next answer step. */
  recvAsync(): Promise<Message>
}

/**
 * A handler of a unary method, as generated code registers it.
 *
 * @example
 * ```ts
 * const echo: UnaryUnaryHandler = { handle: async (request) => request }
 * ```
 * @group RPC
 */
export interface UnaryUnaryHandler {
  /** Answers one request. */
  handle(request: ArrayBuffer, context: ContextLike): Promise<Bytes>
}

/**
 * A handler of a server-streaming method, as generated code registers it.
 *
 * @example
 * ```ts
 * const twice: UnaryStreamHandler = {
 *   handle: async (request, _context, sink) => {
 *     await sink.sendAsync(request)
 *     await sink.sendAsync(request)
 *     await sink.closeAsync()
 *   },
 * }
 * ```
 * @group RPC
 */
export interface UnaryStreamHandler {
  /** Answers one request into `sink`, then closes it. */
  handle(request: ArrayBuffer, context: ContextLike, sink: ResponseSinkLike): Promise<void>
}

/**
 * A handler of a client-streaming method, as generated code registers it.
 *
 * @example
 * ```ts
 * const count: StreamUnaryHandler = {
 *   handle: async (requests) => {
 *     let n = 0
 *     while ((await requests.nextAsync()).tag === 'Data') n++
 *     return new Uint8Array([n])
 *   },
 * }
 * ```
 * @group RPC
 */
export interface StreamUnaryHandler {
  /** Reads the requests and answers once. */
  handle(requests: RequestStreamLike, context: ContextLike): Promise<Bytes>
}

/**
 * A handler of a bidirectional-streaming method, as generated code registers it.
 *
 * @example
 * ```ts
 * const echo: StreamStreamHandler = {
 *   handle: async (requests, _context, sink) => {
 *     for (let step = await requests.nextAsync(); step.tag === 'Data'; step = await requests.nextAsync()) {
 *       await sink.sendAsync(step.inner[0])
 *     }
 *     await sink.closeAsync()
 *   },
 * }
 * ```
 * @group RPC
 */
export interface StreamStreamHandler {
  /** Reads the requests and answers into `sink`. */
  handle(requests: RequestStreamLike, context: ContextLike, sink: ResponseSinkLike): Promise<void>
}

/**
 * What generated client stubs call: {@link RpcChannel} implements it (`timeout` in
 * milliseconds).
 *
 * @example
 * ```ts
 * const client = new GreeterClient(channel satisfies ChannelLike)
 * ```
 * @group RPC
 */
export interface ChannelLike {
  /** A unary call. */
  callUnaryAsync(
    service: string,
    method: string,
    request: Bytes,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<Uint8Array>
  /** A server-streaming call. */
  callUnaryStreamAsync(
    service: string,
    method: string,
    request: Bytes,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike>
  /** A client-streaming call. */
  callStreamUnary(service: string, method: string, timeout?: number, metadata?: Map<string, string>): RequestWriterLike
  /** A bidirectional-streaming call. */
  callStreamStream(service: string, method: string, timeout?: number, metadata?: Map<string, string>): BidiStreamLike
  /** A unary call to every group member. */
  callMulticastUnaryAsync(
    service: string,
    method: string,
    request: Bytes,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>>
  /** A server-streaming call to every group member. */
  callMulticastUnaryStreamAsync(
    service: string,
    method: string,
    request: Bytes,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>>
  /** A client-streaming call to every group member. */
  callMulticastStreamUnary(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage>
  /** A bidirectional-streaming call to every group member. */
  callMulticastStreamStream(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage>
}

/**
 * What generated registration functions call: {@link RpcServer} implements it.
 *
 * @example
 * ```ts
 * registerGreeterServicer(server satisfies ServerLike, greeter)
 * ```
 * @group RPC
 */
export interface ServerLike {
  /** Registers a unary method. */
  registerUnaryUnary(service: string, method: string, handler: UnaryUnaryHandler): void
  /** Registers a server-streaming method. */
  registerUnaryStream(service: string, method: string, handler: UnaryStreamHandler): void
  /** Registers a client-streaming method. */
  registerStreamUnary(service: string, method: string, handler: StreamUnaryHandler): void
  /** Registers a bidirectional-streaming method. */
  registerStreamStream(service: string, method: string, handler: StreamStreamHandler): void
}

/** An exact ArrayBuffer of `bytes`, as upstream's handlers receive requests. */
export function arrayBufferOf(bytes: Uint8Array): ArrayBuffer {
  const { buffer, byteOffset, byteLength } = bytes
  if (buffer instanceof ArrayBuffer && byteOffset === 0 && byteLength === buffer.byteLength) return buffer
  return bytes.slice().buffer as ArrayBuffer
}

/** Bytes from what generated code passes: a view, without copying. */
export function viewOf(bytes: Bytes): Uint8Array {
  return bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes
}

/** A plain record of generated code's metadata map. */
export function recordOf(metadata: Map<string, string> | undefined): Record<string, string> | undefined {
  return metadata && Object.fromEntries(metadata)
}
