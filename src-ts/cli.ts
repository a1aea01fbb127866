#!/usr/bin/env node
// The `slim-node` command: `npx slim-node server` runs a SLIM node in this process.
import { Command } from 'commander'
import { startServer, version } from './index.js'

const { slimNode, slimCore } = version()
const program = new Command('slim-node')
  .description('SLIM (Secure Low-Latency Interactive Messaging) for Node.js')
  .version(`slim-node ${slimNode}, SLIM core ${slimCore}`)

program
  .command('server')
  .description('run an embedded SLIM node until Ctrl+C')
  .option('--endpoint <host:port>', 'address to listen on; port 0 picks a free port', '127.0.0.1:46357')
  .action(async ({ endpoint }: { endpoint: string }) => {
    const node = await startServer({ endpoint })
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void node.stop())
    console.log(`SLIM node listening on ${node.url}`)
    await node.stopped()
  })

program.parseAsync().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
})
