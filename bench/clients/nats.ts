// The NATS benchmark client (bench/PROTOCOL.md) on nats.js: plain subjects, no
// acknowledgements, so it is the reference for the unacknowledged scenarios.
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { connect, type NatsConnection } from 'nats'
import {
  admits,
  type ClientConfig,
  Commands,
  emit,
  encode,
  fail,
  nowNs,
  pace,
  readConfig,
  reportProgress,
  Tally,
} from './common.ts'

const config = readConfig()
const commands = new Commands()
/** nats.js buffers publishes in user space: yield now and then so the socket drains. */
const YIELD_EVERY = 1000

async function open(): Promise<{ nc: NatsConnection; connectMs: number }> {
  const started = performance.now()
  const nc = await connect({ servers: config.endpoint })
  return { nc, connectMs: performance.now() - started }
}

async function publisher(): Promise<void> {
  const { nc, connectMs } = await open()
  emit({ event: 'ready', appMs: 0, connectMs, sessionMs: 0 })
  if (!(await commands.go())) return void (await nc.close())
  let sent = 0
  const stopProgress = reportProgress('sent', () => sent)
  let startNs = nowNs()
  const begin = performance.now()
  for (let seq = 0; admits(config, seq, startNs); seq++) {
    await pace(config.rate, begin, seq)
    if (seq === config.warmup) startNs = nowNs()
    nc.publish(config.channel, encode(seq, config.payload))
    sent++
    if (config.rate <= 0 && sent % YIELD_EVERY === 0) await yieldToLoop()
  }
  await nc.flush()
  stopProgress()
  emit({ event: 'sent', sent, failed: 0, startNs: Number(startNs), endNs: Number(nowNs()) })
  await commands.stopped()
  await nc.close()
}

async function subscriber(): Promise<void> {
  const { nc } = await open()
  const tally = new Tally(config)
  const subscription = nc.subscribe(config.channel)
  await nc.flush()
  emit({ event: 'connected' })
  const stopProgress = reportProgress('received', () => tally.unique)
  void commands.stopped().then(() => subscription.unsubscribe())
  for await (const message of subscription) {
    tally.record(message.data)
    if (tally.complete) break
  }
  stopProgress()
  tally.report()
  await commands.stopped()
  await nc.close()
}

const roles: Partial<Record<ClientConfig['role'], () => Promise<void>>> = { pub: publisher, sub: subscriber }
const role = roles[config.role]
if (!role) fail(new Error(`the NATS client has no ${config.role} role; the harness runs nats-server itself`))
role().then(() => process.exit(0), fail)
