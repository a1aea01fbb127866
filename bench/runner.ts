// Runs one benchmark: a fresh node, subscribers (or a responder, or an RPC server) and a
// publisher (or a requester, or an RPC caller), each its own process; watches progress
// and reads CPU and memory.
import type { ClientConfig } from './clients/common.ts'
import { BenchProcess } from './process.ts'
import { clientLaunch, type SystemId, startNode, type Toolchain } from './systems.ts'

export type Scenario = 'throughput' | 'unreliable' | 'p2p' | 'latency' | 'rtt' | 'memory' | 'rpc-unary' | 'rpc-stream'

/** Who plays each side of a scenario; the caller's result is the run's when it reports. */
function rolesOf(scenario: Scenario): { server: ClientConfig['role']; caller: ClientConfig['role'] } {
  switch (scenario) {
    case 'rtt':
      return { server: 'responder', caller: 'requester' }
    case 'rpc-unary':
      return { server: 'rpc-server', caller: 'rpc-unary' }
    case 'rpc-stream':
      return { server: 'rpc-server', caller: 'rpc-stream' }
    default:
      return { server: 'sub', caller: 'pub' }
  }
}

export interface RunSpec {
  scenario: Scenario
  /** The publisher's (or requester's, or caller's) client; it also picks the node (`startNode`). */
  system: SystemId
  /**
   * The subscribers' client when it is not `system`'s: a run that pairs two systems
   * tells which side of a crossing the difference between them comes from.
   */
  receiver?: SystemId
  subscribers: number
  payload: number
  mls: boolean
  reliable: boolean
  warmup: number
  /** The most messages (or calls) measured; with `seconds`, only a cap. */
  count: number
  /** How long the measured phase lasts; 0: until `count` (bench/PROTOCOL.md). */
  seconds: number
  /** Messages per second; 0 = as fast as the publish window allows. */
  rate: number
  /** The run ends as `capped` after this long, with what arrived by then. */
  capMs: number
  /** Which repetition of its configuration this run is, from 0 (`--reps`). */
  rep: number
}

export interface SubscriberResult {
  received: number
  duplicates: number
  reordered: number
  firstNs: number
  lastNs: number
  latencyUs: number[]
  rssStartBytes: number
  rssEndBytes: number
}

export interface RunResult {
  spec: RunSpec
  status: 'ok' | 'stalled' | 'capped' | 'failed'
  error?: string
  setup?: { appMs: number; connectMs: number; sessionMs: number }
  publisher?: { sent: number; failed: number; startNs: number; endNs: number }
  subscribers: SubscriberResult[]
  rttUs: number[]
  cpuSeconds: { node: number; publisher: number; subscribers: number[] }
  wallMs: number
}

export type OnProgress = (fraction: number | undefined, detail: string) => void

/** A run with no progress from any process for this long has stalled. */
const STALL_MS = 15_000
/** After the publisher finished, subscribers that stay still this long have all they will get. */
const SETTLE_MS = 2_000
const START_TIMEOUT_MS = 60_000
const POLL_MS = 200
export const SECRET = 'slim-node-bench-shared-secret-0123456789'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function baseConfig(spec: RunSpec): ClientConfig {
  const p2p = spec.scenario === 'p2p' || spec.scenario === 'rtt'
  return {
    role: 'sub',
    endpoint: '',
    name: '',
    channel: 'bench/group/channel',
    members: Array.from({ length: spec.subscribers }, (_, i) => `bench/sub/s${i}`),
    session: p2p ? 'p2p' : 'group',
    reliable: spec.reliable,
    mls: spec.mls,
    maxRetries: 5,
    intervalMs: 1000,
    payload: spec.payload,
    warmup: spec.warmup,
    count: spec.count,
    seconds: spec.seconds,
    rate: spec.rate,
    window: 512,
    latency: spec.scenario === 'latency',
    secret: SECRET,
  }
}

function number(event: Record<string, unknown> | undefined, field: string): number {
  return Number(event?.[field] ?? 0)
}

