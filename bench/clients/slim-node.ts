// The slim-node benchmark client (bench/PROTOCOL.md), written as an application would
// use the package: publish promises as the window, getMessage for receiving.
import {
  type App,
  createLocalApp,
  isSlimError,
  RpcChannel,
  RpcServer,
  type Session,
  type SessionOptions,
  startServer,
} from 'slim-node'
import {
  admits,
  type ClientConfig,
  Commands,
  decode,
  emit,
  encode,
  encodeInto,
  fail,
  nowNs,
  pace,
  publishInBatches,
  RPC_SERVICE,
  readConfig,
  reportProgress,
  Tally,
} from './common.ts'

const config = readConfig()
const commands = new Commands()
/** How long one reply may take before the run counts as failed. */
const REPLY_TIMEOUT_MS = 10_000
/**
 * Messages per `publishMany` when publishing as fast as the window allows, as an
 * application streaming messages would: one call into the addon and one promise per
 * batch. Paced runs publish one message at a time.
 */
const BATCH = 64

function sessionOptions(): SessionOptions {
  return config.reliable
    ? { reliable: true, maxRetries: config.maxRetries, interval: config.intervalMs, mls: config.mls }
    : { reliable: false, mls: config.mls }
}

async function connect(): Promise<{ app: App; appMs: number; connectMs: number }> {
  const started = performance.now()
  const app = await createLocalApp({
    local: config.name,
    slim: { endpoint: config.endpoint },
    sharedSecret: config.secret,
  })
  // createLocalApp creates and connects in one call; split the time as the other clients do.
  return { app, appMs: 0, connectMs: performance.now() - started }
}

async function createSession(app: App): Promise<Session> {
  const [peer] = config.members
  if (config.session === 'p2p' && peer) return app.createPointToPointSession(peer, sessionOptions())
  const session = await app.createGroupSession(config.channel, sessionOptions())
  for (const member of config.members) await session.invite(member)
  return session
}

/** Connects, runs `setup` (timed as the session's setup), reports `ready` and waits for `go`. */
async function start<T>(setup: (app: App) => Promise<T>): Promise<{ app: App; opened: T } | undefined> {
  const { app, appMs, connectMs } = await connect()
  const started = performance.now()
  const opened = await setup(app)
  emit({ event: 'ready', appMs, connectMs, sessionMs: performance.now() - started })
  if (await commands.go()) return { app, opened }
  await app.close()
  return undefined
}

async function publisher(): Promise<void> {
  const started = await start(createSession)
  if (!started) return
  const { app, opened: session } = started
  // The window: slots free when a publish resolves (is acknowledged, when reliable).
  const batch = config.rate > 0 ? 1 : BATCH
  // A publish copies its payloads at the call, so one set of buffers serves every batch.
  const buffers = Array.from({ length: batch }, () => encode(0, config.payload))
  await publishInBatches(config, batch, (first, count) => {
    for (let i = 0; i < count; i++) encodeInto(buffers[i] as Buffer, first + i)
    return count === 1 ? session.publish(buffers[0] as Buffer) : session.publishMany(buffers.slice(0, count))
  })
  await commands.stopped()
  await app.close()
}

/** Receives until `done` says so or `stop` arrives; `onMessage` sees every payload. */
async function receive(session: Session, done: () => boolean, onMessage: (message: Message) => unknown): Promise<void> {
  const stop = new AbortController()
  void commands.stopped().then(() => stop.abort())
  while (!done()) {
    try {
      await onMessage(await session.getMessage({ signal: stop.signal }))
    } catch (error) {
      if (isSlimError(error) && (error.code === 'ABORTED' || error.code === 'SESSION_CLOSED')) return
      throw error
    }
  }
}

type Message = Awaited<ReturnType<Session['getMessage']>>

async function accept(app: App): Promise<Session | undefined> {
  const stop = new AbortController()
  void commands.stopped().then(() => stop.abort())
  try {
    return await app.listenForSession({ signal: stop.signal })
  } catch (error) {
    if (isSlimError(error) && error.code === 'ABORTED') return undefined
    throw error
  }
}

async function subscriber(): Promise<void> {
  const { app } = await connect()
  emit({ event: 'connected' })
  const tally = new Tally(config)
  const session = await accept(app)
  if (session) {
    const stopProgress = reportProgress('received', () => tally.unique)
    await receive(
      session,
      () => tally.complete,
      (message) => tally.record(message.payload),
    )
    stopProgress()
  }
  tally.report()
  await commands.stopped()
  await app.close()
}

