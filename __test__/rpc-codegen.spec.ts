import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { create } from '@bufbuild/protobuf'
// The package as users import it (dist), as the generated code does.
import { createApp, RpcChannel, type RpcContext, RpcError, RpcServer, startServer } from 'slim-node'
import { expect, onTestFinished, test } from 'vitest'
import {
  CountReplySchema,
  CountRequestSchema,
  HelloReplySchema,
  HelloRequestSchema,
} from '../examples/rpc/gen/greeter_pb.js'
import { GreeterClient, GreeterGroupClient, registerGreeterServicer } from '../examples/rpc/gen/greeter_slimrpc.js'
import { root } from '../scripts/processes.mjs'
import { runServiceExample, SECRET, track } from './helpers.js'

const gen = join(root, 'examples', 'rpc', 'gen')

test('examples/rpc/gen is what the plugins generate today, and it compiles against slim-node', async () => {
  const out = mkdtempSync(join(root, '.tmp-rpc-gen-'))
  onTestFinished(() => rmSync(out, { recursive: true, force: true }))
  const { generate } = await import('../scripts/gen-rpc.mjs')
  generate(out)
  const files = readdirSync(gen).sort()
  expect(readdirSync(out).sort()).toEqual(files)
  for (const file of files) expect(readFileSync(join(out, file), 'utf8')).toBe(readFileSync(join(gen, file), 'utf8'))
}, 120_000)

async function greeter(url: string, name: string) {
  const app = track(await createApp({ name, identity: { sharedSecret: SECRET } }))
  await app.connect({ endpoint: url })
  const server = track(new RpcServer(app))
  registerGreeterServicer(server, {
    async SayHello(request, context: RpcContext) {
      if (request.name === 'nobody') throw new RpcError('NOT_FOUND', 'no such person')
      return create(HelloReplySchema, { message: `Hello, ${request.name}!`, caller: context.peer?.subject ?? '' })
    },
    async *CountDown(request) {
      for (let value = request.from; value > 0; value--) yield create(CountReplySchema, { value })
    },
    async Collect(requests) {
      const names: string[] = []
      for await (const request of requests) names.push(request.name)
      return create(HelloReplySchema, { message: names.join('+') })
    },
    async *Chat(requests) {
      for await (const request of requests) yield create(HelloReplySchema, { message: `hi ${request.name}` })
    },
  })
  void server.serve()
  return app
}

async function* people(...names: string[]) {
  for (const name of names) yield create(HelloRequestSchema, { name })
}

test('generated clients and servicer registration run on slim-node', async () => {
  const node = track(await startServer({ endpoint: '127.0.0.1:0' }))
  await greeter(node.url, 'org/gen/a')
  await greeter(node.url, 'org/gen/b')
  const caller = track(await createApp({ name: 'org/gen/caller', identity: { sharedSecret: SECRET } }))
  await caller.connect({ endpoint: node.url })

  const client = new GreeterClient(new RpcChannel(caller, 'org/gen/a'))
  const hello = await client.SayHello(create(HelloRequestSchema, { name: 'Ada' }), 10_000)
  expect(hello.message).toBe('Hello, Ada!')
  expect(hello.caller).toMatch(/^org\/gen\/caller/)
  const ticks = []
  for await (const tick of client.CountDown(create(CountRequestSchema, { from: 3 }))) ticks.push(tick.value)
  expect(ticks).toEqual([3, 2, 1])
  expect((await client.Collect(people('x', 'y'))).message).toBe('x+y')
  const chat = []
  for await (const reply of client.Chat(people('p', 'q'))) chat.push(reply.message)
  expect(chat).toEqual(['hi p', 'hi q'])
  const missing = await client.SayHello(create(HelloRequestSchema, { name: 'nobody' })).catch((error) => error)
  expect(missing).toBeInstanceOf(RpcError)
  expect(missing).toMatchObject({ code: 'RPC', status: 'NOT_FOUND' })

  const group = new GreeterGroupClient(new RpcChannel(caller, ['org/gen/a', 'org/gen/b']))
  const replies = []
  for await (const { context, response } of group.SayHello(create(HelloRequestSchema, { name: 'all' }), 20_000)) {
    replies.push(`${context.source}: ${response.message}`)
  }
  expect(replies.sort()).toEqual(['org/gen/a: Hello, all!', 'org/gen/b: Hello, all!'])
  const counted = []
  for await (const { response } of group.CountDown(create(CountRequestSchema, { from: 2 })))
    counted.push(response.value)
  expect(counted.sort()).toEqual([1, 1, 2, 2])
})

test('node examples/rpc/server.ts and client.ts greet and count down; the server stops on SIGTERM', async () => {
  const { client, stopped, code } = await runServiceExample('rpc', ['--name', 'Ada'])
  expect(client).toContain('Hello, Ada! (the server saw example/rpc/client')
  expect(client).toContain('countdown 3\ncountdown 2\ncountdown 1')
  expect([stopped, code]).toEqual(['Greeter stopped', 0])
}, 90_000)
