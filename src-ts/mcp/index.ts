/**
 * MCP over SLIM: transports for the TypeScript MCP SDK (`@modelcontextprotocol/sdk`, a
 * peer dependency of this entry point only). The framing is upstream's (`slim-mcp` in
 * Python): one point-to-point session per client, each JSON-RPC message one publish of
 * UTF-8 JSON; a server accepts every session that invites it and runs one MCP server
 * connection per session.
 *
 * @example
 * ```ts
 * import { Client } from '@modelcontextprotocol/sdk/client/index.js'
 * import { SlimClientTransport } from 'slim-node/mcp'
 * const client = new Client({ name: 'agent', version: '1.0.0' })
 * await client.connect(new SlimClientTransport(app, 'agntcy/ns/tools'))
 * console.log((await client.listTools()).tools.map((tool) => tool.name))
 * ```
 * @packageDocumentation
 * @module slim-node/mcp
 */
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import { type JSONRPCMessage, JSONRPCMessageSchema, type MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js'
import type { App } from '../core/app.js'
import type { SessionOptions } from '../core/app-options.js'
import { isSlimError, SlimError } from '../core/errors.js'
import type { Message } from '../core/message.js'
import type { Session } from '../core/session.js'
import type { WaitOptions } from '../core/wait.js'

/**
 * What a transport knows about the sender of a message, as MCP's `authInfo` (handlers
 * read it as `extra.authInfo`): `clientId` is the sender's SLIM name, `token` its identity
 * token as this app verified it, `extra.sessionId` the SLIM session.
 */
function authInfo(message: Message): AuthInfo {
  return {
    token: message.identity,
    clientId: message.source,
    scopes: [],
    extra: { sessionId: message.sessionId, sourceId: message.sourceId },
  }
}

/** How long closing waits for the peer to confirm; a dead peer never does. */
const CLOSE_TIMEOUT_MS = 5_000

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)))

/** The transport over one SLIM session; subclasses say how the session is opened. */
abstract class SessionTransport implements Transport {
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void
  sessionId?: string
  #session: Session | undefined
  #state: 'new' | 'starting' | 'open' | 'closed' = 'new'
  #reading: Promise<void> | undefined

  protected abstract open(): Promise<Session>

  /**
   * True for a client: the MCP client takes a `sessionId` present right after `start()`
   * for a resumed connection and skips initialization, so a client's is set once the
   * server first answered.
   */
  protected readonly reconnects: boolean = false