/** Times the run's sequential round trips; `roundTrip` returns the echoed payload. */
async function measureRoundTrips(roundTrip: (payload: Buffer) => Promise<Uint8Array>): Promise<void> {
  const rttUs: number[] = []
  const begin = performance.now()
  let startNs = nowNs()
  // Stopped at the cap, the round trips measured so far still count.
  for (let seq = 0; admits(config, seq, startNs) && !commands.stopRequested; seq++) {
    await pace(config.rate, begin, seq)
    const sentNs = nowNs()
    if (seq === config.warmup) startNs = sentNs
    const reply = await roundTrip(encode(seq, config.payload))
    if (decode(reply)?.seq !== seq) throw new Error(`the reply to request ${seq} carried another number`)
    if (seq >= config.warmup) rttUs.push(Number(nowNs() - sentNs) / 1000)
  }
  emit({ event: 'result', received: rttUs.length, rttUs })
  await commands.stopped()
}

async function requester(): Promise<void> {
  const started = await start(createSession)
  if (!started) return
  const { app, opened: session } = started
  // A round trip ends with the reply and the request's acknowledgement, as in every client.
  await measureRoundTrips(async (payload) => {
    const acknowledged = session.publish(payload)
    const reply = await session.getMessage({ timeout: REPLY_TIMEOUT_MS })
    await acknowledged
    return reply.payload
  })
  await app.close()
}

/** A channel to the server whose first call has set its session up. */
async function openChannel(app: App): Promise<RpcChannel> {
  const [server = ''] = config.members
  const channel = new RpcChannel(app, server)
  await channel.unary(RPC_SERVICE, 'Echo', encode(0, 16), { timeout: REPLY_TIMEOUT_MS })
  return channel
}

async function rpcUnary(): Promise<void> {
  const started = await start(openChannel)
  if (!started) return
  const { app, opened: channel } = started
  await measureRoundTrips((payload) => channel.unary(RPC_SERVICE, 'Echo', payload, { timeout: REPLY_TIMEOUT_MS }))
  await channel.close()
  await app.close()
}

async function rpcStream(): Promise<void> {
  const started = await start(openChannel)
  if (!started) return
  const { app, opened: channel } = started
  const tally = new Tally(config)
  const stop = new AbortController()
  void commands.stopped().then(() => stop.abort())
  const stopProgress = reportProgress('received', () => tally.unique)
  // The request's sequence field asks for that many answers.
  const answers = channel.unaryStream(RPC_SERVICE, 'Stream', encode(config.warmup + config.count, 16), {
    signal: stop.signal,
  })
  try {
    for await (const answer of answers) {
      tally.record(answer)
      if (tally.windowOver) break
    }
  } catch (error) {
    if (!isSlimError(error) || error.code !== 'ABORTED') throw error
  }
  stopProgress()
  tally.report()
  await commands.stopped()
  await channel.close()
  await app.close()
}

async function rpcServer(): Promise<void> {
  const { app } = await connect()
  const server = new RpcServer(app)
  server.registerUnaryUnary(RPC_SERVICE, 'Echo', (request) => request)
  server.registerUnaryStream(RPC_SERVICE, 'Stream', function* (request) {
    const answers = decode(request)?.seq ?? 0
    for (let seq = 0; seq < answers; seq++) yield encode(seq, config.payload)
  })
  const serving = server.serve()
  emit({ event: 'connected' })
  await Promise.race([serving, commands.stopped()])
  await server.close()
  await serving
  await app.close()
}

async function responder(): Promise<void> {
  const { app } = await connect()
  emit({ event: 'connected' })
  const session = await accept(app)
  if (session) {
    await receive(
      session,
      () => false,
      (message) => session.publishTo(message, message.payload),
    )
  }
  await app.close()
}

async function node(): Promise<void> {
  const server = await startServer({ endpoint: config.endpoint })
  emit({ event: 'listening', url: server.url })
  await commands.stopped()
  await server.stop()
}

const roles: Record<ClientConfig['role'], () => Promise<void>> = {
  node,
  pub: publisher,
  sub: subscriber,
  requester,
  responder,
  'rpc-server': rpcServer,
  'rpc-unary': rpcUnary,
  'rpc-stream': rpcStream,
}
roles[config.role]().then(() => process.exit(0), fail)
