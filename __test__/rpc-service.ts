// The test service `interop.Echo` served by slim-node, the same methods as
// interop/python/rpc_peer.py serves: the four shapes, a failing, a throwing and a slow
// method, and one that reports the caller's context.
import { type App, RpcError, RpcServer, type SlimServer } from '../src-ts/index.js'
import { connectApp, track } from './helpers.js'

export const SERVICE = 'interop.Echo'
export const decode = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8')

/** A server app offering the test service, serving until the test ends. */
export async function echoServer(node: SlimServer, name: string): Promise<{ app: App; server: RpcServer }> {
  const app = track(await connectApp(node, name))
  const server = track(new RpcServer(app))
  server.registerUnaryUnary(SERVICE, 'Echo', (request) => `echo:${decode(request)}`)
  server.registerUnaryStream(SERVICE, 'Count', function* (request) {
    for (let i = 0; i < Number(decode(request)); i++) yield String(i)
  })
  server.registerStreamUnary(SERVICE, 'Sum', async (requests) => {
    let sum = 0
    for await (const request of requests) sum += Number(decode(request))
    return String(sum)
  })
  server.registerStreamStream(SERVICE, 'Chat', async function* (requests) {
    for await (const request of requests) yield `chat:${decode(request)}`
  })
  server.registerUnaryUnary(SERVICE, 'Fail', (request) => {
    throw new RpcError(decode(request) as never, 'failed as asked')
  })
  server.registerUnaryUnary(SERVICE, 'Throw', () => {
    throw new Error('a plain error')
  })
  server.registerUnaryUnary(SERVICE, 'Slow', async (request, context) => {
    await new Promise((resolve) => setTimeout(resolve, Number(decode(request))))
    return context.signal.aborted ? 'aborted' : 'late'
  })
  server.registerUnaryUnary(SERVICE, 'Whoami', (_request, context) =>
    JSON.stringify({ peer: context.peer, metadata: context.metadata, remaining: context.remainingMs }),
  )
  void server.serve()
  return { app, server }
}

export async function collect(answers: AsyncIterable<Uint8Array>): Promise<string[]> {
  const out: string[] = []
  for await (const answer of answers) out.push(decode(answer))
  return out
}
