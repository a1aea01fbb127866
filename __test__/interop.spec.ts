// slim-node against the upstream Python package (slim-bindings 3.3.8 from PyPI), on a
// slim-node node and on a node hosted by the Python package itself.
import { describe, expect, test } from 'vitest'
import type { Message, Session } from '../src-ts/index.js'
import { createLocalApp, startServer } from '../src-ts/index.js'
import { closedPort, receive, SECRET, text, track, upstreamNodeAt } from './helpers.js'
import { PythonPeer } from './python-peer.js'

const TYPE = 'text/interop'
/** A Python peer, killed when the test ends. */
const python = (role: string, args: string[]) => track(new PythonPeer(role, [...args, '--secret', SECRET]))
/** A slim-node app, closed when the test ends. */
const app = async (url: string, name: string) =>
  track(await createLocalApp({ local: name, slim: { endpoint: url }, sharedSecret: SECRET }))
/** What a member publishes, in the Python peer's format. */
const publishAll = async (session: Session, local: string, count: number) => {
  for (let i = 1; i <= count; i++) {
    await session.publish(`${local} #${i}`, { payloadType: TYPE, metadata: { sender: local } })
  }
}
const seen = (messages: Array<{ source?: string; payload?: string }>) =>
  messages.map((m) => `${m.source} ${m.payload}`).sort()
const fromNode = (messages: Message[]) => messages.map((m) => ({ source: m.source, payload: text(m) }))
const expected = (senders: string[], count: number) =>
  senders.flatMap((s) => Array.from({ length: count }, (_, i) => `${s} ${s} #${i + 1}`)).sort()

/** A node moderator invites a slim-node and a Python participant; all three publish. */
async function nodeModeratedGroup(url: string, mls: boolean, tag: string) {
  const [moderatorName, jsName, pyName] = ['moderator', 'js', 'py'].map((n) => `org/${tag}/${n}`) as [
    string,
    string,
    string,
  ]
  const moderator = await app(url, moderatorName)
  const js = await app(url, jsName)
  const py = python('participant', ['--slim', url, '--local', pyName, '--count', '2', '--expect', '4'])
  const group = track(await moderator.createGroupSession(`org/${tag}/room`, { mls, maxRetries: 5, interval: 500 }))
  const joined = js.listenForSession({ timeout: 30_000 })
  await group.invite(jsName)
  const session = await joined
  await py.waitFor('connected') // a slow start would otherwise outlast the invite's retries
  await group.invite(pyName) // the Python member publishes as soon as it has joined
  await py.waitFor('joined')
  await Promise.all([publishAll(group, moderatorName, 2), publishAll(session, jsName, 2)])

  const atModerator = await receive(group, 4)
  const atJs = await receive(session, 4)
  await py.waitFor('done')
  expect(seen(fromNode(atModerator))).toEqual(expected([jsName, pyName], 2))
  expect(seen(fromNode(atJs))).toEqual(expected([moderatorName, pyName], 2))
  expect(seen(py.messages())).toEqual(expected([moderatorName, jsName], 2))
  // Payload type and metadata cross in both directions.
  for (const message of atJs.filter((m) => m.source === pyName)) {
    expect(message.payloadType).toBe(TYPE)
    expect(message.metadata).toMatchObject({ sender: pyName })
  }
  for (const message of py.messages()) {
    expect(message.payloadType).toBe(TYPE)
    expect(message.metadata).toMatchObject({ sender: message.source })
  }
  py.close()
  expect(await py.exited).toBe(0)
  // Ended here, while its node still runs: a caller may shut that node down next.
  await group.close()
}

