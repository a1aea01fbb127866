// An MCP server (the MCP SDK's McpServer: a tool and a resource) served over SLIM as
// example/mcp/tools, on a SLIM node embedded in this process. Every client that opens a
// session gets an MCP connection of its own.
//   node examples/mcp/server.ts [--endpoint 127.0.0.1:46357]
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Command } from 'commander'
import { createLocalApp, startServer } from 'slim-node'
import { serveMcp } from 'slim-node/mcp'
import { z } from 'zod'

/** A development secret that meets SLIM's 32-byte minimum. Never use it in production. */
const SECRET = 'slim-node-development-secret-0123456789'

const { endpoint } = new Command('mcp-server')
  .description('serve an MCP server as example/mcp/tools on an embedded SLIM node')
  .option('--endpoint <host:port>', 'address to listen on', '127.0.0.1:46357')
  .parse()
  .opts<{ endpoint: string }>()

function tools(): McpServer {
  const server = new McpServer({ name: 'example-tools', version: '1.0.0' })
  server.registerTool(
    'add',
    { description: 'adds two numbers', inputSchema: { a: z.number(), b: z.number() } },
    ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  )
  // The transport tells each handler who called: the caller's SLIM name, as verified.
  server.registerTool('whoami', { description: 'who is calling, as SLIM verified it' }, (extra) => ({
    content: [{ type: 'text', text: extra.authInfo?.clientId ?? 'unknown' }],
  }))
  server.registerResource('motd', 'example://motd', { mimeType: 'text/plain' }, (uri) => ({
    contents: [{ uri: uri.href, text: 'Hello from an MCP server over SLIM' }],
  }))
  return server
}

try {
  const node = await startServer({ endpoint })
  const app = await createLocalApp({ local: 'example/mcp/tools', slim: { endpoint: node.url }, sharedSecret: SECRET })
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  process.once('SIGTERM', () => stop.abort())
  console.log(`MCP server serving as ${app.name} on ${node.url}`)
  await serveMcp(app, tools, {
    signal: stop.signal,
    onerror: (error, session) => console.error(`session ${session.id}: ${error.message}`),
  })
  await app.close()
  await node.stop()
  console.log('MCP server stopped')
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
