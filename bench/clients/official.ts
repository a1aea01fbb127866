// The official npm binding's benchmark client (bench/PROTOCOL.md), written as its
// examples use it: UniFFI objects from @agntcy/slim-bindings-linux-x64-gnu, whose path
// the harness passes in SLIM_OFFICIAL_MODULE (scripts/official-binding.mjs installs it).
import { createRequire } from 'node:module'
import {
  acceptsConnections,
  admits,
  type ClientConfig,
  Commands,
  decode,
  emit,
  encode,
  fail,
  freePort,
  nowNs,
  pace,
  publishWindowed,
  readConfig,
  reportProgress,
  Tally,
} from './common.ts'

// The few parts of the binding this client uses (its own .d.ts has them all).
interface SlimName {
  toString(): string
}
interface CompletionHandle {
  waitAsync(): Promise<void>
}
interface MessageContext {
  sourceName: SlimName
}
interface ReceivedMessage {
  context: MessageContext
  payload: ArrayBuffer
}
interface SessionConfig {
  sessionType: number
  maxRetries?: number
  /** Milliseconds. */
  interval?: number
  metadata: Map<string, string>
  mlsSettings?: { headerIntegrityValidationPercent: number }
}
interface Session {
  publishAsync(data: ArrayBuffer, payloadType?: string, metadata?: Map<string, string>): Promise<CompletionHandle>
  publishToAsync(
    context: MessageContext,
    data: ArrayBuffer,
    payloadType?: string,
    metadata?: Map<string, string>,
  ): Promise<CompletionHandle>
  /** `timeout` in ms; rejects with a `Timeout` SlimError when it passes. */
  getMessageAsync(timeout: number | undefined): Promise<ReceivedMessage>
  inviteAsync(participant: SlimName): Promise<CompletionHandle>
}
interface App {
  createSessionAsync(
    config: SessionConfig,
    destination: SlimName,
  ): Promise<{ session: Session; completion: CompletionHandle }>
  listenForSessionAsync(timeout: number | undefined): Promise<Session>
  deleteSessionAsync(session: Session): Promise<CompletionHandle>
  setRouteAsync(name: SlimName, connectionId: bigint): Promise<void>
  subscribeAsync(name: SlimName, connectionId: bigint | undefined): Promise<void>
}
interface ServerConfig {
  endpoint: string
}
interface SlimClientConfig {
  endpoint: string
}
interface Service {
  /** Its async twin panics ("no reactor running"): the binding's examples use this one too. */
  createAppWithSecret(name: SlimName, secret: string): App
  connectAsync(config: SlimClientConfig): Promise<bigint>
  disconnect(connectionId: bigint): void
  /** Starts the server in the background and returns. */
  runServer(config: ServerConfig): void
  stopServer(endpoint: string): void
}
interface TracingConfig {
  logLevel: string
}
interface Binding {
  getVersion(): string
  initializeWithConfigs(runtime: object, tracing: TracingConfig, services: object[]): void
  newRuntimeConfig(): object
  newTracingConfig(): TracingConfig
  newServiceConfig(): object
  getGlobalService(): Service
  newInsecureServerConfig(endpoint: string): ServerConfig
  newInsecureClientConfig(endpoint: string): SlimClientConfig
  Name: { fromString(name: string): SlimName }
  SessionType: { PointToPoint: number; Group: number }
}

const modulePath = process.env.SLIM_OFFICIAL_MODULE
if (!modulePath) fail(new Error('SLIM_OFFICIAL_MODULE is not set (see scripts/official-binding.mjs)'))
const slim = createRequire(import.meta.url)(modulePath) as Binding

const config = readConfig()
const commands = new Commands()
/** Receive calls return this often, so `stop` is noticed without aborting a native call. */
const RECEIVE_TIMEOUT_MS = 5000
const REPLY_TIMEOUT_MS = 10_000
const CLOSE_TIMEOUT_MS = 5000

/** A SlimError carries its kind in `tag` and its text in `inner.message`; its `message` says little. */
function describe(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'tag' in error) {
    const inner = 'inner' in error ? (error.inner as { message?: unknown } | undefined) : undefined
    return inner?.message ? `${String(error.tag)}: ${String(inner.message)}` : String(error.tag)
  }
  return error instanceof Error ? error.message : String(error)
}

