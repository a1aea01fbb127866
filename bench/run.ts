// `npm run bench`: every scenario on every system, one process per client, through a
// SLIM node (or nats-server) of its own on 127.0.0.1. Writes bench/results/.
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { Command, Option } from 'commander'
import { root } from '../scripts/processes.mjs'
import { chart, comparisons, markdown, type Summary, summarise, label as systemsLabel, targets } from './report.ts'
import { type RunResult, type RunSpec, runBenchmark, type Scenario } from './runner.ts'
import { prepare, SYSTEM_IDS, type SystemId } from './systems.ts'

type Plan = 'full' | 'quick' | 'smoke'
const SLIM_SYSTEMS: SystemId[] = ['slim-node', 'base', 'rust', 'official', 'python']
/** The official npm binding (core 2.x) has no slimrpc. */
const RPC_SYSTEMS: SystemId[] = ['slim-node', 'base', 'rust', 'python']
const SCENARIOS = 'throughput,unreliable,p2p,latency,rtt,memory,rpc-unary,rpc-stream'

interface Sizes {
  /**
   * How long each measured phase lasts; 0: the counts below end it. Timed, a run measures
   * as long on every system, and the counts are only caps.
   */
  seconds: number
  /** Messages sent before measuring, enough for V8 and the allocator to settle. */
  warmup: number
  count: number
  latencyCount: number
  rttCount: number
  memoryCount: number
  subscribers: number[]
  payloads: number[]
  /** MLS settings of the throughput runs; with MLS on, upstream's MLS sets the pace. */
  mls: boolean[]
}

/** A cap no system reaches in a timed phase: 3 s at over 1.3 million msg/s. */
const TIMED_CAP = 4_000_000

const SIZES: Record<Plan, Sizes> = {
  full: {
    seconds: 3,
    warmup: 5_000,
    count: TIMED_CAP,
    latencyCount: 5_000,
    rttCount: TIMED_CAP,
    memoryCount: 1_000_000,
    subscribers: [1, 2, 4],
    payloads: [64, 4096],
    mls: [false, true],
  },
  quick: {
    seconds: 3,
    warmup: 5_000,
    count: TIMED_CAP,
    latencyCount: 3_000,
    rttCount: TIMED_CAP,
    memoryCount: 100_000,
    subscribers: [1, 2],
    payloads: [64],
    mls: [false],
  },
  smoke: {
    seconds: 0.5,
    warmup: 1_000,
    count: TIMED_CAP,
    latencyCount: 500,
    rttCount: TIMED_CAP,
    memoryCount: 0,
    subscribers: [2],
    payloads: [64],
    mls: [false, true],
  },
}

function plan(kind: Plan, systems: SystemId[], scenarios: Scenario[], reps: number): RunSpec[] {
  const sizes = SIZES[kind]
  const specs: RunSpec[] = []
  const base = {
    subscribers: 1,
    payload: 64,
    mls: false,
    reliable: true,
    warmup: sizes.warmup,
    seconds: sizes.seconds,
    rate: 0,
    capMs: 30_000,
  }
  // Repetitions alternate the systems (slim-node, Rust, slim-node, …), so that a drift of
  // the machine during a configuration's runs falls on both alike.
  const add = (scenario: Scenario, on: SystemId[], spec: Partial<RunSpec> & { count: number }): void => {
    if (!scenarios.includes(scenario)) return
    for (let rep = 0; rep < reps; rep++) {
      for (const system of on.filter((s) => systems.includes(s)))
        specs.push({ ...base, ...spec, scenario, system, rep })
    }
  }
  for (const subscribers of sizes.subscribers)
    for (const payload of sizes.payloads)
      for (const mls of sizes.mls) add('throughput', SLIM_SYSTEMS, { subscribers, payload, mls, count: sizes.count })
  add('unreliable', [...SLIM_SYSTEMS, 'nats'], { subscribers: 2, reliable: false, count: sizes.count * 2 })
  add('p2p', SLIM_SYSTEMS, { count: sizes.count })
  // Paced runs end by count: at 1 000 msg/s, the full plan's 5 000 take 5 s.
  const paced = { rate: 1_000, warmup: 500, count: sizes.latencyCount, seconds: 0 }
  add('latency', [...SLIM_SYSTEMS, 'nats'], paced)
  // slim-node sending to the Rust client and back: which side the latency difference is on.
  if (systems.includes('slim-node') && systems.includes('rust')) {
    add('latency', ['slim-node'], { ...paced, receiver: 'rust' })
    add('latency', ['rust'], { ...paced, receiver: 'slim-node' })
  }
  const roundTrips = { warmup: sizes.warmup / 5, count: sizes.rttCount }
  add('rtt', SLIM_SYSTEMS, roundTrips)
  // slimrpc sets every channel up with MLS (upstream's choice), so these run with it on.
  add('rpc-unary', RPC_SYSTEMS, { ...roundTrips, mls: true })
  add('rpc-stream', RPC_SYSTEMS, { count: sizes.count, mls: true })
  if (sizes.memoryCount > 0) {
    add('memory', [...SLIM_SYSTEMS, 'nats'], { warmup: 0, seconds: 0, count: sizes.memoryCount, capMs: 60_000 })
  }
  return specs
}

