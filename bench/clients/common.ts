// What the Node benchmark clients share (see bench/PROTOCOL.md): configuration, payload
// layout, events on stdout and commands on stdin.
import { createConnection, createServer } from 'node:net'
import { createInterface } from 'node:readline'

export interface ClientConfig {
  role: 'node' | 'pub' | 'sub' | 'requester' | 'responder' | 'rpc-server' | 'rpc-unary' | 'rpc-stream'
  endpoint: string
  name: string
  channel: string
  members: string[]
  session: 'group' | 'p2p'
  reliable: boolean
  mls: boolean
  maxRetries: number
  intervalMs: number
  payload: number
  warmup: number
  count: number
  rate: number
  window: number
  /** The measured phase's length; 0: `count` alone ends it (bench/PROTOCOL.md). */
  seconds: number
  latency: boolean
  secret: string
}

export function readConfig(): ClientConfig {
  const text = process.argv.at(-1)
  if (!text) throw new Error("usage: <client> '<config JSON>'")
  return JSON.parse(text) as ClientConfig
}

export const PROGRESS_EVERY_MS = 200

/** The slimrpc service of the rpc scenarios: `Echo` (unary) and `Stream` (server streaming). */
export const RPC_SERVICE = 'bench.Bench'

export function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

/** `process.hrtime` is CLOCK_MONOTONIC: the clock every client of a run stamps with. */
export const nowNs = (): bigint => process.hrtime.bigint()

export function encode(seq: number, size: number): Buffer {
  return encodeInto(Buffer.alloc(Math.max(16, size)), seq)
}

/** Writes message `seq`'s header, stamped now, into a payload made by `encode`. */
export function encodeInto(payload: Buffer, seq: number): Buffer {
  payload.writeBigUInt64LE(BigInt(seq), 0)
  payload.writeBigUInt64LE(nowNs(), 8)
  return payload
}

export function decode(payload: Uint8Array): { seq: number; sentNs: bigint } | undefined {
  if (payload.byteLength < 16) return undefined
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  return { seq: Number(view.getBigUint64(0, true)), sentNs: view.getBigUint64(8, true) }
}

/**
 * Whether message (or call) `seq` still belongs to the run: within `warmup + count`, and
 * with `seconds`, begun less than that long after the first measured one (at `startNs`).
 */
export function admits(config: ClientConfig, seq: number, startNs: bigint): boolean {
  if (seq >= config.warmup + config.count) return false
  return seq <= config.warmup || config.seconds <= 0 || Number(nowNs() - startNs) < config.seconds * 1e9
}

/** Resolves on `go` (true) or on `stop`/end of input (false); `stopped` on `stop`/end only. */
export class Commands {
  #resolveGo: (go: boolean) => void = () => {}
  #resolveStop: () => void = () => {}
  readonly #go = new Promise<boolean>((resolve) => {
    this.#resolveGo = resolve
  })
  readonly #stop = new Promise<void>((resolve) => {
    this.#resolveStop = resolve
  })
  stopRequested = false

  constructor() {
    const lines = createInterface({ input: process.stdin })
    lines.on('line', (line) => {
      const command = line.trim()
      if (command === 'go') this.#resolveGo(true)
      if (command === 'stop') this.#end()
    })
    lines.on('close', () => this.#end())
  }

  go(): Promise<boolean> {
    return this.#go
  }

  stopped(): Promise<void> {
    return this.#stop
  }

  #end(): void {
    this.stopRequested = true
    this.#resolveGo(false)
    this.#resolveStop()
  }
}

/** Resolves when message `seq` is due when sending `rate` per second from `beginMs`. */
export function pace(rate: number, beginMs: number, seq: number): Promise<void> | undefined {
  if (rate <= 0) return undefined
  const wait = beginMs + (seq * 1000) / rate - performance.now()
  return wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : undefined
}

/** Counts what a subscriber receives: unique, duplicates, order and latency. */
export class Tally {
  readonly #seen: Uint8Array
  unique = 0
  measured = 0
  duplicates = 0
  reordered = 0
  #highest = -1
  #firstNs = 0n
  #lastNs = 0n
  readonly #latencyUs: number[] = []
  readonly config: ClientConfig

  constructor(config: ClientConfig) {
    this.config = config
    this.#seen = new Uint8Array(config.warmup + config.count)
  }

