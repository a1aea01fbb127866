/**
 * A2A over SLIM: the A2A protocol's SLIMRPC binding for the A2A JavaScript SDK
 * (`@a2a-js/sdk`, with `@grpc/grpc-js` and `@bufbuild/protobuf` for its protobuf codecs;
 * peer dependencies of this entry point only). Calls are slimrpc calls to the service
 * `lf.a2a.v1.A2AService` with A2A 1.0's protobuf messages, as upstream's Python `slima2a`
 * makes them; errors travel as slimrpc statuses carrying a `google.rpc.Status` with the
 * A2A `ErrorInfo` in the details.
 *
 * @example
 * ```ts
 * import { createA2AClient } from 'slim-node/a2a'
 * const client = await createA2AClient(app, 'agntcy/demo/echo_agent')
 * const answer = await client.sendMessage({ message: { messageId: '1', role: Role.ROLE_USER, parts: [...] } })
 * ```
 * @packageDocumentation
 * @module slim-node/a2a
 */
import type {
  AgentCard,
  ListTaskPushNotificationConfigsResponse,
  ListTasksResponse,
  SendMessageResult,
  StreamResponse,
  Task,
  TaskPushNotificationConfig,
} from '@a2a-js/sdk'
import { A2A_PROTOCOL_VERSION } from '@a2a-js/sdk'
import {
  Client,
  type ClientConfig,
  type RequestOptions,
  type Transport,
  type TransportFactory,
} from '@a2a-js/sdk/client'
import { A2AError } from '@a2a-js/sdk/errors'
import * as grpcErrors from '@a2a-js/sdk/errors/grpc'
import {
  type A2ARequestHandler,
  defaultServerCallContextBuilder,
  type ServerCallContext,
  type User,
} from '@a2a-js/sdk/server'
import { A2AService } from '@a2a-js/sdk/server/grpc'
import { Metadata } from '@grpc/grpc-js'
import type { App } from './app.js'
import { RpcError, type RpcStatus } from './errors.js'
import { RpcChannel } from './rpc-channel.js'
import { type RpcContext, RpcServer } from './rpc-server.js'

/**
 * The slimrpc service of A2A 1.0, as slima2a serves it.
 *
 * @example
 * ```ts
 * const raw = await new RpcChannel(app, 'agntcy/demo/echo_agent').unary(A2A_SERVICE, 'GetTask', bytes)
 * ```
 */
export const A2A_SERVICE = 'lf.a2a.v1.A2AService'

/**
 * The protocol binding name an agent card lists for SLIMRPC, as slima2a reads it.
 *
 * @example
 * ```ts
 * const slim = card.supportedInterfaces.find((entry) => entry.protocolBinding === SLIMRPC_BINDING)
 * ```
 */
export const SLIMRPC_BINDING = 'slimrpc'

type Methods = typeof A2AService
type Method = Methods[keyof Methods]
type RequestOf<M extends Method> = Parameters<M['requestSerialize']>[0]
type ResponseOf<M extends Method> = ReturnType<M['responseDeserialize']>

/** `SendMessage` from `/lf.a2a.v1.A2AService/SendMessage`. */
const nameOf = (method: Method): string => method.path.slice(method.path.lastIndexOf('/') + 1)

const STATUS_NAMES = new Map<number, RpcStatus>(
  Object.entries(grpcErrors.GRPC_STATUS_CODE).map(([name, code]) => [code, name as RpcStatus]),
)

/**
 * slima2a names the A2A error in the message (`TaskNotFoundError: …`): upstream's slimrpc
 * 3.4.6 carries a status and a message but drops an error's binary details, where
 * slima2a (and the A2A SDK's gRPC binding) put the `google.rpc.Status` with A2A's
 * `ErrorInfo`. Both are read: the details if they arrive, else the name.
 */
const NAMED = /^(\w+Error): ([\s\S]*)$/

/** slima2a's statuses where they differ from the A2A SDK's gRPC binding. */
const SLIMA2A_STATUS: Readonly<Record<string, RpcStatus>> = {
  PushNotificationNotSupportedError: 'UNIMPLEMENTED',
  UnsupportedOperationError: 'UNIMPLEMENTED',
  VersionNotSupportedError: 'UNIMPLEMENTED',
}

type GrpcErrorClass = new (options: { message: string; status: number }) => Error

/** A slimrpc failure as the A2A SDK's error class (`TaskNotFoundError`, …). */
function toA2AError(error: unknown, method: Method): unknown {
  if (!(error instanceof RpcError)) return error
  const code = grpcErrors.GRPC_STATUS_CODE[error.status]
  const named = NAMED.exec(error.message)
  const known = named && (grpcErrors as unknown as Record<string, GrpcErrorClass | undefined>)[`Grpc${named[1]}`]
  if (!error.details && named && known) return new known({ message: named[2] ?? '', status: code })
  const details = error.details ? [Buffer.from(error.details)] : []
  const serviceError = {
    code,
    details: error.message,
    metadata: { get: (key: string) => (key === grpcErrors.GRPC_STATUS_DETAILS_BIN ? details : []) },
  }
  return grpcErrors.fromGrpcError(
    serviceError as unknown as Parameters<typeof grpcErrors.fromGrpcError>[0],
    nameOf(method),
  )
}

