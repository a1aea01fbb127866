// A2A over SLIM against upstream's Python slima2a 0.9.3 (a2a-sdk 1.2.3, slim-bindings
// 3.3.8, from PyPI; interop/python/a2a_peer.py): a slim-node A2A client using a Python
// agent, and a Python client using a slim-node agent, the same echo agent on both sides.
import { TaskState } from '@a2a-js/sdk'
import { TaskNotFoundError } from '@a2a-js/sdk/errors'
import { expect, test } from 'vitest'
import { createA2AClient, serveA2A } from '../src-ts/a2a.js'
import { echoHandler, textsOf, userMessage } from './a2a-agent.js'
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
  expect((await client.getAgentCard()).name).toBe('python echo agent')
  const request = (text: string) => ({
    message: userMessage(text),
    tenant: '',
    configuration: undefined,
    metadata: undefined,
  })
  const sent = await client.sendMessage(request('hello'))
  if (!('artifacts' in sent)) throw new Error(`expected a task, got ${JSON.stringify(sent)}`)
  expect(sent.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
  expect(textsOf(sent.artifacts.flatMap((artifact) => artifact.parts))).toEqual(['echo: hello'])
  const kinds: string[] = []
  for await (const event of client.sendMessageStream(request('stream me'))) kinds.push(event.payload?.$case ?? 'none')
  expect(kinds[0]).toBe('task')
  expect(kinds).toContain('artifactUpdate')
  expect(kinds.at(-1)).toBe('statusUpdate')
  const again = await client.getTask({ id: sent.id, historyLength: undefined, tenant: '' })
  expect(again.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
  const waiting = await client.sendMessage(request('ask'))
  if (!('artifacts' in waiting)) throw new Error('expected a task')
  expect(waiting.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED)
  const cancelled = await client.cancelTask({ id: waiting.id, tenant: '', metadata: undefined })
  expect(cancelled.status?.state).toBe(TaskState.TASK_STATE_CANCELED)
  await expect(client.getTask({ id: 'no-such-task', historyLength: undefined, tenant: '' })).rejects.toBeInstanceOf(
    TaskNotFoundError,
  )
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