/** Receive timeouts come as `Timeout` or as a `ReceiveError` saying "timed out". */
function isTimeout(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    'tag' in error &&
    /^Timeout|timed out|receive timeout/.test(describe(error))
  )
}

/**
 * The defaults, but logging only errors: the binding logs to stdout, which carries events.
 * A node logs a WARN at every start ("server require_header_mac differs ...").
 */
function initialize(): Service {
  const tracing = slim.newTracingConfig()
  tracing.logLevel = 'error'
  slim.initializeWithConfigs(slim.newRuntimeConfig(), tracing, [slim.newServiceConfig()])
  return slim.getGlobalService()
}

/** The binding takes payloads as whole ArrayBuffers. */
function payload(seq: number): ArrayBuffer {
  return new Uint8Array(encode(seq, config.payload)).buffer
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms).unref())])
}

interface Client {
  service: Service
  app: App
  connectionId: bigint
  appMs: number
  connectMs: number
}

async function connect(): Promise<Client> {
  let started = performance.now()
  const service = initialize()
  const name = slim.Name.fromString(config.name)
  const app = service.createAppWithSecret(name, config.secret)
  const appMs = performance.now() - started
  started = performance.now()
  const connectionId = await service.connectAsync(slim.newInsecureClientConfig(config.endpoint))
  await app.subscribeAsync(name, connectionId)
  return { service, app, connectionId, appMs, connectMs: performance.now() - started }
}

async function close(client: Client, session: Session | undefined): Promise<void> {
  const closing = async (): Promise<void> => {
    if (session) await (await client.app.deleteSessionAsync(session)).waitAsync()
    client.service.disconnect(client.connectionId)
  }
  // Closing is best effort: the run's results are already out.
  await withTimeout(
    closing().catch((error: unknown) => console.error(`close: ${describe(error)}`)),
    CLOSE_TIMEOUT_MS,
  )
}

function sessionConfig(type: number): SessionConfig {
  return {
    sessionType: type,
    // No retries and no interval make a session unreliable (no acknowledgements).
    ...(config.reliable ? { maxRetries: config.maxRetries, interval: config.intervalMs } : {}),
    metadata: new Map(),
    ...(config.mls ? { mlsSettings: { headerIntegrityValidationPercent: 100 } } : {}),
  }
}

async function createSession({ app, connectionId }: Client): Promise<Session> {
  const [peer] = config.members
  if (config.session === 'p2p' && peer) {
    const name = slim.Name.fromString(peer)
    await app.setRouteAsync(name, connectionId)
    const { session, completion } = await app.createSessionAsync(sessionConfig(slim.SessionType.PointToPoint), name)
    await completion.waitAsync()
    return session
  }
  const channel = slim.Name.fromString(config.channel)
  const { session, completion } = await app.createSessionAsync(sessionConfig(slim.SessionType.Group), channel)
  await completion.waitAsync()
  for (const member of config.members) {
    const name = slim.Name.fromString(member)
    await app.setRouteAsync(name, connectionId)
    try {
      await (await session.inviteAsync(name)).waitAsync()
    } catch (error) {
      // SLIM core 2.2.0 puts no timer settings in an unreliable group's join request, and
      // the invitee rejects it ("missing payload: timer options"): fixed in later cores.
      const hint = config.reliable ? '' : ' (this binding cannot invite to an unreliable group session)'
      throw new Error(`invite ${member}: ${describe(error)}${hint}`)
    }
  }
  return session
}

async function start(): Promise<{ client: Client; session: Session } | undefined> {
  const client = await connect()
  const started = performance.now()
  const session = await createSession(client)
  emit({ event: 'ready', appMs: client.appMs, connectMs: client.connectMs, sessionMs: performance.now() - started })
  if (await commands.go()) return { client, session }
  await close(client, session)
  return undefined
}

/** Resolves when the publish is done: acknowledged in a reliable session, handed over otherwise. */
async function publish(session: Session, data: ArrayBuffer): Promise<void> {
  const handle = await session.publishAsync(data)
  if (config.reliable) await handle.waitAsync()
}

async function publisher(): Promise<void> {
  const started = await start()
  if (!started) return
  const { client, session } = started
  // The ack window: a slot covers publishAsync and the wait on its handle. Leaving the
  // handles unawaited lets unacknowledged messages pile up, and the binding then stalls.
  await publishWindowed(
    config,
    (seq) => publish(session, payload(seq)),
    (seq, error) => console.error(`publish ${seq}: ${describe(error)}`),
  )
  await commands.stopped()
  await close(client, session)
}

