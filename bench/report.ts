// Turns raw run results into figures: throughput, HDR latency percentiles, CPU cost,
// cold start and memory; then the markdown report, the chart and the target checks.
import * as hdr from 'hdr-histogram-js'
import type { RunResult, RunSpec, Scenario } from './runner.ts'
import { SYSTEM_IDS, SYSTEM_LABELS, type SystemId } from './systems.ts'

export interface Percentiles {
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

export interface Summary {
  system: SystemId
  /** The subscribers' client, when not `system`'s (see `RunSpec.receiver`). */
  receiver?: SystemId
  scenario: Scenario
  config: string
  /** The repetition, from 0; runs of one configuration alternate between systems. */
  rep: number
  status: RunResult['status']
  error?: string
  /** Mean over subscribers of received / (last − first receive). */
  perSubscriber?: number
  aggregate?: number
  expected: number
  received: number
  lost: number
  duplicates: number
  reordered: number
  cpuSeconds: RunResult['cpuSeconds']
  cpuMicrosPerMessage?: number
  latencyMs?: Percentiles
  rttMs?: Percentiles
  setupMs?: RunResult['setup']
  rssMb?: { start: number; end: number }
}

export function describe(spec: RunSpec): string {
  const payload = spec.payload >= 1024 ? `${spec.payload / 1024} KiB` : `${spec.payload} B`
  const mls = spec.mls ? 'MLS on' : 'MLS off'
  switch (spec.scenario) {
    case 'p2p':
      return `point-to-point, ${payload}, ${mls}`
    case 'rtt':
      return `request/reply, ${payload}, ${mls}`
    case 'rpc-unary':
      return `slimrpc unary, ${payload}, ${mls}`
    case 'rpc-stream':
      return `slimrpc server stream, ${payload}, ${mls}`
    case 'latency':
      return `1→${spec.subscribers} at ${spec.rate} msg/s, ${payload}, ${mls}`
    default:
      return `1→${spec.subscribers}, ${payload}, ${mls}`
  }
}

export function percentiles(micros: number[]): Percentiles | undefined {
  if (micros.length === 0) return undefined
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 600_000_000,
    numberOfSignificantValueDigits: 3,
  })
  for (const value of micros) histogram.recordValue(Math.max(1, Math.round(value)))
  const ms = (q: number): number => histogram.getValueAtPercentile(q) / 1000
  return { p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: histogram.maxValue / 1000 }
}

const mb = (bytes: number): number => bytes / (1024 * 1024)

export function summarise(result: RunResult): Summary {
  const { spec, subscribers } = result
  // Round trips are counted by the caller; everything else by what was received.
  const roundTrips = spec.scenario === 'rtt' || spec.scenario === 'rpc-unary'
  const received = roundTrips ? result.rttUs.length : subscribers.reduce((sum, s) => sum + s.received, 0)
  // Subscribers expect what the publisher sent; a timed caller ends its window itself.
  const callerReceives = roundTrips || spec.scenario === 'rpc-stream'
  let expected = spec.count * (callerReceives ? 1 : spec.subscribers)
  if (result.publisher) expected = (result.publisher.sent - spec.warmup) * spec.subscribers
  else if (callerReceives && spec.seconds > 0) expected = received
  const rates = subscribers
    .filter((s) => s.received > 1 && s.lastNs > s.firstNs)
    .map((s) => (s.received - 1) / ((s.lastNs - s.firstNs) / 1e9))
  const cpu = result.cpuSeconds
  const cpuTotal = cpu.node + cpu.publisher + cpu.subscribers.reduce((a, b) => a + b, 0)
  const summary: Summary = {
    system: spec.system,
    receiver: spec.receiver,
    scenario: spec.scenario,
    config: describe(spec),
    rep: spec.rep,
    status: result.status,
    error: result.error,
    expected,
    received,
    lost: Math.max(0, expected - received),
    duplicates: subscribers.reduce((sum, s) => sum + s.duplicates, 0),
    reordered: subscribers.reduce((sum, s) => sum + s.reordered, 0),
    cpuSeconds: cpu,
    setupMs: result.setup,
  }
  if (rates.length > 0) {
    summary.perSubscriber = rates.reduce((a, b) => a + b, 0) / rates.length
    summary.aggregate = rates.reduce((a, b) => a + b, 0)
  }
  if (received > 0 && spec.scenario !== 'latency' && !roundTrips) {
    summary.cpuMicrosPerMessage = (cpuTotal * 1e6) / received
  }
  if (spec.scenario === 'latency') summary.latencyMs = percentiles(subscribers.flatMap((s) => s.latencyUs))
  if (roundTrips) summary.rttMs = percentiles(result.rttUs)
  if (spec.scenario === 'memory' && subscribers[0]) {
    summary.rssMb = { start: mb(subscribers[0].rssStartBytes), end: mb(subscribers[0].rssEndBytes) }
  }
  return summary
}