/** An A2A SDK error (or any other) as the slimrpc status and message slima2a sends. */
function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error
  if (!(error instanceof A2AError))
    return new RpcError('UNKNOWN', error instanceof Error ? error.message : String(error))
  const status = SLIMA2A_STATUS[error.name] ?? STATUS_NAMES.get(grpcErrors.grpcStatusFor(error)) ?? 'UNKNOWN'
  const details = grpcErrors.buildGrpcErrorMetadata(Metadata, error)?.get(grpcErrors.GRPC_STATUS_DETAILS_BIN)[0]
  return new RpcError(status, `${error.name}: ${error.message}`, {
    details: typeof details === 'string' ? Buffer.from(details) : details,
  })
}

/**
 * Options of a {@link SlimRpcTransport}.
 *
 * @example
 * ```ts
 * const options: SlimRpcTransportOptions = { timeout: 30_000 }
 * ```
 */
export interface SlimRpcTransportOptions {
  /** Milliseconds each call may take (its slimrpc deadline); default: no deadline. */
  timeout?: number
}

/**
 * An A2A client transport over slimrpc to one agent's SLIM name. The A2A SDK's `Client`
 * takes it; {@link createA2AClient} and {@link SlimRpcTransportFactory} make it for you.
 *
 * @example
 * ```ts
 * const transport = new SlimRpcTransport(app, 'agntcy/demo/echo_agent', { timeout: 30_000 })
 * const card = await transport.getExtendedAgentCard({ tenant: '' })
 * ```
 */
export class SlimRpcTransport implements Transport {
  readonly #channel: RpcChannel
  readonly #timeout: number | undefined

  /**
   * A transport to the agent at `agent`; its session is set up on the first call.
   *
   * @param app - The app calls go from (connected to a node).
   * @param agent - The agent's SLIM name, `org/ns/app`.
   * @param options - A deadline for every call.
   */
  constructor(app: App, agent: string, options: SlimRpcTransportOptions = {}) {
    this.#channel = new RpcChannel(app, agent)
    this.#timeout = options.timeout
  }

  /** `'slimrpc'`. */
  get protocolName(): string {
    return SLIMRPC_BINDING
  }

  /** The A2A version this SDK speaks. */
  get protocolVersion(): string {
    return A2A_PROTOCOL_VERSION
  }

