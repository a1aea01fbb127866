// slimrpc against upstream's Python package (slim-bindings 3.3.8 from PyPI,
// interop/python/rpc_peer.py): a slim-node client calling a Python server and a Python
// client calling a slim-node server, all four shapes, statuses, deadlines and metadata.
// Upstream's channel always sets its session up with MLS, in Python as in slim-node.
import { expect, test } from 'vitest'
import { RpcChannel } from '../src-ts/index.js'
import { connectApp, rejectionOf, SECRET, startTestServer, track } from './helpers.js'
import { type PeerEvent, PythonPeer } from './python-peer.js'
import { collect, decode, echoServer, SERVICE } from './rpc-service.js'

const python = (role: string, args: string[]) =>
  track(new PythonPeer(role, [...args, '--secret', SECRET], 'rpc_peer.py'))

test('a slim-node client calls a Python slimrpc server', async () => {
  const node = track(await startTestServer())
  const server = python('rpc-server', ['--slim', node.url, '--local', 'org/pyrpc/server'])
  await server.waitFor('ready', 60_000)
  const client = track(await connectApp(node, 'org/pyrpc/client'))
  const channel = new RpcChannel(client, 'org/pyrpc/server')
  const echoed = await channel.unary(SERVICE, 'Echo', 'hi', { timeout: 20_000 }).catch((error) => {
    throw new Error(`${error}: ${server.output()}`)
  })
  expect(decode(echoed)).toBe('echo:hi')
  expect(await collect(channel.unaryStream(SERVICE, 'Count', '3'))).toEqual(['0', '1', '2'])
  expect(decode(await channel.streamUnary(SERVICE, 'Sum', ['4', '5', '6']))).toBe('15')
  expect(await collect(channel.streamStream(SERVICE, 'Chat', ['x', 'y']))).toEqual(['chat:x', 'chat:y'])
  const failed = await rejectionOf(channel.unary(SERVICE, 'Fail', 'RESOURCE_EXHAUSTED'))
  expect(failed).toMatchObject({ code: 'RPC', status: 'RESOURCE_EXHAUSTED', message: 'failed as asked' })
  const late = await rejectionOf(channel.unary(SERVICE, 'Slow', '3000', { timeout: 300 }))
  expect(late).toMatchObject({ code: 'RPC', status: 'DEADLINE_EXCEEDED' })
  const who = JSON.parse(decode(await channel.unary(SERVICE, 'Whoami', '', { metadata: { trace: 'node' } })))
  expect(who.metadata).toMatchObject({ trace: 'node', service: SERVICE, method: 'Whoami' })
  expect(who.subject).toMatch(/^org\/pyrpc\/client/)
})

test('a Python slimrpc client calls a slim-node server', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/noderpc/server')
  const client = python('rpc-client', [
    '--slim',
    node.url,
    '--local',
    'org/noderpc/client',
    '--remote',
    'org/noderpc/server',
  ])
  await client.waitFor('done', 90_000)
  const result = (name: string): PeerEvent & Record<string, unknown> =>
    client.events.find(
      (event) => event.event === 'result' && (event as unknown as Record<string, unknown>).case === name,
    ) as never
  expect(result('unary').value).toBe('echo:hi')
  expect(result('unary-stream').values).toEqual(['0', '1', '2'])
  expect(result('stream-unary').value).toBe('6')
  expect(result('stream-stream').values).toEqual(['chat:a', 'chat:b'])
  expect(result('error')).toMatchObject({ code: 'PERMISSION_DENIED', message: 'failed as asked' })
  expect(result('deadline').code).toBe('DEADLINE_EXCEEDED')
  const who = result('metadata') as unknown as { metadata: Record<string, string>; peer: { subject: string } }
  expect(who.metadata).toMatchObject({ trace: 'py', service: SERVICE, method: 'Whoami' })
  expect(who.peer.subject).toMatch(/^org\/noderpc\/client/)
})
