import { ChildProcess, type ExecFileOptions, execFile, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Socket, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify, stripVTControlCharacters } from 'node:util'
import { afterAll, onTestFinished } from 'vitest'
import { nodeBinary } from '../scripts/node-binaries.mjs'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import { upstreamNode } from '../scripts/upstream-node.mjs'
import { App, createLocalApp, type Message, Session, SlimError, SlimServer, startServer } from '../src-ts/index.js'

export const SECRET = 'slim-node-test-secret-0123456789abcdef'

/**
 * What a test must give back however it ends: apps and sessions close, nodes stop, child
 * processes (a ChildProcess, or an object holding one as `child`) are killed, and anything
 * else with `close()` (a listener, a collector) closes.
 */
export type Resource = AsyncDisposable | ChildProcess | { readonly child: ChildProcess } | { close(): Promise<unknown> }

/** Registers a resource for release and returns it, as {@link track} and {@link sharedResources} do. */
export type Keep = <T extends Resource>(resource: T) => T

/** What the running test tracked so far; its onTestFinished hook releases it. */
let tracked: Resource[] | undefined

/**
 * Releases `resource` when the current test ends, passed or failed, and returns it:
 * `const app = track(await connectApp(server, name))`. Call it inside a test, not in a hook
 * (for beforeAll, see {@link sharedResources}). Releasing twice is harmless, so a test may
 * still close what it tracked itself.
 */
export function track<T extends Resource>(resource: T): T {
  if (!tracked) {
    const resources: Resource[] = []
    onTestFinished(async () => {
      if (tracked === resources) tracked = undefined
      await releaseAll(resources)
    })
    tracked = resources
  }
  tracked.push(resource)
  return resource
}

/**
 * For resources a file or describe block shares: call it at collection time (it registers
 * an afterAll), then wrap each resource as beforeAll makes it, `server = shared(await
 * startTestServer())`. afterAll releases every one that exists, also when beforeAll failed
 * partway; `shared.release()` releases them earlier, from an afterAll that must release
 * them even if it fails itself.
 */
export function sharedResources(): Keep & { release(): Promise<void> } {
  const resources: Resource[] = []
  const release = () => releaseAll(resources)
  afterAll(release)
  return Object.assign(
    <T extends Resource>(resource: T): T => {
      resources.push(resource)
      return resource
    },
    { release },
  )
}

/** Apps and sessions go first, so that their closes still reach the nodes, processes and listeners they use. */
const releasedFirst = (resource: Resource): boolean => resource instanceof App || resource instanceof Session

/**
 * Releases and forgets `resources`, newest first: apps and sessions, then the rest. One
 * failing does not keep the others held; the failures are thrown after.
 */