  /** Opens the session and starts delivering its messages; once per transport. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new SlimError('BUSY', 'the transport was already started')
    this.#state = 'starting'
    const session = await this.open()
    if (this.#state !== 'starting') {
      // Closed while it opened: the session goes at once.
      await session.close().catch(() => {})
      throw new SlimError('CLOSED', 'the transport was closed while it started')
    }
    this.#session = session
    if (!this.reconnects) this.sessionId = String(session.id)
    this.#state = 'open'
    // SLIM resolves a publish to a peer that died once it marks it offline, and later
    // ones wait for it to come back: without this, requests to a dead peer would hang.
    session.on('participant', (change) => {
      if (change.name === session.source || (change.change !== 'offline' && change.change !== 'left')) return
      this.onerror?.(new SlimError('SESSION_CLOSED', `the MCP peer ${change.name} went ${change.change}`))
      void this.close().catch((error: unknown) => this.onerror?.(asError(error)))
    })
    this.#reading = this.#read(session)
  }

  async #read(session: Session): Promise<void> {
    try {
      for await (const message of session) this.#deliver(message)
    } catch (error) {
      if (this.#state !== 'closed') this.onerror?.(asError(error))
    }
    this.#ended()
  }

  #deliver(message: Message): void {
    let parsed: JSONRPCMessage
    try {
      parsed = JSONRPCMessageSchema.parse(JSON.parse(message.payload.toString('utf8')))
    } catch (error) {
      // A bad message is reported and skipped: the session and its other messages go on.
      const reason =
        error instanceof SyntaxError ? error.message : 'not a JSON-RPC 2.0 request, notification or response'
      const text = `session ${message.sessionId}: a message from ${message.source} is not JSON-RPC (${reason})`
      this.onerror?.(new SlimError('INVALID_ARGUMENT', text, { cause: error }))
      return
    }
    this.sessionId ??= String(message.sessionId)
    this.onmessage?.(parsed, { authInfo: authInfo(message) })
  }

  /**
   * Publishes `message` as one SLIM message of UTF-8 JSON; resolves once delivered
   * (acknowledged, on a reliable session).
   */
  async send(message: JSONRPCMessage): Promise<void> {
    const session = this.#session
    if (!session || this.#state !== 'open') throw new SlimError('CLOSED', 'the transport is not open')
    await session.publish(JSON.stringify(message))
  }

  /** Closes the session (the other side sees it end) and reports `onclose`. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    const wasOpen = this.#state === 'open'
    this.#state = 'closed'
    if (wasOpen) {
      await this.#session?.close({ timeout: CLOSE_TIMEOUT_MS }).catch((error: unknown) => {
        const gone = ['SESSION_CLOSED', 'CLOSED', 'TIMEOUT'] as const
        if (!gone.some((code) => isSlimError(error, code))) throw error
      })
      await this.#reading
    }
    this.#ended()
  }

  #closeReported = false
  #ended(): void {
    this.#state = 'closed'
    if (this.#closeReported) return
    this.#closeReported = true
    this.onclose?.()
  }
}

/**
 * Options of a {@link SlimClientTransport}: the session's settings, and how long
 * `start()` may take to set the session up.
 *
 * @example
 * ```ts
 * const options: SlimClientTransportOptions = { session: { mls: true, maxRetries: 3 }, timeout: 10_000 }
 * ```
 */
export interface SlimClientTransportOptions extends WaitOptions {
  /** The point-to-point session's settings (default: reliable, MLS off, as upstream's slim-mcp). */
  session?: SessionOptions
}

/**
 * An MCP client transport: `start()` opens a point-to-point session to the server's
 * SLIM name; `close()` ends it, which ends the server's connection too.
 *
 * @example
 * ```ts
 * const transport = new SlimClientTransport(app, 'agntcy/ns/tools', { session: { mls: true } })
 * const client = new Client({ name: 'agent', version: '1.0.0' })
 * await client.connect(transport)
 * const answer = await client.callTool({ name: 'add', arguments: { a: 1, b: 2 } })
 * await client.close()
 * ```
 */
export class SlimClientTransport extends SessionTransport {
  protected override readonly reconnects = true
  readonly #app: App
  readonly #server: string
  readonly #options: SlimClientTransportOptions

  /**
   * A transport to the MCP server at `server`; nothing is sent before `start()`.
   *
   * @param app - The app the client speaks from (connected to a node).
   * @param server - The MCP server's SLIM name, `org/ns/app`.
   * @param options - Session settings and how long `start()` may take.
   */
  constructor(app: App, server: string, options: SlimClientTransportOptions = {}) {
    super()
    this.#app = app
    this.#server = server
    this.#options = options
  }

  /** @internal */
  protected open(): Promise<Session> {
    const { session, ...wait } = this.#options
    return this.#app.createPointToPointSession(this.#server, { ...session, ...wait })
  }
}

/**
 * An MCP server transport over one session a client opened; {@link serveMcp} makes one
 * per session, so most servers never construct it.
 *
 * @example
 * ```ts
 * const session = await app.listenForSession()
 * await mcpServer.connect(new SlimServerTransport(session))
 * ```
 */
export class SlimServerTransport extends SessionTransport {
  readonly #session: Session

  /**
   * A transport over `session`; `start()` begins delivering its messages.
   *
   * @param session - A session this app was invited into (by an MCP client).
   */
  constructor(session: Session) {
    super()
    this.#session = session
  }

  /** @internal */
  protected open(): Promise<Session> {
    return Promise.resolve(this.#session)
  }
}

/**
 * What {@link serveMcp} connects to each session: `McpServer` and the low-level `Server`
 * of the MCP SDK both are.
 *
 * @example
 * ```ts
 * const server: McpServerLike = new McpServer({ name: 'tools', version: '1.0.0' })
 * ```
 */
export interface McpServerLike {
  /** Starts serving over `transport`. */
  connect(transport: Transport): Promise<void>
}

/**
 * Options of {@link serveMcp}.
 *
 * @example
 * ```ts
 * const stop = new AbortController()
 * const options: ServeMcpOptions = { signal: stop.signal, onerror: (error) => console.error(error.message) }
 * ```
 */
export interface ServeMcpOptions {
  /** Stops serving: no new sessions, and every open one is closed. */
  signal?: AbortSignal
  /** Told about a session that could not be served, and about bad messages. */
  onerror?: (error: Error, session: Session) => void
}

/**
 * Serves MCP on `app`: accepts every session that invites the app and connects a fresh
 * server from `createServer` to it (an MCP server object serves one connection). Resolves
 * when the app closes or `signal` aborts, after closing the sessions still open.
 *
 * @param app - The app clients reach, by its name.
 * @param createServer - Makes the MCP server for one session (given the session, to tell
 * clients apart).
 * @param options - A signal to stop, and where errors go.
 * @returns A promise that resolves once serving stopped.
 * @example
 * ```ts
 * await serveMcp(app, () => {
 *   const server = new McpServer({ name: 'tools', version: '1.0.0' })
 *   server.registerTool('add', { inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) => ({
 *     content: [{ type: 'text', text: String(a + b) }],
 *   }))
 *   return server
 * })
 * ```
 */
export async function serveMcp(
  app: App,
  createServer: (session: Session) => McpServerLike | Promise<McpServerLike>,
  options: ServeMcpOptions = {},
): Promise<void> {
  const open = new Set<SlimServerTransport>()
  const serve = async (session: Session): Promise<void> => {
    const transport = new SlimServerTransport(session)
    open.add(transport)
    // Set before connect: the MCP SDK keeps a handler already there and adds its own.
    transport.onclose = () => open.delete(transport)
    transport.onerror = (error) => options.onerror?.(error, session)
    try {
      await (await createServer(session)).connect(transport)
    } catch (error) {
      options.onerror?.(asError(error), session)
      await transport.close().catch(() => {})
    }
  }
  try {
    for await (const session of app.sessions({ signal: options.signal })) void serve(session)
  } catch (error) {
    if (!isSlimError(error, 'ABORTED')) throw error
  } finally {
    await Promise.all([...open].map((transport) => transport.close().catch(() => {})))
  }
}