  #options(options: RequestOptions | undefined): {
    timeout?: number
    signal?: AbortSignal
    metadata?: Record<string, string>
  } {
    return { timeout: this.#timeout, signal: options?.signal, metadata: options?.serviceParameters }
  }

  async #call<M extends Method>(method: M, params: RequestOf<M>, options?: RequestOptions): Promise<ResponseOf<M>> {
    try {
      const request = method.requestSerialize(params as never)
      const answer = await this.#channel.unary(A2A_SERVICE, nameOf(method), request, this.#options(options))
      return method.responseDeserialize(Buffer.from(answer)) as ResponseOf<M>
    } catch (error) {
      throw toA2AError(error, method)
    }
  }

  async *#stream<M extends Method>(
    method: M,
    params: RequestOf<M>,
    options?: RequestOptions,
  ): AsyncGenerator<ResponseOf<M>, void, undefined> {
    try {
      const request = method.requestSerialize(params as never)
      for await (const answer of this.#channel.unaryStream(
        A2A_SERVICE,
        nameOf(method),
        request,
        this.#options(options),
      ))
        yield method.responseDeserialize(Buffer.from(answer)) as ResponseOf<M>
    } catch (error) {
      throw toA2AError(error, method)
    }
  }

  /** `GetExtendedAgentCard`. */
  getExtendedAgentCard(
    params: RequestOf<Methods['getExtendedAgentCard']>,
    options?: RequestOptions,
  ): Promise<AgentCard> {
    return this.#call(A2AService.getExtendedAgentCard, params, options)
  }

  /** `SendMessage`: the task or message the agent answered with. */
  async sendMessage(params: RequestOf<Methods['sendMessage']>, options?: RequestOptions): Promise<SendMessageResult> {
    const response = await this.#call(A2AService.sendMessage, params, options)
    const payload = response.payload
    if (payload?.$case === 'task' || payload?.$case === 'message') return payload.value
    throw toA2AError(
      new RpcError('INTERNAL', 'the agent answered SendMessage with neither a task nor a message'),
      A2AService.sendMessage,
    )
  }

  /** `SendStreamingMessage`: the agent's events as they come. */
  sendMessageStream(
    params: RequestOf<Methods['sendStreamingMessage']>,
    options?: RequestOptions,
  ): AsyncGenerator<StreamResponse, void, undefined> {
    return this.#stream(A2AService.sendStreamingMessage, params, options)
  }

  /** `CreateTaskPushNotificationConfig`. */
  createTaskPushNotificationConfig(
    params: RequestOf<Methods['createTaskPushNotificationConfig']>,
    options?: RequestOptions,
  ): Promise<TaskPushNotificationConfig> {
    return this.#call(A2AService.createTaskPushNotificationConfig, params, options)
  }

  /** `GetTaskPushNotificationConfig`. */
  getTaskPushNotificationConfig(
    params: RequestOf<Methods['getTaskPushNotificationConfig']>,
    options?: RequestOptions,
  ): Promise<TaskPushNotificationConfig> {
    return this.#call(A2AService.getTaskPushNotificationConfig, params, options)
  }

  /** `ListTaskPushNotificationConfigs`. */
  listTaskPushNotificationConfig(
    params: RequestOf<Methods['listTaskPushNotificationConfigs']>,
    options?: RequestOptions,
  ): Promise<ListTaskPushNotificationConfigsResponse> {
    return this.#call(A2AService.listTaskPushNotificationConfigs, params, options)
  }

  /** `DeleteTaskPushNotificationConfig`. */
  async deleteTaskPushNotificationConfig(
    params: RequestOf<Methods['deleteTaskPushNotificationConfig']>,
    options?: RequestOptions,
  ): Promise<void> {
    await this.#call(A2AService.deleteTaskPushNotificationConfig, params, options)
  }

  /** `GetTask`. */
  getTask(params: RequestOf<Methods['getTask']>, options?: RequestOptions): Promise<Task> {
    return this.#call(A2AService.getTask, params, options)
  }

  /** `CancelTask`. */
  cancelTask(params: RequestOf<Methods['cancelTask']>, options?: RequestOptions): Promise<Task> {
    return this.#call(A2AService.cancelTask, params, options)
  }

  /** `ListTasks`. */
  listTasks(params: RequestOf<Methods['listTasks']>, options?: RequestOptions): Promise<ListTasksResponse> {
    return this.#call(A2AService.listTasks, params, options)
  }

  /** `SubscribeToTask`: a task's events from now on. */
  resubscribeTask(
    params: RequestOf<Methods['subscribeToTask']>,
    options?: RequestOptions,
  ): AsyncGenerator<StreamResponse, void, undefined> {
    return this.#stream(A2AService.subscribeToTask, params, options)
  }

  /** Ends the channel's session. */
  close(): Promise<void> {
    return this.#channel.close()
  }
}

/**
 * Makes {@link SlimRpcTransport}s for the A2A SDK's `ClientFactory`, for agent cards that
 * list a `slimrpc` interface (its `url` is the agent's SLIM name).
 *
 * @example
 * ```ts
 * const factory = new ClientFactory({ transports: [new SlimRpcTransportFactory(app)] })
 * const client = await factory.createFromAgentCard(card)
 * ```
 */
export class SlimRpcTransportFactory implements TransportFactory {
  readonly #app: App
  readonly #options: SlimRpcTransportOptions

  /**
   * A factory whose transports call from `app`.
   *
   * @param app - The app calls go from.
   * @param options - What every transport it makes gets.
   */
  constructor(app: App, options: SlimRpcTransportOptions = {}) {
    this.#app = app
    this.#options = options
  }

  /** `'slimrpc'`. */
  get protocolName(): string {
    return SLIMRPC_BINDING
  }

