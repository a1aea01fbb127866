import { ClientFactory } from '@a2a-js/sdk/client'
import { expect, test } from 'vitest'
import { A2A_SERVICE, createA2AClient, SlimRpcTransportFactory, serveA2A } from '../src-ts/a2a/index.js'
import { RpcChannel, RpcError, type SlimServer } from '../src-ts/index.js'
import { echoCard, echoHandler, expectEchoAgent, sendRequest, textsOf } from './a2a-agent.js'
import { connectApp, rejectionOf, runServiceExample, startTestServer, track } from './helpers.js'

async function serveEcho(node: SlimServer, name: string) {
  const app = track(await connectApp(node, name))
  const stop = new AbortController()
  const serving = serveA2A(app, echoHandler(name), { signal: stop.signal })
  track({
    close: () => {
      stop.abort()
      return serving
    },
  })
}

test('an A2A client reads the card, sends, streams, reads and cancels tasks over SLIM', async () => {
  const node = track(await startTestServer())
  await serveEcho(node, 'org/a2a/echo')
  const app = track(await connectApp(node, 'org/a2a/user'))
  const client = await createA2AClient(app, 'org/a2a/echo', { timeout: 20_000 })
  await expectEchoAgent(client, 'node echo agent')

  // The agent sees the caller as SLIM verified it: the subject of its MLS identity.
  const who = await client.sendMessage(sendRequest('whoami'))
  expect('artifacts' in who && textsOf(who.artifacts[0]?.parts)[0]).toMatch(/^user: org\/a2a\/user/)
})

test("the SDK's ClientFactory picks the slimrpc transport from an agent card", async () => {
  const node = track(await startTestServer())
  await serveEcho(node, 'org/a2a/echo')
  const app = track(await connectApp(node, 'org/a2a/user'))
  const factory = new ClientFactory({ transports: [new SlimRpcTransportFactory(app, { timeout: 20_000 })] })
  const client = await factory.createFromAgentCard(echoCard('org/a2a/echo'))
  const sent = await client.sendMessage(sendRequest('via the factory'))
  expect('artifacts' in sent && textsOf(sent.artifacts[0]?.parts)).toEqual(['echo: via the factory'])
})

test('bytes that are not an A2A request get a typed slimrpc error; the server goes on', async () => {
  const node = track(await startTestServer())
  await serveEcho(node, 'org/a2a/echo')
  const app = track(await connectApp(node, 'org/a2a/raw'))
  const channel = new RpcChannel(app, 'org/a2a/echo')
  const failed = await rejectionOf(
    channel.unary(A2A_SERVICE, 'GetTask', new Uint8Array([0xff, 0xff, 0xff]), { timeout: 10_000 }),
  )
  expect(failed).toBeInstanceOf(RpcError)
  const client = await createA2AClient(app, 'org/a2a/echo', { timeout: 20_000 })
  expect((await client.getAgentCard()).name).toBe('node echo agent')
})

test('node examples/a2a/server.ts and client.ts: the card, an answer, a stream; the agent stops on SIGTERM', async () => {
  const { client, stopped, code } = await runServiceExample('a2a', ['--text', 'over slim'])
  expect(client).toBe(
    [
      'agent: shouter (repeats what it is told, in capitals)',
      'answer: OVER SLIM',
      'streamed: task, artifactUpdate, statusUpdate',
      '',
    ].join('\n'),
  )
  expect([stopped, code]).toEqual(['A2A agent stopped', 0])
}, 90_000)