async function releaseAll(resources: Resource[]): Promise<void> {
  const newestFirst = resources.splice(0).reverse()
  const errors: unknown[] = []
  for (const resource of [...newestFirst.filter(releasedFirst), ...newestFirst.filter((r) => !releasedFirst(r))]) {
    try {
      await release(resource)
    } catch (error) {
      errors.push(error)
    }
  }
  if (errors.length === 1) throw errors[0]
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} resources failed to release`)
}

async function release(resource: Resource): Promise<void> {
  if (resource instanceof ChildProcess) await kill(resource)
  else if ('child' in resource) await kill(resource.child)
  else if (Symbol.asyncDispose in resource) await resource[Symbol.asyncDispose]()
  else await resource.close()
}

/** Kills `child` unless it is gone already, and waits until it has exited. */
async function kill(child: ChildProcess): Promise<void> {
  // A process that failed to spawn has no pid and may never emit `exit`.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  await exited
}

const execFileAsync = promisify(execFile)

/**
 * `promisify(execFile)`, its output as strings, whose process is killed when the test
 * ends (or, with `keep` from {@link sharedResources}, with the suite) if it still runs.
 */
export function run(
  file: string,
  args: readonly string[],
  options: Omit<ExecFileOptions, 'encoding'> = {},
  keep: Keep = track,
): Promise<{ stdout: string; stderr: string }> {
  const running = execFileAsync(file, args, { ...options, encoding: 'utf8' })
  keep(running.child)
  return running
}

/**
 * The server example (examples/server.ts by default) on a free port, as `startExampleServer`
 * of scripts/processes.mjs starts it, but tracked from the moment it is spawned: a node that
 * never prints its URL is killed with the test too.
 */
export async function trackedExampleServer({
  echo,
  node,
  dir,
  cwd,
  script = 'server.ts',
}: {
  echo?: boolean
  node?: string
  dir?: string
  cwd?: string
  script?: string
} = {}): Promise<{
  server: ExampleProcess
  url: string
  slim: string
}> {
  const options = { stdin: 'ignore', echo, node, dir, cwd } as const
  const server = track(new ExampleProcess('server', script, ['--endpoint', '127.0.0.1:0'], options))
  const line = await server.waitFor('SLIM node listening on')
  const url = line.slice(line.indexOf('http://'))
  return { server, url, slim: JSON.stringify({ endpoint: url, tls: { insecure: true } }) }
}

/**
 * One of the service examples (`rpc`, `mcp`, `a2a`) as a user runs it, on Node 22's type
 * stripping: `examples/<kind>/server.ts` on a free port, `client.ts` against it with
 * `args`, then SIGTERM to the server. Gives the client's output and what the server
 * printed last and exited with.
 */
export async function runServiceExample(
  kind: string,
  args: string[],
): Promise<{ client: string; stopped: string; code: number | null }> {
  const node = nodeBinary('22')
  const server = track(
    new ExampleProcess(`${kind} server`, `${kind}/server.ts`, ['--endpoint', '127.0.0.1:0'], { node, stdin: 'ignore' }),
  )
  const line = await server.waitFor(/ on http:\/\/\S+$/, 30_000)
  const url = line.slice(line.lastIndexOf('http://'))
  const { stdout } = await run(node, [`examples/${kind}/client.ts`, '--slim', url, ...args], {
    cwd: root,
    timeout: 30_000,
  })
  server.signal('SIGTERM')
  const code = await server.exitCode(10_000)
  return { client: stdout, stopped: server.lines.at(-1) ?? '', code }
}

/** An embedded node on a free loopback port. */
export function startTestServer(): Promise<SlimServer> {
  return startServer({ endpoint: '127.0.0.1:0' })
}

export function connectApp(server: Pick<SlimServer, 'url'>, name: string): Promise<App> {
  return createLocalApp({ local: name, slim: { endpoint: server.url, tls: { insecure: true } }, sharedSecret: SECRET })
}

/**
 * A group `org/<ns>/chat` moderated by `org/<ns>/moderator`, with `org/<ns>/member` joined;
 * both apps and the group are released when the test ends.
 */
export async function joinedPair(
  server: SlimServer,
  ns: string,
): Promise<{ moderator: App; member: App; group: Session; session: Session }> {
  const moderator = track(await connectApp(server, `org/${ns}/moderator`))
  const member = track(await connectApp(server, `org/${ns}/member`))
  const group = track(await moderator.createGroupSession(`org/${ns}/chat`))
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite(`org/${ns}/member`)
  return { moderator, member, group, session: await joined }
}

/** Receives exactly `count` messages, failing if they do not arrive within `timeout` ms each. */
export async function receive(session: Session, count: number, timeout = 10_000): Promise<Message[]> {
  const messages: Message[] = []
  while (messages.length < count) messages.push(await session.getMessage({ timeout }))
  return messages
}

/** Closes everything given, in order, ignoring nothing: close must not fail. */
export async function closeAll(...items: Array<{ close(): Promise<void> } | { stop(): Promise<void> } | undefined>) {
  for (const item of items) {
    if (!item) continue
    if ('close' in item) await item.close()
    else await item.stop()
  }
}

export const text = (message: Message): string => Buffer.from(message.payload).toString('utf8')

/**
 * The SlimError a promise rejects with; fails the test if it resolves or rejects otherwise.
 * An app, session or node it resolves with instead is released when the test ends.
 */
export async function rejectionOf(promise: Promise<unknown>): Promise<SlimError> {
  let value: unknown
  try {
    value = await promise
  } catch (error) {
    if (error instanceof SlimError) return error
    throw new Error(`expected a SlimError, got ${String(error)}`, { cause: error })
  }
  if (value instanceof App || value instanceof Session || value instanceof SlimServer) track(value)
  throw new Error('expected a rejection, but the promise resolved')
}

/** A slim-node node in its own process (the package's CLI) on `port`, once it listens; killed when the test ends. */
export async function nodeProcessAt(port: number): Promise<ExampleProcess> {
  const node = track(
    new ExampleProcess('node', 'cli.js', ['server', '--endpoint', `127.0.0.1:${port}`], { dir: join(root, 'dist') }),
  )
  await node.waitFor('listening')
  return node
}

/**
 * Upstream's own `slim` node binary listening on `port` (plain text), once it says it
 * serves; killed when the test ends.
 */
export async function upstreamNodeAt(port: number): Promise<ChildProcess> {
  const config = join(mkdtempSync(join(tmpdir(), 'slim-upstream-')), 'config.yaml')
  const yaml = ['tracing:', '  log_level: info', 'services:', '  slim/0:', '    dataplane:', '      servers:']
  yaml.push(
    `        - endpoint: "127.0.0.1:${port}"`,
    '          tls:',
    '            insecure: true',
    '      clients: []',
    '',
  )
  writeFileSync(config, yaml.join('\n'))
  const node = track(spawn(upstreamNode(), ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] }))
  await new Promise<void>((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => reject(new Error(`slim did not start: ${output}`)), 30_000)
    const read = (chunk: Buffer) => {
      output += stripVTControlCharacters(chunk.toString())
      if (output.includes('dataplane server started')) {
        clearTimeout(timer)
        node.stdout.off('data', read)
        node.stderr.off('data', read)
        // Keep draining, so that a full pipe never blocks the node.
        node.stdout.resume()
        node.stderr.resume()
        resolve()
      }
    }
    node.stdout.on('data', read)
    node.stderr.on('data', read)
    node.once('exit', (code) => reject(new Error(`slim exited with ${code}: ${output}`)))
  })
  return node
}

/** A loopback port nobody listens on. */
export async function closedPort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** A TCP proxy to `port` on loopback whose connections can be paused (nothing flows either way). */
export async function pausableProxy(port: number) {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const node = tcpConnect(port, '127.0.0.1')
    for (const [from, to] of [
      [client, node],
      [node, client],
    ] as const) {
      sockets.add(from)
      from.pipe(to)
      from.on('error', () => to.destroy())
      from.on('close', () => {
        sockets.delete(from)
        to.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no proxy port')
  return {
    url: `http://127.0.0.1:${address.port}`,
    pause(ms: number): Promise<void> {
      for (const socket of sockets) socket.pause()
      return new Promise((resolve) =>
        setTimeout(() => {
          for (const socket of sockets) socket.resume()
          resolve()
        }, ms),
      )
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
