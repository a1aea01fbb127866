// Property-based fuzzing of the public API on a real embedded node: every exported function,
// option and method gets generated junk, concurrently and after close. Each call must settle
// (at once, or once its owner closes) with a value or a SlimError that is not INTERNAL, the
// process must not crash, and afterwards it must still carry an MLS group message.
// SLIM_FUZZ_RUNS sets the number of cases (`npm run soak` runs tens of thousands).
import { appendFileSync } from 'node:fs'
import fc from 'fast-check'
import { beforeAll, expect, test } from 'vitest'
import * as slim from '../src-ts/index.js'
import { type App, type Session, SlimError, type SlimServer } from '../src-ts/index.js'
import { closeAll, connectApp, receive, SECRET, sharedResources, startTestServer, text, track } from './helpers.js'

const RUNS = Number(process.env.SLIM_FUZZ_RUNS ?? 200)
// SLIM_FUZZ_SEED replays the cases of a reported failure.
const SEED = process.env.SLIM_FUZZ_SEED === undefined ? undefined : Number(process.env.SLIM_FUZZ_SEED)
const trace = process.env.FUZZ_TRACE
/** How long calls run before their app is closed (the ones that wait on peers then end). */
const PENDING_MS = 500
/** How long a call may stay pending once everything it depends on was closed. */
const SETTLE_MS = 20_000

function deep(levels: number): unknown {
  let value: Record<string, unknown> = { endpoint: 'http://127.0.0.1:1' }
  for (let i = 0; i < levels; i++) value = { inner: value, tls: value, identity: value }
  return value
}

function throwingProxy(): unknown {
  const trap = () => {
    throw new Error('a trap that throws')
  }
  return new Proxy({}, { get: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, getPrototypeOf: trap })
}

function revokedProxy(): unknown {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
}

const numbers = fc.constantFrom(
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -1,
  -0,
  0,
  0.5,
  1,
  2 ** 31,
  2 ** 53,
  1e300,
)
const strings = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '',
    'x'.repeat(10_000),
    'org/ns/app',
    'org/fuzz/peer',
    'org/fuzz/chat',
    `org/${'n'.repeat(10_000)}/app`,
    'org/ns/app/0191d7b0-7c36-7bb3-9f8c-2d6f1c2a9e10',
    'a b/c/d',
    'http://127.0.0.1:1',
    'https://',
    '\u0000/\u0000/\u0000',
  ),
)
/**
 * A value made only when a case runs: fast-check inspects what it generates, and a revoked
 * or throwing proxy would break fast-check itself rather than the API.
 */
class Recipe {
  readonly name: string
  readonly make: () => unknown
  constructor(name: string, make: () => unknown) {
    this.name = name
    this.make = make
  }
  toString(): string {
    return this.name
  }
}

function made(value: unknown): unknown {
  if (value instanceof Recipe) return value.make()
  if (Array.isArray(value)) return value.map(made)
  if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, made(item)]))
  }
  return value
}

const recipes = (entries: Record<string, () => unknown>) =>
  fc.constantFrom(...Object.entries(entries).map(([name, make]) => new Recipe(name, make)))

const signals = recipes({
  aborted: () => AbortSignal.abort(),
  abortedWithReason: () => AbortSignal.abort(new Error('reason')),
  abortsSoon: () => AbortSignal.timeout(1),
  live: () => new AbortController().signal,
  aString: () => 'abort',
  lookAlike: () => ({ aborted: false, addEventListener() {} }),
  proxied: () => new Proxy(new AbortController().signal, {}),
})
const specials = recipes({
  throwingProxy,
  revokedProxy,
  deep5: () => deep(5),
  deep2000: () => deep(2_000),
  symbol: () => Symbol('junk'),
  bigint: () => 10n ** 30n,
  func: () => () => 'a function',
  bytes: () => new Uint8Array(3),
  emptyBuffer: () => Buffer.alloc(0),
  arrayBuffer: () => new ArrayBuffer(8),
  date: () => new Date(0),
  map: () => new Map([['a', 'b']]),
  nullPrototype: () => Object.create(null),
})