export async function runBenchmark(spec: RunSpec, tools: Toolchain, onProgress: OnProgress): Promise<RunResult> {
  const base = baseConfig(spec)
  const started = performance.now()
  const result: RunResult = {
    spec,
    status: 'ok',
    subscribers: [],
    rttUs: [],
    cpuSeconds: { node: 0, publisher: 0, subscribers: [] },
    wallMs: 0,
  }
  const all: BenchProcess[] = []
  const launch = (config: ClientConfig, system: SystemId): BenchProcess => {
    const process = new BenchProcess(`${system} ${config.role} ${config.name}`, clientLaunch(system, tools, config))
    all.push(process)
    return process
  }
  try {
    onProgress(0, 'starting')
    const node = await startNode(spec.system, tools, base)
    all.push(node.process)
    const roles = rolesOf(spec.scenario)
    // The caller reports the round trips (rtt, rpc-unary) or what it received (rpc-stream).
    const callerReports = roles.caller !== 'pub'
    const streamed = roles.caller === 'rpc-stream'
    const subscribers = base.members.map((name) =>
      launch({ ...base, role: roles.server, name, endpoint: node.endpoint }, spec.receiver ?? spec.system),
    )
    await Promise.all(subscribers.map((s) => s.waitFor('connected', START_TIMEOUT_MS)))
    const rssStart = subscribers.map((s) => s.rssBytes())
    const publisher = launch({ ...base, role: roles.caller, name: 'bench/pub/p', endpoint: node.endpoint }, spec.system)
    const ready = await publisher.waitFor('ready', START_TIMEOUT_MS)
    result.setup = {
      appMs: number(ready, 'appMs'),
      connectMs: number(ready, 'connectMs'),
      sessionMs: number(ready, 'sessionMs'),
    }
    const cpuBefore = all.map((p) => p.cpuSeconds())
    publisher.send('go')
    const goAt = performance.now()
    const total = spec.warmup + spec.count
    // Whose `received` progress shows how far the run is.
    const receivers = streamed ? [publisher] : callerReports ? [] : subscribers
    let stopped = false
    for (;;) {
      await sleep(POLL_MS)
      const now = performance.now()
      const failed = all.find((p) => p.find('error'))
      if (failed) throw new Error(`${failed.label}: ${String(failed.find('error')?.message)}`)
      const slowest = receivers.length ? Math.min(...receivers.map((s) => s.progress)) : undefined
      onProgress(slowest === undefined ? undefined : slowest / total, `${Math.round((now - goAt) / 1000)} s`)
      if (callerReports ? publisher.find('result') : subscribers.every((s) => s.find('result'))) break
      const lastChange = Math.max(...all.map((p) => p.progressAt))
      const sent = publisher.find('sent')
      // Subscribers only know the count: after a timed run, they are told when they have all.
      const allIn = sent !== undefined && receivers.every((s) => s.progress >= number(sent, 'sent'))
      if (!stopped && sent && (allIn || now - lastChange > SETTLE_MS)) stopped = true
      else if (!stopped && now - goAt > spec.capMs) [stopped, result.status] = [true, 'capped']
      else if (!stopped && receivers.length && now - Math.max(lastChange, goAt) > STALL_MS)
        [stopped, result.status] = [true, 'stalled']
      if (stopped) {
        // Responders have nothing to report; a caller cut short reports what it measured.
        const reporters = callerReports ? [publisher] : subscribers
        for (const s of reporters) s.send('stop')
        await Promise.all(reporters.map((s) => s.waitFor('result', 10_000)))
        break
      }
    }
    const cpuAfter = all.map((p) => p.cpuSeconds())
    const cpuOf = (p: BenchProcess): number => {
      const i = all.indexOf(p)
      return (cpuAfter[i] ?? 0) - (cpuBefore[i] ?? 0)
    }
    result.cpuSeconds = {
      node: cpuOf(node.process),
      publisher: cpuOf(publisher),
      subscribers: subscribers.map(cpuOf),
    }
    const sent = publisher.find('sent')
    if (sent) {
      result.publisher = {
        sent: number(sent, 'sent'),
        failed: number(sent, 'failed'),
        startNs: number(sent, 'startNs'),
        endNs: number(sent, 'endNs'),
      }
    }
    result.rttUs = (publisher.find('result')?.rttUs as number[] | undefined) ?? []
    if (receivers.length) {
      // A streaming caller receives as a subscriber does; its result is the one subscriber's.
      result.subscribers = receivers.map((s, i) => {
        const r = s.find('result')
        return {
          received: number(r, 'received'),
          duplicates: number(r, 'duplicates'),
          reordered: number(r, 'reordered'),
          firstNs: number(r, 'firstNs'),
          lastNs: number(r, 'lastNs'),
          latencyUs: (r?.latencyUs as number[] | undefined) ?? [],
          rssStartBytes: streamed ? 0 : (rssStart[i] ?? 0),
          rssEndBytes: s.rssBytes(),
        }
      })
    }
  } catch (error) {
    result.status = 'failed'
    result.error = error instanceof Error ? error.message : String(error)
  } finally {
    await Promise.all(all.map((p) => p.stop(5_000)))
    result.wallMs = performance.now() - started
  }
  return result
}
