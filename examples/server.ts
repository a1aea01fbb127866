// Starts an embedded SLIM node: the Python example's `task python:example:server`.
//   node examples/server.ts [--endpoint 127.0.0.1:46357]
import { Command } from 'commander'
import { startServer } from 'slim-node'

const { endpoint } = new Command('server')
  .description('run a SLIM node in this process')
  .option('--endpoint <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:46357')
  .parse()
  .opts<{ endpoint: string }>()

try {
  const node = await startServer({ endpoint })
  const stop = () => void node.stop()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  console.log(`SLIM node listening on ${node.url}`)
  await node.stopped()
  console.log('SLIM node stopped')
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
