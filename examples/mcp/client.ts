// An MCP client (the MCP SDK's Client) using the server of examples/mcp/server.ts over
// SLIM: lists its tools, calls two, and reads its resource.
//   node examples/mcp/client.ts [--slim http://127.0.0.1:46357] [--mls]
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { Command } from 'commander'
import { createLocalApp } from 'slim-node'
import { SlimClientTransport } from 'slim-node/mcp'

const SECRET = 'slim-node-development-secret-0123456789'

const options = new Command('mcp-client')
  .description('use the MCP server at example/mcp/tools')
  .option('--slim <url>', 'SLIM node to connect to', 'http://127.0.0.1:46357')
  .option('--mls', 'encrypt the session end to end with MLS')
  .parse()
  .opts<{ slim: string; mls?: boolean }>()

const textOf = (result: Awaited<ReturnType<Client['callTool']>>): string =>
  (result.content as Array<{ text?: string }>).map((part) => part.text ?? '').join('')

try {
  const app = await createLocalApp({
    local: 'example/mcp/agent',
    slim: { endpoint: options.slim },
    sharedSecret: SECRET,
  })
  const client = new Client({ name: 'example-agent', version: '1.0.0' })
  await client.connect(
    new SlimClientTransport(app, 'example/mcp/tools', { session: { mls: options.mls ?? false }, timeout: 10_000 }),
  )
  const { tools } = await client.listTools()
  console.log(`tools: ${tools.map((tool) => tool.name).join(', ')}`)
  console.log(`add(2, 3) = ${textOf(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }))}`)
  console.log(`whoami: ${textOf(await client.callTool({ name: 'whoami', arguments: {} }))}`)
  const { contents } = await client.readResource({ uri: 'example://motd' })
  console.log(`example://motd: ${contents.map((part) => ('text' in part ? part.text : '')).join('')}`)
  await client.close()
  await app.close()
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
