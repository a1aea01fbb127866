// The Greeter service of greeter.proto, served with the stubs upstream's protoc plugin
// generated (examples/rpc/gen, `npm run gen:rpc`), on a SLIM node embedded in this process.
//   node examples/rpc/server.ts [--endpoint 127.0.0.1:46357]
import { create } from '@bufbuild/protobuf'
import { Command } from 'commander'
import { createLocalApp, RpcServer, startServer } from 'slim-node'
import { CountReplySchema, HelloReplySchema } from './gen/greeter_pb.js'
import { registerGreeterServicer } from './gen/greeter_slimrpc.js'

/** A development secret that meets SLIM's 32-byte minimum. Never use it in production. */
const SECRET = 'slim-node-development-secret-0123456789'

const { endpoint } = new Command('rpc-server')
  .description('serve example.greeter.v1.Greeter as example/rpc/greeter on an embedded SLIM node')
  .option('--endpoint <host:port>', 'address to listen on', '127.0.0.1:46357')
  .parse()
  .opts<{ endpoint: string }>()

try {
  const node = await startServer({ endpoint })
  const app = await createLocalApp({ local: 'example/rpc/greeter', slim: { endpoint: node.url }, sharedSecret: SECRET })
  const server = new RpcServer(app)
  registerGreeterServicer(server, {
    async SayHello(request, context) {
      const caller = context.peer?.subject ?? 'someone unverified'
      return create(HelloReplySchema, { message: `Hello, ${request.name}!`, caller })
    },
    async *CountDown(request) {
      for (let value = request.from; value > 0; value--) yield create(CountReplySchema, { value })
    },
    async Collect(requests) {
      const names: string[] = []
      for await (const request of requests) names.push(request.name)
      return create(HelloReplySchema, { message: `Hello, ${names.join(' and ')}!` })
    },
    async *Chat(requests) {
      for await (const request of requests) yield create(HelloReplySchema, { message: `Hi ${request.name}` })
    },
  })
  const stop = () =>
    void server
      .close()
      .then(() => app.close())
      .then(() => node.stop())
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  console.log(`Greeter serving as ${app.name} on ${node.url}`)
  await server.serve()
  console.log('Greeter stopped')
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