  /**
   * A transport to `url`, the agent's SLIM name.
   * @param url - The `slimrpc` interface's `url` from the card.
   */
  async create(url: string, _agentCard: AgentCard): Promise<Transport> {
    return new SlimRpcTransport(this.#app, url, this.#options)
  }
}

/**
 * An A2A `Client` for the agent at `agent` (a SLIM name), with the card the agent serves
 * over slimrpc (`GetExtendedAgentCard`; an agent must advertise
 * `capabilities.extendedAgentCard` to serve it).
 *
 * @param app - The app calls go from.
 * @param agent - The agent's SLIM name.
 * @param options - A deadline per call, and the A2A client's own configuration.
 * @returns The client, its card read.
 * @example
 * ```ts
 * const client = await createA2AClient(app, 'agntcy/demo/echo_agent', { timeout: 30_000 })
 * console.log((await client.getAgentCard()).name)
 * ```
 */
export async function createA2AClient(
  app: App,
  agent: string,
  options: SlimRpcTransportOptions & { client?: ClientConfig } = {},
): Promise<Client> {
  const transport = new SlimRpcTransport(app, agent, options)
  const card = await transport.getExtendedAgentCard({ tenant: '' })
  return new Client(transport, card, options.client)
}

/** The caller as A2A's `User`: the subject of its verified MLS identity, if any. */
class SlimUser implements User {
  readonly #subject: string | undefined
  constructor(subject: string | undefined) {
    this.#subject = subject
  }
  /** True when SLIM verified the caller's identity. */
  get isAuthenticated(): boolean {
    return this.#subject !== undefined
  }
  /** The verified subject, or `''`. */
  get userName(): string {
    return this.#subject ?? ''
  }
}

function callContext(context: RpcContext, tenant: string | undefined): ServerCallContext {
  return defaultServerCallContextBuilder({
    extensions: undefined,
    user: new SlimUser(context.peer?.subject),
    headers: { ...context.metadata },
    requestedVersion: context.metadata['a2a-version'] ?? A2A_PROTOCOL_VERSION,
    tenant,
  })
}

/**
 * Options of {@link serveA2A}.
 *
 * @example
 * ```ts
 * const options: ServeA2AOptions = { signal: AbortSignal.timeout(60_000) }
 * ```
 */
export interface ServeA2AOptions {
  /** Stops serving; calls in progress end first. */
  signal?: AbortSignal
}

/**
 * Serves an A2A request handler (the SDK's `DefaultRequestHandler` around an
 * `AgentExecutor`) as `lf.a2a.v1.A2AService` over slimrpc, as slima2a does, under the
 * app's name. Resolves when `signal` aborts or the app closes.
 *
 * @param app - The app the agent is reached at (its name is the agent's SLIM name).
 * @param handler - The A2A request handler.
 * @param options - A signal to stop.
 * @returns A promise that resolves once serving stopped.
 * @example
 * ```ts
 * const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor)
 * await serveA2A(app, handler, { signal: stop.signal })
 * ```
 */
export async function serveA2A(app: App, handler: A2ARequestHandler, options: ServeA2AOptions = {}): Promise<void> {
  const server = new RpcServer(app)
  const unary = <M extends Method>(
    method: M,
    run: (request: RequestOf<M>, context: ServerCallContext) => Promise<unknown>,
  ) =>
    server.registerUnaryUnary(A2A_SERVICE, nameOf(method), async (bytes, context) => {
      try {
        const request = method.requestDeserialize(Buffer.from(bytes)) as RequestOf<M>
        const result = await run(request, callContext(context, (request as { tenant?: string }).tenant))
        return method.responseSerialize(result as never)
      } catch (error) {
        throw toRpcError(error)
      }
    })
  const streamed = <M extends Method>(
    method: M,
    run: (request: RequestOf<M>, context: ServerCallContext) => AsyncIterable<unknown>,
  ) =>
    server.registerUnaryStream(A2A_SERVICE, nameOf(method), async function* (bytes, context) {
      try {
        const request = method.requestDeserialize(Buffer.from(bytes)) as RequestOf<M>
        for await (const event of run(request, callContext(context, (request as { tenant?: string }).tenant)))
          yield method.responseSerialize(event as never)
      } catch (error) {
        throw toRpcError(error)
      }
    })
  unary(A2AService.sendMessage, async (request, context) => {
    const result = await handler.sendMessage(request, context)
    return { payload: 'messageId' in result ? { $case: 'message', value: result } : { $case: 'task', value: result } }
  })
  streamed(A2AService.sendStreamingMessage, (request, context) => handler.sendMessageStream(request, context))
  streamed(A2AService.subscribeToTask, (request, context) => handler.resubscribe(request, context))
  unary(A2AService.getTask, (request, context) => handler.getTask(request, context))
  unary(A2AService.listTasks, (request, context) => handler.listTasks(request, context))
  unary(A2AService.cancelTask, (request, context) => handler.cancelTask(request, context))
  unary(A2AService.getExtendedAgentCard, (request, context) =>
    handler.getAuthenticatedExtendedAgentCard(request, context),
  )
  unary(A2AService.createTaskPushNotificationConfig, (request, context) =>
    handler.createTaskPushNotificationConfig(request, context),
  )
  unary(A2AService.getTaskPushNotificationConfig, (request, context) =>
    handler.getTaskPushNotificationConfig(request, context),
  )
  unary(A2AService.listTaskPushNotificationConfigs, (request, context) =>
    handler.listTaskPushNotificationConfigs(request, context),
  )
  unary(A2AService.deleteTaskPushNotificationConfig, async (request, context) => {
    await handler.deleteTaskPushNotificationConfig(request, context)
    return {}
  })
  const stop = (): void => void server.close()
  if (options.signal?.aborted) return
  options.signal?.addEventListener('abort', stop, { once: true })
  try {
    await server.serve()
  } finally {
    options.signal?.removeEventListener('abort', stop)
  }
}