/** Junk of every kind, including options objects that are almost right. */
const junk: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  // Bounded depth: options nest in options a few levels down, not without end.
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    { weight: 3, arbitrary: fc.anything({ maxDepth: 2 }) },
    { weight: 3, arbitrary: strings },
    { weight: 2, arbitrary: numbers },
    { weight: 2, arbitrary: specials },
    { weight: 2, arbitrary: signals },
    // Wait options with nothing else wrong, so that signals reach the waits they end.
    { weight: 4, arbitrary: fc.record({ signal: signals }) },
    {
      weight: 4,
      arbitrary: fc.record(
        {
          timeout: fc.oneof(numbers, fc.constant(50), fc.anything({ maxDepth: 0 })),
          signal: signals,
          interval: fc.oneof(numbers, fc.constant(20)),
          maxRetries: fc.oneof(numbers, fc.constant(1)),
          reliable: fc.oneof(fc.boolean(), tie('value')),
          mls: fc.oneof(fc.boolean(), tie('value')),
          metadata: fc.oneof(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })), tie('value')),
          payloadType: fc.oneof(strings, tie('value')),
          endpoint: fc.oneof(strings, tie('value')),
          tls: fc.oneof(fc.constant({ insecure: true }), tie('value')),
          name: fc.oneof(strings, tie('value')),
          identity: fc.oneof(fc.constant({ sharedSecret: SECRET }), tie('value')),
          sharedSecret: fc.oneof(fc.constant(SECRET), strings),
          local: strings,
          slim: fc.oneof(fc.constant({ endpoint: 'http://127.0.0.1:1' }), tie('value')),
          org: strings,
          namespace: strings,
          app: strings,
          id: strings,
        },
        { requiredKeys: [] },
      ),
    },
  ),
})).value

/** The default endpoint is a fixed port other tests may hold: junk without one gets port 0. */
function awayFromDefaultPort(options: unknown): unknown {
  if (options === undefined || options === null) return { endpoint: '127.0.0.1:0' }
  try {
    if (typeof options === 'object' && !Object.hasOwn(options, 'endpoint')) {
      return { ...options, endpoint: '127.0.0.1:0' }
    }
  } catch {
    // A proxy that throws: the API has to cope with it as it is.
  }
  return options
}

interface Case {
  app: App
  group: Session
}

type Operation = (context: Case, args: unknown[]) => unknown
// Junk reaches the API the way untyped JavaScript would pass it.
// biome-ignore lint/suspicious/noExplicitAny: the point is to pass what the types forbid
type Loose = any

const operations: Record<string, Operation> = {
  createApp: (_, [a]) => slim.createApp(a as Loose),
  createAppFields: (_, [a, b]) => slim.createApp({ name: a, identity: b } as Loose),
  createLocalApp: (_, [a]) => slim.createLocalApp(a as Loose),
  startServer: (_, [a]) => slim.startServer(awayFromDefaultPort(a) as Loose),
  parseName: (_, [a]) => slim.parseName(a as Loose),
  formatName: (_, [a]) => slim.formatName(a as Loose),
  // Process-wide and meant to be called once: only values that cannot enable it.
  enableOpentelemetry: (_, [a]) =>
    slim.enableOpentelemetry((typeof a === 'object' && a !== null ? throwingProxy() : a) as Loose),
  setPeerTimeout: (_, [a]) => slim.setPeerTimeout(a as Loose),
  version: () => slim.version(),
  isSlimError: (_, [a, b]) => slim.isSlimError(a, b as Loose),
  connect: ({ app }, [a]) => app.connect(a as Loose),
  subscribe: ({ app }, [a, b]) => app.subscribe(a as Loose, b as Loose),
  unsubscribe: ({ app }, [a, b]) => app.unsubscribe(a as Loose, b as Loose),
  setRoute: ({ app }, [a, b]) => app.setRoute(a as Loose, b as Loose),
  removeRoute: ({ app }, [a, b]) => app.removeRoute(a as Loose, b as Loose),
  createGroupSession: ({ app }, [a, b]) => app.createGroupSession(a as Loose, b as Loose),
  createPointToPointSession: ({ app }, [a, b]) => app.createPointToPointSession(a as Loose, b as Loose),
  listenForSession: ({ app }, [a]) => app.listenForSession(a as Loose),
  sessions: async ({ app }, [a]) => (await app.sessions(a as Loose).next()).value,
  appClose: ({ app }, [a]) => app.close(a as Loose),
  publish: ({ group }, [a, b]) => group.publish(a as Loose, b as Loose),
  publishTo: ({ group }, [a, b, c]) => group.publishTo(a as Loose, b as Loose, c as Loose),
  publishMany: ({ group }, [a, b]) => group.publishMany(a as Loose, b as Loose),
  getMessage: ({ group }, [a]) => group.getMessage(a as Loose),
  invite: ({ group }, [a, b]) => group.invite(a as Loose, b as Loose),
  remove: ({ group }, [a, b]) => group.remove(a as Loose, b as Loose),
  participants: ({ group }, [a]) => group.participants(a as Loose),
  sessionClose: ({ group }, [a]) => group.close(a as Loose),
  sessionGetters: ({ group }) => [group.id, group.type, group.source, group.destination, group.metadata, group.closed],
  serverStop: async (_, [a]) => {
    const own = await slim.startServer({ endpoint: '127.0.0.1:0' })
    try {
      await own.stop(a as Loose)
    } finally {
      await own.stop()
    }
  },
  serverStopped: async (_, [a]) => {
    const own = await slim.startServer({ endpoint: '127.0.0.1:0' })
    const stopped = settle(() => own.stopped(a as Loose))
    await own.stop()
    const outcome = await stopped
    if (!outcome.ok) throw outcome.error
  },
}