describe.each([false, true])('with Python slim-bindings 3.3.8, mls=%s', (mls) => {
  test('a slim-node moderator, a Python and a slim-node participant all receive everything', async () => {
    const node = track(await startServer({ endpoint: '127.0.0.1:0' }))
    await nodeModeratedGroup(node.url, mls, `interop-a${Number(mls)}`)
  }, 90_000)

  test('a Python moderator invites two slim-node participants', async () => {
    const node = track(await startServer({ endpoint: '127.0.0.1:0' }))
    const tag = `interop-b${Number(mls)}`
    const names = [`org/${tag}/js-1`, `org/${tag}/js-2`]
    const members = await Promise.all(names.map((name) => app(node.url, name)))
    const joined = members.map((member) => member.listenForSession({ timeout: 30_000 }))
    const moderatorName = `org/${tag}/py-moderator`
    const moderator = python('moderator', [
      '--slim',
      node.url,
      '--local',
      moderatorName,
      '--channel',
      `org/${tag}/room`,
      ...names.flatMap((name) => ['--invite', name]),
      ...(mls ? ['--mls'] : []),
      '--count',
      '2',
      '--expect',
      '4',
    ])
    const sessions = await Promise.all(joined)
    await moderator.waitFor('ready')
    await Promise.all(sessions.map((session, i) => publishAll(session, names[i] as string, 2)))
    for (const [i, session] of sessions.entries()) {
      const other = names[1 - i] as string
      expect(seen(fromNode(await receive(session, 4)))).toEqual(expected([moderatorName, other], 2))
    }
    await moderator.waitFor('done')
    expect(seen(moderator.messages())).toEqual(expected(names, 2))
    moderator.close()
    expect(await moderator.exited).toBe(0)
  }, 90_000)

  test('point-to-point request/reply, slim-node to Python and Python to slim-node', async () => {
    const node = track(await startServer({ endpoint: '127.0.0.1:0' }))
    const tag = `interop-c${Number(mls)}`
    // slim-node asks, Python answers.
    const responder = python('responder', ['--slim', node.url, '--local', `org/${tag}/py`, '--count', '3'])
    const asker = await app(node.url, `org/${tag}/js-asker`)
    await responder.waitFor('connected')
    const session = await asker.createPointToPointSession(`org/${tag}/py`, { mls, maxRetries: 5, interval: 500 })
    for (let i = 1; i <= 3; i++) {
      await session.publish(`request #${i}`, { payloadType: TYPE, metadata: { sender: asker.name } })
      const reply = await session.getMessage({ timeout: 10_000 })
      expect(text(reply)).toBe(`reply:request #${i}`)
      expect(reply.source).toBe(`org/${tag}/py`)
      expect(reply.payloadType).toBe(TYPE)
      expect(reply.metadata).toMatchObject({ sender: asker.name, 'replied-by': `org/${tag}/py` })
    }
    await responder.waitFor('done')

    // Python asks, slim-node answers.
    const answerer = await app(node.url, `org/${tag}/js-answerer`)
    const incoming = answerer.listenForSession({ timeout: 30_000 })
    const requester = python('requester', [
      '--slim',
      node.url,
      '--local',
      `org/${tag}/py-asker`,
      '--peer',
      answerer.name,
      '--count',
      '3',
      ...(mls ? ['--mls'] : []),
    ])
    const served = await incoming
    for (let i = 1; i <= 3; i++) {
      const request = await served.getMessage({ timeout: 10_000 })
      expect(request.payloadType).toBe(TYPE)
      expect(request.metadata).toMatchObject({ sender: `org/${tag}/py-asker` })
      await served.publishTo(request, `reply:${text(request)}`, {
        payloadType: request.payloadType,
        metadata: { ...request.metadata, 'replied-by': answerer.name },
      })
    }
    await requester.waitFor('done')
    expect(requester.messages().map((m) => [m.source, m.payload, m.payloadType, m.metadata?.['replied-by']])).toEqual(
      [1, 2, 3].map((i) => [answerer.name, `reply:request #${i}`, TYPE, answerer.name]),
    )
  }, 90_000)
})

test('the group works on a SLIM node hosted by the Python package, with MLS', async () => {
  const host = track(new PythonPeer('node', ['--endpoint', '127.0.0.1:0']))
  const { url } = await host.waitFor('listening')
  await nodeModeratedGroup(url as string, true, 'interop-d')
  host.close()
  expect(await host.exited).toBe(0)
}, 90_000)

test('the group works on upstream’s own `slim` node binary, with MLS', async () => {
  const port = await closedPort()
  await upstreamNodeAt(port)
  await nodeModeratedGroup(`http://127.0.0.1:${port}`, true, 'interop-e')
}, 90_000)
