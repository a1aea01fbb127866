import { createServer } from 'node:net'
import {
  type App,
  createLocalApp,
  type Message,
  type Session,
  SlimError,
  type SlimServer,
  startServer,
} from '../src-ts/index.js'

export const SECRET = 'slim-node-test-secret-0123456789abcdef'

/** An embedded node on a free loopback port. */
export function startTestServer(): Promise<SlimServer> {
  return startServer({ endpoint: '127.0.0.1:0' })
}

export function connectApp(server: SlimServer, name: string): Promise<App> {
  return createLocalApp({ local: name, slim: { endpoint: server.url, tls: { insecure: true } }, sharedSecret: SECRET })
}

/** A group `org/<ns>/chat` moderated by `org/<ns>/moderator`, with `org/<ns>/member` joined. */
export async function joinedPair(
  server: SlimServer,
  ns: string,
): Promise<{ moderator: App; member: App; group: Session; session: Session }> {
  const moderator = await connectApp(server, `org/${ns}/moderator`)
  const member = await connectApp(server, `org/${ns}/member`)
  const group = await moderator.createGroupSession(`org/${ns}/chat`)
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

/** The SlimError a promise rejects with; fails the test if it resolves or rejects otherwise. */
export async function rejectionOf(promise: Promise<unknown>): Promise<SlimError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof SlimError) return error
    throw new Error(`expected a SlimError, got ${String(error)}`, { cause: error })
  }
  throw new Error('expected a rejection, but the promise resolved')
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