  get complete(): boolean {
    return this.unique >= this.config.warmup + this.config.count
  }

  /** Whether `seconds` have passed since the first measured message (never, without `seconds`). */
  get windowOver(): boolean {
    return this.measured > 0 && this.config.seconds > 0 && Number(nowNs() - this.#firstNs) >= this.config.seconds * 1e9
  }

  record(payload: Uint8Array): void {
    const now = nowNs()
    const header = decode(payload)
    if (!header || header.seq >= this.#seen.length) return
    const { seq, sentNs } = header
    if (this.#seen[seq]) {
      this.duplicates++
      return
    }
    this.#seen[seq] = 1
    this.unique++
    if (seq < this.config.warmup) return
    if (seq < this.#highest) this.reordered++
    this.#highest = Math.max(this.#highest, seq)
    if (this.measured === 0) this.#firstNs = now
    this.measured++
    this.#lastNs = now
    if (this.config.latency) this.#latencyUs.push(Number(now - sentNs) / 1000)
  }

  report(): void {
    emit({
      event: 'result',
      received: this.measured,
      duplicates: this.duplicates,
      reordered: this.reordered,
      firstNs: Number(this.#firstNs),
      lastNs: Number(this.#lastNs),
      latencyUs: this.#latencyUs,
    })
  }
}

/** Prints `progress` every PROGRESS_EVERY_MS until stopped. */
export function reportProgress(field: 'sent' | 'received', value: () => number): () => void {
  const timer = setInterval(() => emit({ event: 'progress', [field]: value() }), PROGRESS_EVERY_MS)
  return () => {
    clearInterval(timer)
    emit({ event: 'progress', [field]: value() })
  }
}

export function fail(error: unknown): never {
  emit({ event: 'error', message: error instanceof Error ? error.message : String(error) })
  process.exit(1)
}

/** A free TCP port on 127.0.0.1, for servers whose API does not report the one they bound. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Resolves once `host:port` accepts a TCP connection; for servers that return before listening. */
export async function acceptsConnections(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host, port }, () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    if (performance.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Publishes the run's messages (see {@link admits}) at `rate` with at most `window`
 * outstanding (a slot frees when `publishOne` settles), reports progress, and prints the
 * `sent` event.
 */
export function publishWindowed(
  config: ClientConfig,
  publishOne: (seq: number) => Promise<void>,
  onFailure: (seq: number, error: unknown) => void = () => {},
): Promise<void> {
  return publishInBatches(config, 1, (first) => publishOne(first), onFailure)
}

/**
 * {@link publishWindowed} for a client that publishes up to `batch` messages per call,
 * `publish(first, count)` sending sequence numbers `first … first + count - 1`: the same
 * window counts messages, and their slots free when the call settles.
 */
export async function publishInBatches(
  config: ClientConfig,
  batch: number,
  publish: (first: number, count: number) => Promise<void>,
  onFailure: (seq: number, error: unknown) => void = () => {},
): Promise<void> {
  const total = config.warmup + config.count
  const size = Math.max(1, Math.min(batch, config.window))
  let inFlight = 0
  let failed = 0
  let sent = 0
  let slotFree: (() => void) | undefined
  const settle = (count: number): void => {
    inFlight -= count
    slotFree?.()
    slotFree = undefined
  }
  const stopProgress = reportProgress('sent', () => sent)
  let startNs = nowNs()
  const begin = performance.now()
  for (let seq = 0; admits(config, seq, startNs); ) {
    await pace(config.rate, begin, seq)
    // A batch never straddles the end of the warm-up, where the clock starts.
    const count = Math.min(size, (seq < config.warmup ? config.warmup : total) - seq)
    while (inFlight + count > config.window) await new Promise<void>((resolve) => (slotFree = resolve))
    if (seq === config.warmup) startNs = nowNs()
    inFlight += count
    const first = seq
    publish(first, count).then(
      () => settle(count),
      (error: unknown) => {
        if (failed === 0) onFailure(first, error)
        failed += count
        settle(count)
      },
    )
    seq += count
    sent += count
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (slotFree = resolve))
  const endNs = nowNs()
  stopProgress()
  emit({ event: 'sent', sent, failed, startNs: Number(startNs), endNs: Number(endNs) })
}
