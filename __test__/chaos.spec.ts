// Chaos: random faults against a five-member MLS group while its moderator publishes
// throughout. The faults: the node SIGKILLed and restarted, a member SIGKILLed and
// restored from its store, a member going offline and rejoining, and the connections of
// two members paused in a TCP proxy. `npm test` runs 60 s of node restarts and proxy
// pauses (README, "Chaos"), `npm run chaos` 10 minutes with all; SLIM_CHAOS_SECONDS sets the
// length, SLIM_CHAOS_FAULTS the faults, SLIM_CHAOS_SEED replays a run's. What must hold:
// - every resolved publish reached, exactly once, every member the moderator listed
//   online for the whole time it was in flight and that was not killed within its retry
//   window;
// - every member is listed online again within a minute of the last fault;
// - no process crashes, and no publish waits past its bound;
// - the moderator's memory stays flat.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, onTestFinished, test } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import type { SlimError, SlimServer } from '../src-ts/index.js'
import { closedPort, connectApp, nodeProcessAt, pausableProxy, track } from './helpers.js'

const SECONDS = Number(process.env.SLIM_CHAOS_SECONDS ?? 60)
const SEED = Number(process.env.SLIM_CHAOS_SEED ?? Date.now() % 2 ** 31)
const KINDS = ['node restart', 'member killed', 'member offline', 'proxy paused'] as const
/** The faults to draw from (`SLIM_CHAOS_FAULTS`, comma-separated; all by default). */
const FAULTS = (process.env.SLIM_CHAOS_FAULTS?.split(',') ?? [...KINDS]).map((kind) => {
  const known = KINDS.find((k) => k === kind.trim())
  if (!known) throw new Error(`SLIM_CHAOS_FAULTS: unknown fault ${kind}; the faults are ${KINDS.join(', ')}`)
  return known
})
const MEMBERS = 5
/** Members that reach the node through the pausable proxy. */
const PROXIED = 2
const PUBLISH_TIMEOUT = 30_000
const RETRIES = { maxRetries: 5, interval: 300 }
/** How long a message is retransmitted to a member that does not acknowledge it. */
const RETRY_WINDOW = RETRIES.maxRetries * RETRIES.interval
/** How often the moderator's participant list is read. */
const ROSTER_EVERY = 200
/**
 * How far around a publish the list is read for it: a read reflects the list as it was
 * when the session's task answered, which lags under load, and a member listed offline
 * only briefly could otherwise fall between two reads.
 */
const ROSTER_MARGIN = 1_000