/** The next message, or undefined once `stop` arrives or the other side closes the session. */
async function nextMessage(session: Session): Promise<ReceivedMessage | undefined> {
  while (!commands.stopRequested) {
    try {
      return await session.getMessageAsync(RECEIVE_TIMEOUT_MS)
    } catch (error) {
      if (/session closed/i.test(describe(error))) return undefined
      if (!isTimeout(error)) throw new Error(`receive: ${describe(error)}`)
    }
  }
  return undefined
}

/** The session the publisher or requester invites this app to, or undefined on `stop`. */
async function accept(app: App): Promise<Session | undefined> {
  while (!commands.stopRequested) {
    try {
      return await app.listenForSessionAsync(RECEIVE_TIMEOUT_MS)
    } catch (error) {
      if (!isTimeout(error)) throw new Error(`listen for session: ${describe(error)}`)
    }
  }
  return undefined
}

async function subscriber(): Promise<void> {
  const client = await connect()
  emit({ event: 'connected' })
  const tally = new Tally(config)
  const session = await accept(client.app)
  if (session) {
    const stopProgress = reportProgress('received', () => tally.unique)
    while (!tally.complete) {
      const message = await nextMessage(session)
      if (!message) break
      tally.record(new Uint8Array(message.payload))
    }
    stopProgress()
  }
  tally.report()
  await commands.stopped()
  await close(client, session)
}

async function requester(): Promise<void> {
  const started = await start()
  if (!started) return
  const { client, session } = started
  const rttUs: number[] = []
  const begin = performance.now()
  let startNs = nowNs()
  // Stopped at the cap, the round trips measured so far still count.
  for (let seq = 0; admits(config, seq, startNs) && !commands.stopRequested; seq++) {
    await pace(config.rate, begin, seq)
    const sentNs = nowNs()
    if (seq === config.warmup) startNs = sentNs
    await publish(session, payload(seq))
    const reply = await session.getMessageAsync(REPLY_TIMEOUT_MS).catch((error: unknown) => {
      throw new Error(`no reply to request ${seq}: ${describe(error)}`)
    })
    if (decode(new Uint8Array(reply.payload))?.seq !== seq) {
      throw new Error(`the reply to request ${seq} carried another number`)
    }
    if (seq >= config.warmup) rttUs.push(Number(nowNs() - sentNs) / 1000)
  }
  emit({ event: 'result', received: rttUs.length, rttUs })
  await commands.stopped()
  await close(client, session)
}

async function responder(): Promise<void> {
  const client = await connect()
  emit({ event: 'connected' })
  const session = await accept(client.app)
  if (session) {
    for (;;) {
      const message = await nextMessage(session)
      if (!message) break
      // publishTo addresses the reply to the message's sender.
      const handle = await session.publishToAsync(message.context, message.payload)
      if (config.reliable) await handle.waitAsync()
    }
  }
  await commands.stopped()
  await close(client, session)
}

async function node(): Promise<void> {
  const [host = '127.0.0.1', given = '0'] = config.endpoint.split(':')
  // The server API does not report the port it bound, so choose one first.
  const port = Number(given) || (await freePort())
  const endpoint = `${host}:${port}`
  const service = initialize()
  service.runServer(slim.newInsecureServerConfig(endpoint))
  await acceptsConnections(host, port, 10_000)
  console.error(`official binding ${slim.getVersion()} serving ${endpoint}`)
  emit({ event: 'listening', url: `http://${endpoint}` })
  await commands.stopped()
  try {
    service.stopServer(endpoint)
  } catch (error) {
    console.error(`stop server: ${describe(error)}`)
  }
}

/** The official binding (core 2.x) has no slimrpc: the harness never asks it for those roles. */
const roles: Record<Exclude<ClientConfig['role'], `rpc-${string}`>, () => Promise<void>> = {
  node,
  pub: publisher,
  sub: subscriber,
  requester,
  responder,
}
const role = config.role.startsWith('rpc-') ? undefined : roles[config.role as keyof typeof roles]
if (!role) fail(new Error(`the official binding has no ${config.role} role`))
role().then(
  () => process.exit(0),
  (error: unknown) => fail(new Error(describe(error))),
)
