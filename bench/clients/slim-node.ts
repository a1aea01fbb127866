// The slim-node benchmark client (bench/PROTOCOL.md), written as an application would
// use the package: publish promises as the window, getMessage for receiving.
import { type App, createLocalApp, isSlimError, type Session, type SessionOptions, startServer } from 'slim-node'
import {
  type ClientConfig,
  Commands,
  decode,
  emit,
  encode,
  fail,
  nowNs,
  pace,
  publishWindowed,
  readConfig,
  reportProgress,
  Tally,
} from './common.ts'

const config = readConfig()
const commands = new Commands()

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

async function start(): Promise<{ app: App; session: Session } | undefined> {
  const { app, appMs, connectMs } = await connect()
  const started = performance.now()
  const session = await createSession(app)
  emit({ event: 'ready', appMs, connectMs, sessionMs: performance.now() - started })
  if (await commands.go()) return { app, session }
  await app.close()
  return undefined
}

async function publisher(): Promise<void> {
  const started = await start()
  if (!started) return
  const { app, session } = started
  // The window: a slot frees when a publish resolves (is acknowledged, when reliable).
  await publishWindowed(config, (seq) => session.publish(encode(seq, config.payload)))
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

async function requester(): Promise<void> {
  const started = await start()
  if (!started) return
  const { app, session } = started
  const rttUs: number[] = []
  const begin = performance.now()
  // Stopped at the cap, the round trips measured so far still count.
  for (let seq = 0; seq < config.warmup + config.count && !commands.stopRequested; seq++) {
    await pace(config.rate, begin, seq)
    const sentNs = nowNs()
    await session.publish(encode(seq, config.payload))
    const reply = await session.getMessage({ timeout: 10_000 })
    if (decode(reply.payload)?.seq !== seq) throw new Error(`the reply to request ${seq} carried another number`)
    if (seq >= config.warmup) rttUs.push(Number(nowNs() - sentNs) / 1000)
  }
  emit({ event: 'result', received: rttUs.length, rttUs })
  await commands.stopped()
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
}
roles[config.role]().then(() => process.exit(0), fail)