/** A seeded pseudo-random source (mulberry32), so that a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

interface Publish {
  body: string
  start: number
  end: number
  outcome: 'resolved' | SlimError['code']
}

test(
  `chaos for ${SECONDS} s against a five-member MLS group (seed ${SEED})`,
  async () => {
    const next = random(SEED)
    const port = await closedPort()
    let node = await nodeProcessAt(port)
    const proxy = track(await pausableProxy(port))
    const server = { url: `http://127.0.0.1:${port}` } as SlimServer
    const moderator = track(await connectApp(server, 'org/chaos/moderator'))
    const group = track(await moderator.createGroupSession('org/chaos/group', { mls: true, ...RETRIES }))

    const names = Array.from({ length: MEMBERS }, (_, i) => `org/chaos/member-${i}`)
    const stores = names.map(() => mkdtempSync(join(tmpdir(), 'slim-node-chaos-')))
    onTestFinished(() => {
      for (const dir of stores) rmSync(dir, { recursive: true, force: true })
    })
    /** Each member's processes, the current one last; their `got` lines together are what it received. */
    const lives: ExampleProcess[][] = names.map(() => [])
    const killed = new Set<ExampleProcess>()
    const start = (i: number, mode: 'join' | 'restore'): ExampleProcess => {
      const endpoint = i < PROXIED ? proxy.url : server.url
      const member = track(
        new ExampleProcess(
          `member-${i}`,
          'chaos-member.mjs',
          [names[i] as string, endpoint, stores[i] as string, mode],
          {
            dir: join(root, '__test__', 'fixtures'),
          },
        ),
      )
      lives[i]?.push(member)
      return member
    }
    for (const [i, name] of names.entries()) {
      const member = start(i, 'join')
      const invited = group.invite(name, { timeout: 30_000 })
      await member.waitFor(/^joined /, 30_000)
      await invited
    }

    // What the moderator lists online, sampled.
    const roster: Array<{ at: number; online: Set<string> }> = []
    let running = true
    const watching = (async () => {
      while (running) {
        const listed = await group.participants().catch(() => [])
        roster.push({ at: performance.now(), online: new Set(listed.filter((p) => p.online).map((p) => p.name)) })
        await new Promise((resolve) => setTimeout(resolve, ROSTER_EVERY))
      }
    })()

    const publishes: Publish[] = []
    const publishing = (async () => {
      for (let i = 0; running; i++) {
        const body = `m-${i}`
        const begun = performance.now()
        const outcome = await group.publish(body, { timeout: PUBLISH_TIMEOUT }).then(
          () => 'resolved' as const,
          (error: SlimError) => error.code,
        )
        publishes.push({ body, start: begun, end: performance.now(), outcome })
        await new Promise((resolve) => setTimeout(resolve, outcome === 'resolved' ? 20 : 100))
      }
    })()

    const rssAtStart = process.memoryUsage().rss
    const faults = new Map<string, number>()
    /** When each fault began and ended, for the report of a failing run. */
    const timeline: Array<{ kind: string; member: number; from: number; to: number }> = []
    const faultsUntil = performance.now() + SECONDS * 1000
    while (performance.now() < faultsUntil) {
      await new Promise((resolve) => setTimeout(resolve, 1_000 + next() * 2_000))
      const i = Math.floor(next() * MEMBERS)
      const member = lives[i]?.at(-1) as ExampleProcess
      const kind = FAULTS[Math.floor(next() * FAULTS.length)]
      if (!kind) continue
      faults.set(kind, (faults.get(kind) ?? 0) + 1)
      const began = performance.now()
      if (kind === 'node restart') {
        killed.add(node)
        node.signal('SIGKILL')
        await node.exitCode()
        node = await nodeProcessAt(port)
      } else if (kind === 'member killed') {
        killed.add(member)
        member.signal('SIGKILL')
        await member.exitCode()
        await start(i, 'restore').waitFor(/^restored /, 60_000)
      } else if (kind === 'member offline') {
        const from = member.lines.length
        member.write('offline')
        await member.waitFor(/^(offline|failed)/, 15_000)
        await new Promise((resolve) => setTimeout(resolve, 500 + next() * 1_500))
        member.write('online')
        await member.waitFor(/^(online|failed)/, 15_000)
        // A member that could not change state says why; it is not a loss of messages.
        for (const line of member.lines.slice(from)) if (line.startsWith('failed')) console.log(`member-${i}: ${line}`)
      } else {
        await proxy.pause(500 + next() * 2_000)
      }
      timeline.push({ kind, member: i, from: began, to: performance.now() })
    }

    // Calm: the faults stop; publishing goes on until every member is listed online again.
    const calmUntil = performance.now() + 60_000
    while (performance.now() < calmUntil && names.some((name) => !roster.at(-1)?.online.has(name))) {
      await new Promise((resolve) => setTimeout(resolve, ROSTER_EVERY))
    }
    const onlineAtEnd = names.filter((name) => roster.at(-1)?.online.has(name)).length
    const missing = names
      .map((name, i) => ({ name, member: lives[i]?.at(-1) }))
      .filter(({ name }) => !roster.at(-1)?.online.has(name))
      .map(
        ({ name, member }) =>
          `${name} (${[...(member?.lines ?? []), ...(member?.errors ?? [])]
            .filter((l) => !l.startsWith('got '))
            .slice(-4)
            .join(' | ')})`,
      )
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    running = false
    await Promise.all([publishing, watching])
    const rssAtEnd = process.memoryUsage().rss
    // What is still on its way: the last resolved publish reaches each member listed online.
    await new Promise((resolve) => setTimeout(resolve, 3_000))

    const received = lives.map((processes) => {
      const times = new Map<string, number>()
      for (const line of processes.flatMap((p) => p.lines)) {
        if (line.startsWith('got ')) times.set(line.slice(4), (times.get(line.slice(4)) ?? 0) + 1)
      }
      return times
    })
    /** Whether the moderator listed `name` online in every sample taken while `publish` was in flight. */
    const onlineThroughout = (name: string, publish: Publish): boolean => {
      const during = roster.filter(({ at }) => at >= publish.start - ROSTER_MARGIN && at <= publish.end + ROSTER_MARGIN)
      return during.length > 0 && during.every(({ online }) => online.has(name))
    }
    /**
     * Whether member `i` was SIGKILLed within `publish`'s retry window (a second either
     * side). Its SLIM layer acknowledges a message as it arrives, and hands it on in
     * order: a process killed meanwhile loses what it acknowledged but had not handed
     * on, before its moderator can tell.
     */
    const killedDuring = (i: number, publish: Publish): boolean => {
      const from = publish.start - 1_000
      const to = Math.max(publish.end, publish.start + RETRY_WINDOW) + 1_000
      return timeline.some(
        (fault) => fault.kind === 'member killed' && fault.member === i && fault.from <= to && fault.to >= from,
      )
    }
    let lost = 0
    let twice = 0
    let required = 0
    const examples: string[] = []
    for (const publish of publishes.filter((p) => p.outcome === 'resolved')) {
      for (const [i, name] of names.entries()) {
        if (!onlineThroughout(name, publish) || killedDuring(i, publish)) continue
        required++
        const times = received[i]?.get(publish.body) ?? 0
        if (times === 0) lost++
        if (times > 1) twice++
        if (times !== 1 && examples.length < 5) {
          const t0 = roster[0]?.at ?? 0
          const near = timeline
            .filter(({ from, to }) => to >= publish.start - 5_000 && from <= publish.end + 5_000)
            .map(
              ({ kind, member, from, to }) =>
                `${kind} (member-${member}) ${Math.round(from - t0)}–${Math.round(to - t0)} ms`,
            )
          const listed = roster
            .filter(({ at }) => at >= publish.start - 3_000 && at <= publish.end + 3_000)
            .map(({ at, online }) => `${Math.round(at - t0)}${online.has(name) ? '+' : '-'}`)
          examples.push(
            `${publish.body} at member-${i}: ${times}, in flight ${Math.round(publish.start - t0)}–${Math.round(publish.end - t0)} ms, near ${near.join(', ') || 'no fault'}; listed online (+) or not (-) at ${listed.join(' ')}`,
          )
        }
      }
    }
    const outcomes = new Map<string, number>()
    for (const { outcome } of publishes) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    const crashed = [node, ...lives.flat()].filter((p) => !killed.has(p) && p.child.exitCode !== null)
    const slowest = Math.max(...publishes.map((p) => p.end - p.start))
    console.log(
      [
        `chaos ${SECONDS} s, seed ${SEED}`,
        `faults: ${[...faults].map(([kind, n]) => `${n} ${kind}`).join(', ')}`,
        `publishes: ${[...outcomes].map(([outcome, n]) => `${n} ${outcome}`).join(', ')}`,
        `deliveries owed ${required}, lost ${lost}, duplicated ${twice}${examples.length ? ` (${examples.join('; ')})` : ''}`,
        `members online after the faults: ${onlineAtEnd} of ${MEMBERS}${missing.length ? ` (not: ${missing.join('; ')})` : ''}; slowest publish ${Math.round(slowest)} ms; moderator RSS ${(rssAtStart / 2 ** 20).toFixed(1)} → ${(rssAtEnd / 2 ** 20).toFixed(1)} MiB`,
      ].join('\n'),
    )
    expect(faults.size).toBeGreaterThan(0)
    expect(required).toBeGreaterThan(0)
    expect({ lost, twice }).toEqual({ lost: 0, twice: 0 })
    // The group goes on: every member is back once the faults stop.
    expect(onlineAtEnd).toBe(MEMBERS)
    expect(crashed.map((p) => p.name)).toEqual([])
    expect(slowest).toBeLessThan(PUBLISH_TIMEOUT + 2_000)
    expect(rssAtEnd - rssAtStart).toBeLessThan(64 * 2 ** 20)
  },
  (SECONDS + 240) * 1000,
)
