import { expect, test } from 'vitest'
import { createA2AClient, serveA2A } from '../src-ts/a2a/index.js'
import { echoHandler, expectEchoAgent } from './a2a-agent.js'
import { connectApp, SECRET, startTestServer, track } from './helpers.js'
import { PythonPeer } from './python-peer.js'

const python = (role: string, args: string[]) =>
  track(new PythonPeer(role, [...args, '--secret', SECRET], 'a2a_peer.py'))

test('a slim-node A2A client uses a slima2a agent', async () => {
  const node = track(await startTestServer())
  const agent = python('a2a-server', ['--slim', node.url, '--local', 'org/pya2a/echo'])
  await agent.waitFor('ready', 60_000)
  const app = track(await connectApp(node, 'org/pya2a/user'))
  const client = await createA2AClient(app, 'org/pya2a/echo', { timeout: 20_000 })
  await expectEchoAgent(client, 'python echo agent')
})

test('a slima2a client uses a slim-node agent', async () => {
  const node = track(await startTestServer())
  const app = track(await connectApp(node, 'org/nodea2a/echo'))
  const stop = new AbortController()
  const serving = serveA2A(app, echoHandler('org/nodea2a/echo'), { signal: stop.signal })
  track({
    close: () => {
      stop.abort()
      return serving
    },
  })
  const client = python('a2a-client', [
    '--slim',
    node.url,
    '--local',
    'org/nodea2a/user',
    '--remote',
    'org/nodea2a/echo',
  ])
  await client.waitFor('done', 90_000)
  const result = (name: string) =>
    client.events.find((event) => event.event === 'result' && (event as { case?: string }).case === name) as
      | Record<string, unknown>
      | undefined
  expect(result('card')).toMatchObject({ name: 'node echo agent', streaming: true })
  expect(result('send')).toMatchObject({ state: 'TASK_STATE_COMPLETED', texts: ['echo: hello'] })
  expect(result('stream')?.kinds).toEqual(['task', 'statusUpdate', 'artifactUpdate', 'statusUpdate'])
  expect(result('get')).toMatchObject({ state: 'TASK_STATE_COMPLETED', texts: ['echo: hello'] })
  expect(result('cancel')).toMatchObject({ before: 'TASK_STATE_INPUT_REQUIRED', after: 'TASK_STATE_CANCELED' })
  // slima2a's convention: the status, and the A2A error's name leading the message.
  expect(result('missing')).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/^TaskNotFoundError: /) })
})