const fmt = (value: number | undefined, digits = 0): string =>
  value === undefined || !Number.isFinite(value)
    ? '–'
    : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function status(s: Summary): string {
  if (s.status === 'ok') return 'ok'
  if (s.status === 'failed') return `failed: ${(s.error ?? '').split('\n')[0]?.slice(0, 80)}`
  return s.status
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

function cpuCell(s: Summary): string {
  const subs = s.cpuSeconds.subscribers
  const sub = subs.length ? subs.reduce((a, b) => a + b, 0) / subs.length : 0
  return `${fmt(s.cpuSeconds.node, 2)} / ${fmt(s.cpuSeconds.publisher, 2)} / ${fmt(sub, 2)}`
}

function throughputTable(rows: Summary[]): string {
  return table(
    [
      'configuration',
      'system',
      'status',
      'msg/s per subscriber',
      'msg/s all subscribers',
      'lost / expected',
      'dup',
      'CPU s node / pub / sub',
      'CPU µs/msg',
    ],
    rows.map((s) => [
      s.config,
      label(s),
      status(s),
      fmt(s.perSubscriber),
      fmt(s.aggregate),
      `${fmt(s.lost)} / ${fmt(s.expected)}`,
      fmt(s.duplicates),
      cpuCell(s),
      fmt(s.cpuMicrosPerMessage),
    ]),
  )
}

function percentileTable(rows: Summary[], pick: (s: Summary) => Percentiles | undefined): string {
  return table(
    ['configuration', 'system', 'status', 'samples', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'],
    rows.map((s) => {
      const p = pick(s)
      return [
        s.config,
        label(s),
        status(s),
        fmt(s.received),
        fmt(p?.p50, 3),
        fmt(p?.p90, 3),
        fmt(p?.p99, 3),
        fmt(p?.p999, 3),
        fmt(p?.max, 3),
      ]
    }),
  )
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/** The set-up times of `system`'s 1→1 throughput runs, which the cold-start figures use. */
function coldStarts(rows: Summary[], system: SystemId): NonNullable<Summary['setupMs']>[] {
  return rows
    .filter((s) => s.system === system && s.setupMs && s.scenario === 'throughput' && s.config.startsWith('1→1,'))
    .map((s) => s.setupMs as NonNullable<Summary['setupMs']>)
}

function coldStartTable(rows: Summary[]): string {
  const systems = SYSTEM_IDS.filter((id) => rows.some((s) => s.system === id && s.setupMs))
  return table(
    ['system', 'runs', 'create app ms', 'connect ms', 'create session + invite 1 ms', 'total ms'],
    systems.map((id) => {
      const setups = coldStarts(rows, id)
      const app = median(setups.map((s) => s.appMs))
      const connect = median(setups.map((s) => s.connectMs))
      const session = median(setups.map((s) => s.sessionMs))
      const total = median(setups.map((s) => s.appMs + s.connectMs + s.sessionMs))
      return [SYSTEM_LABELS[id], String(setups.length), fmt(app, 1), fmt(connect, 1), fmt(session, 1), fmt(total, 1)]
    }),
  )
}

function memoryTable(rows: Summary[]): string {
  return table(
    ['system', 'status', 'messages received', 'RSS after connect MB', 'RSS at the end MB'],
    rows.map((s) => [
      SYSTEM_LABELS[s.system],
      status(s),
      fmt(s.received),
      fmt(s.rssMb?.start, 1),
      fmt(s.rssMb?.end, 1),
    ]),
  )
}

export interface Target {
  name: string
  /** The median over the repetitions that measured it. */
  value?: number
  /** The lowest and highest repetition, when there were several. */
  spread?: [number, number]
  limit: string
  met?: boolean
}

/** The completed run of `system` sending to `receiver` (itself unless given), in repetition `rep`. */
function find(
  rows: Summary[],
  system: SystemId,
  scenario: Scenario,
  config: string,
  receiver: SystemId = system,
  rep = 0,
): Summary | undefined {
  return rows.find(
    (s) =>
      s.system === system &&
      (s.receiver ?? s.system) === receiver &&
      s.scenario === scenario &&
      s.config === config &&
      (s.rep ?? 0) === rep &&
      s.status === 'ok',
  )
}

/** The repetitions in `rows`: 0 … the highest. */
function repsOf(rows: Summary[]): number[] {
  const highest = Math.max(0, ...rows.map((s) => s.rep ?? 0))
  return Array.from({ length: highest + 1 }, (_, rep) => rep)
}

/** The median of per-repetition values, and their spread when there are several. */
function overReps(values: Array<number | undefined>): Pick<Target, 'value' | 'spread'> {
  const measured = values.filter((v): v is number => v !== undefined && Number.isFinite(v))
  if (measured.length === 0) return {}
  const sorted = [...measured].sort((a, b) => a - b)
  const middle = sorted.length / 2
  const value =
    sorted.length % 2 === 1
      ? (sorted[Math.floor(middle)] as number)
      : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
  return sorted.length > 1 ? { value, spread: [sorted[0] as number, sorted.at(-1) as number] } : { value }
}

/** The system, or `sender → receiver` for a run that pairs two. */
export function label(s: Pick<Summary, 'system' | 'receiver'> & { rep?: number }): string {
  const receiver = s.receiver ?? s.system
  const systems =
    receiver === s.system ? SYSTEM_LABELS[s.system] : `${SYSTEM_LABELS[s.system]} → ${SYSTEM_LABELS[receiver]}`
  return s.rep ? `${systems} #${s.rep + 1}` : systems
}

/**
 * How much of slim-node's paced p50 above the Rust client's comes from its sending side
 * and how much from its receiving side, from the runs that pair the two.
 */
function latencySplit(rows: Summary[]): string | undefined {
  const config = rows.find((s) => s.scenario === 'latency')?.config ?? ''
  const p50 = (system: SystemId, receiver: SystemId) => find(rows, system, 'latency', config, receiver)?.latencyMs?.p50
  const [rust, sending, receiving, ours] = [
    p50('rust', 'rust'),
    p50('slim-node', 'rust'),
    p50('rust', 'slim-node'),
    p50('slim-node', 'slim-node'),
  ]
  if (rust === undefined || sending === undefined || receiving === undefined || ours === undefined) return undefined
  const us = (ms: number): string => `${Math.round(ms * 1000)} µs`
  return (
    `slim-node's p50 is ${us(ours - rust)} above the Rust client's: ${us(sending - rust)} when only the ` +
    `publisher is slim-node's, ${us(receiving - rust)} when only the subscriber is.`
  )
}

/** The throughput scenarios a target compares, and what their names need in front. */
const THROUGHPUT_SCENARIOS: [Scenario, string][] = [
  ['throughput', 'reliable group '],
  ['unreliable', 'unreliable group '],
  ['p2p', ''],
  ['rpc-stream', ''],
]

/**
 * The targets (issue 22): slim-node against the pure-Rust client on the same crates,
 * measured in the same run, so that the host's scheduling cancels out; and against the
 * official binding and nats.js where those are the reference.
 */
/** slim-node against `other` in each repetition of one configuration: the median ratio and its spread. */
function slimNodeVersus(
  rows: Summary[],
  other: SystemId,
  scenario: Scenario,
  config: string,
  pick: (s: Summary) => number | undefined,
): Pick<Target, 'value' | 'spread'> {
  return overReps(
    repsOf(rows).map((rep) => {
      const ours = find(rows, 'slim-node', scenario, config, 'slim-node', rep)
      const theirs = find(rows, other, scenario, config, other, rep)
      const [a, b] = [ours && pick(ours), theirs && pick(theirs)]
      return a && b ? a / b : undefined
    }),
  )
}

export function targets(rows: Summary[]): Target[] {
  const ratio = (a?: number, b?: number): number | undefined => (a && b ? a / b : undefined)
  const reps = repsOf(rows)
  const versus = (scenario: Scenario, config: string, pick: (s: Summary) => number | undefined) =>
    slimNodeVersus(rows, 'rust', scenario, config, pick)
  const list: Target[] = []
  for (const [scenario, kind] of THROUGHPUT_SCENARIOS) {
    const configs = [...new Set(rows.filter((s) => s.scenario === scenario).map((s) => s.config))]
    for (const config of configs) {
      list.push({
        name: `${kind}${config}: msg/s slim-node / pure Rust`,
        ...versus(scenario, config, (s) => s.perSubscriber),
        limit: '≥ 0.95',
      })
    }
  }
  const reliable = '1→2, 64 B, MLS off'
  // A stalled official run still delivered something; compare with what it managed.
  const official = (rep: number) =>
    rows.find(
      (s) => s.system === 'official' && s.scenario === 'throughput' && s.config === reliable && (s.rep ?? 0) === rep,
    )
  list.push({
    name: `reliable group ${reliable}: msg/s slim-node / official npm binding`,
    ...overReps(
      reps.map((rep) =>
        ratio(
          find(rows, 'slim-node', 'throughput', reliable, 'slim-node', rep)?.perSubscriber,
          official(rep)?.perSubscriber,
        ),
      ),
    ),
    limit: '≥ 20',
  })
  const paced = rows.find((s) => s.scenario === 'latency')?.config ?? ''
  list.push(
    {
      name: 'paced one-way p50: slim-node / pure Rust',
      ...versus('latency', paced, (s) => s.latencyMs?.p50),
      limit: '≤ 1.3',
    },
    {
      name: 'paced one-way p99: slim-node / pure Rust',
      ...versus('latency', paced, (s) => s.latencyMs?.p99),
      limit: '≤ 1.5',
    },
    {
      name: 'request/reply p50: slim-node / pure Rust',
      ...versus('rtt', 'request/reply, 64 B, MLS off', (s) => s.rttMs?.p50),
      limit: '≤ 1.3',
    },
    {
      name: 'slimrpc unary p50: slim-node / pure Rust',
      ...versus('rpc-unary', 'slimrpc unary, 64 B, MLS on', (s) => s.rttMs?.p50),
      limit: '≤ 1.3',
    },
  )
  const setupOf = (system: SystemId): number | undefined =>
    median(coldStarts(rows, system).map((s) => s.appMs + s.connectMs + s.sessionMs))
  const [ourSetup, rustSetup] = [setupOf('slim-node'), setupOf('rust')]
  list.push({
    name: 'cold start (median: app, connect, session + invite), ms more than pure Rust',
    value: ourSetup !== undefined && rustSetup !== undefined ? ourSetup - rustSetup : undefined,
    limit: '≤ 10',
  })
  const memory = (system: SystemId, rep: number) =>
    rows.find((s) => s.system === system && s.scenario === 'memory' && s.status === 'ok' && (s.rep ?? 0) === rep)
  list.push({
    name: 'subscriber RSS after the memory run: slim-node / nats.js',
    ...overReps(reps.map((rep) => ratio(memory('slim-node', rep)?.rssMb?.end, memory('nats', rep)?.rssMb?.end))),
    limit: '≤ 1',
  })
  list.push({
    name: `reliable group ${reliable}: CPU µs/msg slim-node / pure Rust`,
    ...versus('throughput', reliable, (s) => s.cpuMicrosPerMessage),
    limit: '≤ 1.1',
  })
  for (const t of list) {
    if (t.value === undefined) continue
    const bound = Number(t.limit.slice(2))
    t.met = t.limit.startsWith('≥') ? t.value >= bound : t.value <= bound
  }
  return list
}

/**
 * An A/B run (`--base`): this tree's slim-node against the base commit's, per
 * configuration, as the median of the same-repetition ratios (above 1: this tree is
 * faster, for throughput; below 1, for round trips).
 */
export function comparisons(rows: Summary[]): Target[] {
  if (!rows.some((s) => s.system === 'base')) return []
  const list: Target[] = []
  for (const s of rows.filter((row) => row.system === 'base' && (row.rep ?? 0) === 0)) {
    const roundTrip = s.scenario === 'rtt' || s.scenario === 'rpc-unary' || s.scenario === 'latency'
    const pick = (row: Summary) =>
      s.scenario === 'latency' ? row.latencyMs?.p50 : roundTrip ? row.rttMs?.p50 : row.perSubscriber
    list.push({
      name: `${s.scenario} ${s.config}: ${roundTrip ? 'p50' : 'msg/s'} this tree / base`,
      ...slimNodeVersus(rows, 'base', s.scenario, s.config, pick),
      limit: roundTrip ? 'lower is better' : 'higher is better',
    })
  }
  return list
}

export function markdown(rows: Summary[], meta: Record<string, string>): string {
  const of = (scenario: Scenario): Summary[] => rows.filter((s) => s.scenario === scenario)
  const sections: string[] = [
    `# slim-node benchmark results\n`,
    Object.entries(meta)
      .map(([k, v]) => `- ${k}: ${v}`)
      .join('\n'),
  ]
  sections.push(
    '## Targets',
    table(
      ['target', `measured (median of ${repsOf(rows).length})`, 'spread', 'limit', 'met'],
      targets(rows).map((t) => [
        t.name,
        fmt(t.value, 2),
        t.spread ? `${fmt(t.spread[0], 2)}–${fmt(t.spread[1], 2)}` : '–',
        t.limit,
        t.met === undefined ? '–' : t.met ? 'yes' : 'no',
      ]),
    ),
  )
  const add = (title: string, body: string | undefined): void => {
    if (body) sections.push(`## ${title}`, body)
  }
  const ab = comparisons(rows)
  add(
    'A/B: this tree against the base commit',
    ab.length === 0
      ? undefined
      : table(
          ['configuration', 'median', 'spread', ''],
          ab.map((t) => [
            t.name,
            fmt(t.value, 3),
            t.spread ? `${fmt(t.spread[0], 3)}–${fmt(t.spread[1], 3)}` : '–',
            t.limit,
          ]),
        ),
  )
  const nonEmpty = (list: Summary[], render: (list: Summary[]) => string): string | undefined =>
    list.length ? render(list) : undefined
  add('Reliable group throughput', nonEmpty(of('throughput'), throughputTable))
  add('Unreliable group throughput', nonEmpty(of('unreliable'), throughputTable))
  add('Point-to-point throughput (reliable)', nonEmpty(of('p2p'), throughputTable))
  add(
    'Paced one-way latency',
    nonEmpty(of('latency'), (l) =>
      [percentileTable(l, (s) => s.latencyMs), latencySplit(l)].filter((part) => part !== undefined).join('\n\n'),
    ),
  )
  add(
    'Request/reply round trip',
    nonEmpty(of('rtt'), (l) => percentileTable(l, (s) => s.rttMs)),
  )
  add(
    'slimrpc unary round trip',
    nonEmpty(of('rpc-unary'), (l) => percentileTable(l, (s) => s.rttMs)),
  )
  add('slimrpc server-streaming throughput', nonEmpty(of('rpc-stream'), throughputTable))
  add('Cold start (median of the 1→1 throughput runs)', nonEmpty(of('throughput'), coldStartTable))
  add('Memory: subscriber RSS after a long stream', nonEmpty(of('memory'), memoryTable))
  return `${sections.join('\n\n')}\n`
}

const COLORS: Record<SystemId, string> = {
  'slim-node': '#2f6fdf',
  base: '#9dbcf2',
  rust: '#8a8f98',
  official: '#e0702f',
  python: '#3aa76d',
  nats: '#9b59b6',
}

/** A grouped bar chart (SVG) of reliable group throughput per subscriber. */
export function chart(rows: Summary[]): string {
  const data = rows.filter((s) => s.scenario === 'throughput')
  const configs = [...new Set(data.map((s) => s.config))]
  const systems = SYSTEM_IDS.filter((id) => data.some((s) => s.system === id))
  const max = Math.max(1, ...data.map((s) => s.perSubscriber ?? 0))
  const [left, barHeight, gap, width, top] = [170, 14, 12, 560, 40]
  const groupHeight = systems.length * barHeight + gap
  const height = top + configs.length * groupHeight + 20 + systems.length * 18
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 90}" height="${height}" font-family="sans-serif" font-size="11">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="10" y="22" font-size="14" font-weight="bold">Reliable group: messages per second per subscriber (higher is better)</text>`,
  ]
  configs.forEach((config, g) => {
    const y0 = top + g * groupHeight
    parts.push(
      `<text x="${left - 8}" y="${y0 + (systems.length * barHeight) / 2 + 4}" text-anchor="end">${config}</text>`,
    )
    systems.forEach((id, i) => {
      // The median repetition's figure, on the first run's status.
      const s = data.find((d) => d.config === config && d.system === id)
      const runs = data.filter((d) => d.config === config && d.system === id)
      const value = overReps(runs.map((d) => d.perSubscriber)).value ?? 0
      const w = (value / max) * width
      const y = y0 + i * barHeight
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight - 2}" fill="${COLORS[id]}"/>`)
      const label = s ? `${fmt(value)}${s.status === 'ok' ? '' : ` (${s.status})`}` : 'not run'
      parts.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + barHeight - 4}">${label}</text>`)
    })
  })
  const legendTop = top + configs.length * groupHeight + 10
  systems.forEach((id, i) => {
    const y = legendTop + i * 18
    parts.push(`<rect x="${left}" y="${y}" width="12" height="12" fill="${COLORS[id]}"/>`)
    parts.push(`<text x="${left + 18}" y="${y + 10}">${SYSTEM_LABELS[id]}</text>`)
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}
