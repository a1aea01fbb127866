// slimrpc between slim-node apps on a real embedded node: the four call shapes, status
// codes, deadlines, metadata and the caller's identity, group calls, and backpressure.
import { getEventListeners } from 'node:events'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import { RpcChannel, RpcError, RpcServer } from '../src-ts/index.js'
import { connectApp, rejectionOf, startTestServer, track } from './helpers.js'
import { collect, decode, echoServer, SERVICE } from './rpc-service.js'

test('all four shapes between two slim-node apps', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpc/server')
  const client = track(await connectApp(node, 'org/rpc/client'))
  const channel = new RpcChannel(client, 'org/rpc/server')
  expect(decode(await channel.unary(SERVICE, 'Echo', 'hi', { timeout: 10_000 }))).toBe('echo:hi')
  expect(await collect(channel.unaryStream(SERVICE, 'Count', '4'))).toEqual(['0', '1', '2', '3'])
  expect(decode(await channel.streamUnary(SERVICE, 'Sum', ['1', '2', '3']))).toBe('6')
  async function* lines() {
    yield 'a'
    yield 'b'
  }
  expect(await collect(channel.streamStream(SERVICE, 'Chat', lines()))).toEqual(['chat:a', 'chat:b'])
})

test('statuses, deadlines, metadata and identity reach the other side', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpcerr/server')
  const client = track(await connectApp(node, 'org/rpcerr/client'))
  const channel = new RpcChannel(client, 'org/rpcerr/server')
  const failed = await rejectionOf(channel.unary(SERVICE, 'Fail', 'NOT_FOUND'))
  expect(failed).toBeInstanceOf(RpcError)
  expect(failed).toMatchObject({ code: 'RPC', status: 'NOT_FOUND', message: 'failed as asked' })
  expect(await rejectionOf(channel.unary(SERVICE, 'Throw', ''))).toMatchObject({ status: 'UNKNOWN' })
  expect(await rejectionOf(channel.unary(SERVICE, 'Missing', ''))).toMatchObject({ status: 'UNIMPLEMENTED' })
  const late = await rejectionOf(channel.unary(SERVICE, 'Slow', '2000', { timeout: 300 }))
  expect(late).toMatchObject({ code: 'RPC', status: 'DEADLINE_EXCEEDED' })
  const who = JSON.parse(
    decode(await channel.unary(SERVICE, 'Whoami', '', { metadata: { trace: 'n1' }, timeout: 5_000 })),
  )
  expect(who.metadata).toMatchObject({ trace: 'n1', service: SERVICE, method: 'Whoami' })
  expect(who.peer.subject).toMatch(/^org\/rpcerr\/client/)
  expect(who.remaining).toBeGreaterThan(0)
  expect(who.remaining).toBeLessThanOrEqual(5_000)
  expect((await channel.peer())?.subject).toMatch(/^org\/rpcerr\/server/)
})

test('an abort signal stops a call', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpcabort/server')
  const client = track(await connectApp(node, 'org/rpcabort/client'))
  const channel = new RpcChannel(client, 'org/rpcabort/server')
  const controller = new AbortController()
  const pending = channel.unary(SERVICE, 'Slow', '5000', { signal: controller.signal })
  controller.abort(new Error('enough'))
  const aborted = await rejectionOf(pending)
  expect(aborted.code).toBe('ABORTED')
  expect(decode(await channel.unary(SERVICE, 'Echo', 'after'))).toBe('echo:after')
})

test('calls that share one abort signal take their listeners off it as they finish', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpclisten/server')
  const client = track(await connectApp(node, 'org/rpclisten/client'))
  const channel = new RpcChannel(client, 'org/rpclisten/server')
  const { signal } = new AbortController()
  for (let i = 0; i < 100; i++) {
    expect(decode(await channel.unary(SERVICE, 'Echo', `${i}`, { signal }))).toBe(`echo:${i}`)
    expect(await collect(channel.unaryStream(SERVICE, 'Count', '2', { signal }))).toEqual(['0', '1'])
  }
  // A stream left before its end takes its listener off too.
  for await (const _ of channel.unaryStream(SERVICE, 'Count', '5', { signal })) break
  expect(getEventListeners(signal, 'abort')).toHaveLength(0)
})

test('a server process killed during a call: the call fails within 5 s', async () => {
  const node = track(await startTestServer())
  const server = track(
    new ExampleProcess('rpc', 'rpc-peer.mjs', ['org/rpcdead/server', node.url], {
      dir: join(root, '__test__', 'fixtures'),
    }),
  )
  await server.waitFor('ready', 30_000)
  const client = track(await connectApp(node, 'org/rpcdead/client'))
  const channel = new RpcChannel(client, 'org/rpcdead/server')
  const call = channel.unary('test.Dying', 'Hang', '', { timeout: 5_000 })
  await server.waitFor('called', 30_000)
  server.child.kill('SIGKILL')
  // Ended by the peer timeout (3 s), which ends upstream's session under the call, not
  // by the call's own deadline at 5 s.
  const failed = await rejectionOf(call)
  expect(failed).toBeInstanceOf(RpcError)
  expect(failed).toMatchObject({ code: 'RPC', status: 'INTERNAL', message: expect.stringContaining('Session closed') })
})

test('a group channel yields every member answer', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpcgroup/a')
  await echoServer(node, 'org/rpcgroup/b')
  const client = track(await connectApp(node, 'org/rpcgroup/client'))
  const group = new RpcChannel(client, ['org/rpcgroup/a', 'org/rpcgroup/b'])
  const answers = []
  for await (const answer of group.multicastUnary(SERVICE, 'Echo', 'all', { timeout: 20_000 })) answers.push(answer)
  expect(answers.map((a) => [a.source, a.data && decode(a.data)]).sort()).toEqual([
    ['org/rpcgroup/a', 'echo:all'],
    ['org/rpcgroup/b', 'echo:all'],
  ])
  const failures = []
  for await (const answer of group.multicastUnary(SERVICE, 'Fail', 'ABORTED')) failures.push(answer)
  expect(failures.map((a) => a.error?.status)).toEqual(['ABORTED', 'ABORTED'])
})

// Upstream's server closes each session at shutdown waiting up to 10 s for its peer, which
// may have left already: close() waits for the calls, not for that.
test('close() settles soon after the callers left, round after round', async () => {
  const node = track(await startTestServer())
  for (let round = 0; round < 3; round++) {
    const serverApp = track(await connectApp(node, `org/stop/server${round}`))
    const server = new RpcServer(serverApp)
    server.registerUnaryUnary('stop.Test', 'Ping', (request) => request)
    const serving = server.serve()
    const clientApp = await connectApp(node, `org/stop/client${round}`)
    const channel = new RpcChannel(clientApp, `org/stop/server${round}`)
    expect(decode(await channel.unary('stop.Test', 'Ping', 'hi', { timeout: 10_000 }))).toBe('hi')
    await clientApp.close()
    const started = performance.now()
    await server.close()
    await serving
    expect(performance.now() - started).toBeLessThan(3_000)
  }
})
