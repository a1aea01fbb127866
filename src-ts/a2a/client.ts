// The client side: an A2A transport over slimrpc, and a Client made with it.
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
import { A2AService } from '@a2a-js/sdk/server/grpc'
import type { App } from '../core/app.js'
import { RpcError } from '../core/errors.js'
import { RpcChannel } from '../rpc/channel.js'

import { toA2AError } from './errors.js'
import {
  A2A_SERVICE,
  type Method,
  type Methods,
  nameOf,
  type RequestOf,
  type ResponseOf,
  SLIMRPC_BINDING,
} from './protocol.js'

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
