// Calls the Greeter of examples/rpc/server.ts through the generated client stub: one
// unary call and one server-streaming call.
//   node examples/rpc/client.ts [--name world] [--slim http://127.0.0.1:46357]
import { create } from '@bufbuild/protobuf'
import { Command } from 'commander'
import { createLocalApp, RpcChannel } from 'slim-node'
import { CountRequestSchema, HelloRequestSchema } from './gen/greeter_pb.js'
import { GreeterClient } from './gen/greeter_slimrpc.js'

const SECRET = 'slim-node-development-secret-0123456789'

const options = new Command('rpc-client')
  .description('call example.greeter.v1.Greeter at example/rpc/greeter')
  .option('--name <name>', 'who to greet', 'world')
  .option('--count <n>', 'what to count down from', '3')
  .option('--slim <url>', 'SLIM node to connect to', 'http://127.0.0.1:46357')
  .parse()
  .opts<{ name: string; count: string; slim: string }>()

try {
  const app = await createLocalApp({
    local: 'example/rpc/client',
    slim: { endpoint: options.slim },
    sharedSecret: SECRET,
  })
  const greeter = new GreeterClient(new RpcChannel(app, 'example/rpc/greeter'))
  const reply = await greeter.SayHello(create(HelloRequestSchema, { name: options.name }), 10_000)
  console.log(`${reply.message} (the server saw ${reply.caller})`)
  for await (const tick of greeter.CountDown(create(CountRequestSchema, { from: Number(options.count) }), 10_000)) {
    console.log(`countdown ${tick.value}`)
  }
  await app.close()
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