const call = fc.record({
  operation: fc.constantFrom(...Object.keys(operations)),
  args: fc.array(junk, { minLength: 0, maxLength: 3 }),
})

/** What a call came to: a value, or what it threw or rejected with. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown }

function settle(run: () => unknown): Promise<Outcome> {
  try {
    return Promise.resolve(run()).then(
      (value) => ({ ok: true, value }),
      (error: unknown) => ({ ok: false, error }),
    )
  } catch (error) {
    return Promise.resolve({ ok: false, error })
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** Closes whatever a successful call made (apps, sessions, nodes) so no case leaks into the next. */
async function release(value: unknown): Promise<void> {
  if (typeof value !== 'object' || value === null) return
  const owner = value as { close?: unknown; stop?: unknown }
  if (value instanceof slim.SlimServer) await value.stop()
  else if (value instanceof slim.App || value instanceof slim.Session) await (owner.close as () => Promise<void>)()
}

let server: SlimServer
const seen = new Map<string, number>()

const shared = sharedResources()
beforeAll(async () => {
  server = shared(await startTestServer())
})

test(
  `${RUNS} cases of junk through every exported function and method settle with typed errors`,
  async () => {
    let index = 0
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 4 }), fc.boolean(), async (calls, afterClose) => {
        // Disposed of when the case ends, however it ends: a failing case leaves nothing to the next.
        await using app = await connectApp(server, `org/fuzz/app-${index++}`)
        await using group = await app.createGroupSession('org/fuzz/chat', { maxRetries: 1, interval: 50 })
        const context: Case = { app, group }
        // A case that blocks the process cannot report itself: FUZZ_TRACE=<file> logs each first.
        if (trace) appendFileSync(trace, `${index} ${afterClose} ${fc.stringify(calls)}\n`)
        const run = () =>
          calls.map(({ operation, args }) => settle(() => operations[operation]?.(context, args.map(made))))
        // All at once, as concurrent callers would; or after the app closed.
        if (afterClose) await closeAll(group, app)
        const started = run()
        const outcomes = await within(
          (async () => {
            await Promise.race([Promise.all(started), new Promise((resolve) => setTimeout(resolve, PENDING_MS))])
            // Whatever still waits (on peers that do not exist) must end once its owner closes.
            await closeAll(group, app)
            return Promise.all(started)
          })(),
          SETTLE_MS,
          calls.map((c) => c.operation).join(', '),
        )
        // What the calls made goes first, so that a case failing on an error below leaks none of it.
        for (const outcome of outcomes) if (outcome.ok) await release(outcome.value)
        for (const [i, outcome] of outcomes.entries()) {
          const name = calls[i]?.operation ?? '?'
          if (outcome.ok) continue
          const { error } = outcome
          if (!(error instanceof SlimError)) throw new Error(`${name} failed with a non-SlimError: ${String(error)}`)
          if (error.code === 'INTERNAL') throw new Error(`${name} failed with INTERNAL: ${error.message}`)
          if (error.message.length === 0) throw new Error(`${name} failed with an empty message`)
          seen.set(error.code, (seen.get(error.code) ?? 0) + 1)
        }
      }),
      { numRuns: RUNS, endOnFailure: true, seed: SEED },
    )
    // The junk reached deep enough to meet most of the error codes.
    expect([...seen.keys()]).toEqual(expect.arrayContaining(['INVALID_ARGUMENT', 'INVALID_NAME', 'CLOSED', 'ABORTED']))
    console.log(`fuzz: ${RUNS} cases; errors by code: ${JSON.stringify(Object.fromEntries(seen))}`)
  },
  60_000 + RUNS * 2_000,
)

test('afterwards the same process still carries an MLS group message end to end', async () => {
  const moderator = track(await connectApp(server, 'org/fuzz/moderator'))
  const member = track(await connectApp(server, 'org/fuzz/member'))
  const group = track(await moderator.createGroupSession('org/fuzz/after', { mls: true }))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/fuzz/member')
  const session = await joined
  await group.publish('still carried, encrypted')
  const [message] = await receive(session, 1)
  expect(message && text(message)).toBe('still carried, encrypted')
})