class ProgressBar {
  readonly #tty = process.stderr.isTTY
  readonly #width = 24
  readonly total: number

  constructor(total: number) {
    this.total = total
  }

  update(index: number, label: string, fraction: number | undefined, detail: string): void {
    if (!this.#tty) return
    const filled = fraction === undefined ? 0 : Math.round(Math.min(1, fraction) * this.#width)
    const bar =
      fraction === undefined ? '·'.repeat(this.#width) : `${'█'.repeat(filled)}${'░'.repeat(this.#width - filled)}`
    const percent = fraction === undefined ? '    ' : `${String(Math.round(Math.min(1, fraction) * 100)).padStart(3)}%`
    process.stderr.write(`\r\x1b[2K[${index}/${this.total}] ${label.padEnd(52)} ${bar} ${percent} ${detail}`)
  }

  done(index: number, label: string, outcome: string): void {
    process.stderr.write(`${this.#tty ? '\r\x1b[2K' : ''}[${index}/${this.total}] ${label.padEnd(52)} ${outcome}\n`)
  }
}

function headline(s: Summary): string {
  if (s.status === 'failed') return `FAILED ${s.error?.split('\n')[0] ?? ''}`
  const parts: string[] = [s.status]
  if (s.perSubscriber !== undefined) parts.push(`${Math.round(s.perSubscriber).toLocaleString('en-US')} msg/s/sub`)
  if (s.latencyMs) parts.push(`p50 ${s.latencyMs.p50.toFixed(3)} ms, p99 ${s.latencyMs.p99.toFixed(3)} ms`)
  if (s.rttMs) parts.push(`rtt p50 ${s.rttMs.p50.toFixed(3)} ms`)
  if (s.rssMb) parts.push(`RSS ${s.rssMb.end.toFixed(1)} MB`)
  if (s.lost) parts.push(`lost ${s.lost}`)
  return parts.join(', ')
}

function describeMachine(profile: string): Record<string, string> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
  let nats = 'not run'
  try {
    nats = execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim()
  } catch {}
  return {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Linux`,
    node: process.version,
    'slim-node': `${pkg.version} (SLIM core 3.4.6), ${profile} build`,
    'official npm binding': '@agntcy/slim-bindings-linux-x64-gnu 2.1.2 (SLIM core 2.2.0), its own node',
    python: 'slim-bindings 3.3.8 (PyPI), on a slim-node node',
    nats: `${nats}, nats.js 2.29.3`,
  }
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description(
      'benchmarks slim-node against a pure-Rust client, the official npm binding, Python slim-bindings and NATS, messages and slimrpc',
    )
    .addOption(new Option('--plan <plan>', 'how much to run').choices(['full', 'quick', 'smoke']).default('full'))
    .option(
      '--systems <list>',
      `comma-separated: ${SYSTEM_IDS.join(',')}`,
      SYSTEM_IDS.filter((id) => id !== 'base').join(','),
    )
    .option(
      '--base <ref>',
      'A/B: also run slim-node as commit <ref> builds it (a worktree), alternating with this tree',
    )
    .option('--scenarios <list>', `comma-separated: ${SCENARIOS}`, SCENARIOS)
    .addOption(
      new Option(
        '--profile <profile>',
        'release (reported runs), fast (thin LTO, to iterate) or dev (the harness test)',
      )
        .choices(['release', 'fast', 'dev'])
        .default('release'),
    )
    .option('--reps <n>', 'runs of each configuration per system, alternating between systems', '1')
    .option('--out <dir>', 'where results go', join(root, 'bench', 'results'))
    .option('--render', 'run nothing: write results.md and chart.svg again from the results.json in --out')
    .parse()
  const options = program.opts<{
    plan: Plan
    systems: string
    scenarios: string
    profile: 'release' | 'fast' | 'dev'
    out: string
    reps: string
    base?: string
    render?: boolean
  }>()
  if (options.render) {
    const saved = JSON.parse(readFileSync(join(options.out, 'results.json'), 'utf8')) as {
      meta: Record<string, string>
      summaries: Summary[]
    }
    report(options.out, saved.summaries, saved.meta)
    return
  }
  const systems = options.systems.split(',') as SystemId[]
  const unknown = systems.filter((s) => !SYSTEM_IDS.includes(s))
  if (unknown.length) throw new Error(`unknown systems: ${unknown.join(', ')}`)
  if (options.base !== undefined && !systems.includes('base')) systems.splice(1, 0, 'base')
  if (systems.includes('base') && options.base === undefined) throw new Error('the base system needs --base <ref>')
  const reps = Number(options.reps)
  if (!Number.isInteger(reps) || reps < 1 || reps > 20)
    throw new Error(`--reps: a whole number from 1 to 20, not ${options.reps}`)
  const specs = plan(options.plan, systems, options.scenarios.split(',') as Scenario[], reps)
  const tools = await prepare(options.profile, systems, options.base)
  const bar = new ProgressBar(specs.length)
  const results: RunResult[] = []
  const summaries: Summary[] = []
  for (const [i, spec] of specs.entries()) {
    const label = `${systemsLabel(spec)}: ${spec.scenario} ${summariseLabel(spec)}`
    const result = await runBenchmark(spec, tools, (fraction, detail) => bar.update(i + 1, label, fraction, detail))
    const summary = summarise(result)
    bar.done(i + 1, label, headline(summary))
    // Raw latency samples stay out of the saved results: the percentiles are kept.
    results.push({ ...result, subscribers: result.subscribers.map((s) => ({ ...s, latencyUs: [] })), rttUs: [] })
    summaries.push(summary)
  }
  const meta = describeMachine(options.profile)
  mkdirSync(options.out, { recursive: true })
  writeFileSync(
    join(options.out, 'results.json'),
    `${JSON.stringify({ meta, plan: options.plan, reps, summaries, results }, null, 1)}\n`,
  )
  report(options.out, summaries, meta)
  const failed = summaries.filter((s) => s.status === 'failed' && s.system !== 'official')
  if (failed.length) process.exitCode = 1
}

/** Writes results.md and chart.svg and prints each target as met or not. */
function report(out: string, summaries: Summary[], meta: Record<string, string>): void {
  writeFileSync(join(out, 'results.md'), markdown(summaries, meta))
  writeFileSync(join(out, 'chart.svg'), chart(summaries))
  for (const t of comparisons(summaries)) {
    const spread = t.spread ? ` (${t.spread[0].toFixed(3)}–${t.spread[1].toFixed(3)})` : ''
    console.log(`A/B ${t.name}: ${t.value === undefined ? 'not measured' : t.value.toFixed(3)}${spread}, ${t.limit}`)
  }
  for (const t of targets(summaries)) {
    const spread = t.spread ? `, ${t.spread[0].toFixed(2)}–${t.spread[1].toFixed(2)} over the reps` : ''
    const value = t.value === undefined ? 'not measured' : `${t.value.toFixed(2)}${spread}`
    console.log(`${t.met === undefined ? '?' : t.met ? '✓' : '✗'} ${t.name}: ${value} (${t.limit})`)
  }
  console.log(`results: ${join(out, 'results.md')}`)
}

function summariseLabel(spec: RunSpec): string {
  const payload = spec.payload >= 1024 ? `${spec.payload / 1024}K` : `${spec.payload}B`
  return `1→${spec.subscribers} ${payload}${spec.mls ? ' MLS' : ''}${spec.rate ? ` @${spec.rate}/s` : ''}`
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
