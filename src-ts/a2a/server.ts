import { A2A_PROTOCOL_VERSION } from '@a2a-js/sdk'
import {
  type A2ARequestHandler,
  defaultServerCallContextBuilder,
  type ServerCallContext,
  type User,
} from '@a2a-js/sdk/server'
import { A2AService } from '@a2a-js/sdk/server/grpc'
import type { App } from '../core/app.js'
import { type RpcContext, RpcServer } from '../rpc/server.js'

import { a2aToRpcError } from './errors.js'
import { A2A_SERVICE, type Method, nameOf, type RequestOf } from './protocol.js'

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
        throw a2aToRpcError(error)
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
        throw a2aToRpcError(error)
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
