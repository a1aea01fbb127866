import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { ErrorCode } from '@modelcontextprotocol/sdk/types.js'
import { expect, test } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import type { App, SessionOptions, SlimServer } from '../src-ts/index.js'
import { type ServeMcpOptions, SlimClientTransport, serveMcp } from '../src-ts/mcp/index.js'
import { createToolServer, NOTE } from './fixtures/mcp-tools.mjs'
import { connectApp, rejectionOf, runServiceExample, startTestServer, track } from './helpers.js'

/** Serves the test tools as `name` until the test ends; `errors` collects what serveMcp reports. */
async function serveTools(node: SlimServer, name: string, options: ServeMcpOptions = {}) {
  const app = track(await connectApp(node, name))
  const stop = new AbortController()
  const errors: Error[] = []
  let sessions = 0
  const serving = serveMcp(
    app,
    () => {
      sessions++
      return createToolServer()
    },
    { signal: stop.signal, onerror: (error) => errors.push(error), ...options },
  )
  track({
    close: () => {
      stop.abort()
      return serving
    },
  })
  return { app, errors, serving, stop, sessions: () => sessions }
}

async function mcpClient(node: SlimServer, name: string, server: string, session?: SessionOptions) {
  const app = track(await connectApp(node, name))
  const client = new Client({ name, version: '1.0.0' })
  const transport = new SlimClientTransport(app, server, { session, timeout: 20_000 })
  await client.connect(transport)
  track({ close: () => client.close() })
  return { app, client, transport }
}

const textOf = (result: Awaited<ReturnType<Client['callTool']>>): string =>
  (result.content as Array<{ type: string; text?: string }>)[0]?.text ?? ''

function peer(...args: string[]): ExampleProcess {
  return track(new ExampleProcess(args[1] ?? 'mcp', 'mcp-peer.mjs', args, { dir: join(root, '__test__', 'fixtures') }))
}

test.each([false, true])('an MCP client lists and calls tools and reads a resource over SLIM (MLS %s)', async (mls) => {
  const node = track(await startTestServer())
  await serveTools(node, 'org/mcp/tools')
  const { client, transport } = await mcpClient(node, 'org/mcp/agent', 'org/mcp/tools', { mls })
  expect(transport.sessionId).toMatch(/^\d+$/)
  expect(client.getServerVersion()).toMatchObject({ name: 'slim-tools', version: '1.0.0' })
  const { tools } = await client.listTools()
  expect(tools.map((tool) => tool.name).sort()).toEqual(['add', 'whoami'])
  expect(textOf(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }))).toBe('5')
  // The handler sees who called: the transport passes the sender's SLIM name as authInfo.
  expect(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).toBe('org/mcp/agent')
  const { contents } = await client.readResource({ uri: NOTE })
  expect(contents).toEqual([{ uri: NOTE, text: 'buy milk' }])
  // A tool's own validation error comes back as an MCP error result, not a transport failure.
  const bad = await client.callTool({ name: 'add', arguments: { a: 'two' } })
  expect(bad.isError).toBe(true)
})

test('eight clients at once each get a session and a server of their own', async () => {
  const node = track(await startTestServer())
  const served = await serveTools(node, 'org/mcp/tools')
  const answers = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const { client } = await mcpClient(node, `org/mcp/agent${i}`, 'org/mcp/tools')
      const sum = textOf(await client.callTool({ name: 'add', arguments: { a: i, b: 100 } }))
      return { sum, who: textOf(await client.callTool({ name: 'whoami', arguments: {} })) }
    }),
  )
  answers.forEach(({ sum, who }, i) => {
    expect(sum).toBe(String(i + 100))
    expect(who).toBe(`org/mcp/agent${i}`)
  })
  expect(served.sessions()).toBe(8)
  expect(served.errors).toEqual([])
})

test('a closed client ends its session on the server; the server serves the next one', async () => {
  const node = track(await startTestServer())
  const served = await serveTools(node, 'org/mcp/tools')
  const first = await mcpClient(node, 'org/mcp/first', 'org/mcp/tools')
  let closed = false
  first.transport.onclose = () => {
    closed = true
  }
  await first.client.close()
  expect(closed).toBe(true)
  await expect(first.transport.send({ jsonrpc: '2.0', method: 'ping', id: 9 })).rejects.toMatchObject({
    code: 'CLOSED',
  })
  const second = await mcpClient(node, 'org/mcp/second', 'org/mcp/tools')
  expect(textOf(await second.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }))).toBe('2')
  expect(served.sessions()).toBe(2)
})

test('a client process that crashes leaves the server serving the others', async () => {
  const node = track(await startTestServer())
  const served = await serveTools(node, 'org/mcp/tools')
  const crashing = peer('client', 'org/mcp/crash', node.url, 'org/mcp/tools')
  expect(await crashing.waitFor('called', 30_000)).toBe('called 42')
  crashing.child.kill('SIGKILL')
  await crashing.exited
  const { client } = await mcpClient(node, 'org/mcp/survivor', 'org/mcp/tools')
  expect(textOf(await client.callTool({ name: 'add', arguments: { a: 4, b: 5 } }))).toBe('9')
  expect(served.sessions()).toBe(2)
})

test('a server killed while a call is in flight: the call fails within 5 s', async () => {
  const node = track(await startTestServer())
  const server = peer('server', 'org/mcp/dying', node.url)
  await server.waitFor('ready', 30_000)
  const { client } = await mcpClient(node, 'org/mcp/waiting', 'org/mcp/dying')
  const call = client.callTool({ name: 'hang', arguments: {} }, undefined, { timeout: 5_000 })
  await server.waitFor('hanging', 30_000)
  server.child.kill('SIGKILL')
  // The session ends once the server stayed silent for the peer timeout (3 s), which
  // closes the transport: the SDK fails the call as closed, not as timed out at 5 s.
  await expect(call).rejects.toMatchObject({ code: ErrorCode.ConnectionClosed })
})

test('a server that restarts serves new clients; the session it lost ends, typed', async () => {
  const node = track(await startTestServer())
  const first = peer('server', 'org/mcp/restart', node.url)
  await first.waitFor('ready', 30_000)
  const old = await mcpClient(node, 'org/mcp/old', 'org/mcp/restart')
  expect(textOf(await old.client.callTool({ name: 'add', arguments: { a: 1, b: 2 } }))).toBe('3')
  const closed = new Promise<void>((resolve) => {
    old.client.onclose = () => resolve()
  })
  first.child.kill('SIGKILL')
  await first.exited
  const second = peer('server', 'org/mcp/restart', node.url)
  await second.waitFor('ready', 30_000)
  const fresh = await mcpClient(node, 'org/mcp/fresh', 'org/mcp/restart')
  expect(textOf(await fresh.client.callTool({ name: 'add', arguments: { a: 3, b: 4 } }))).toBe('7')
  // The restarted server never knew the old session, and the old server is gone: the old
  // transport closed, and a call on it fails at once, typed.
  await closed
  await expect(old.client.callTool({ name: 'add', arguments: { a: 1, b: 1 } })).rejects.toThrow('Not connected')
})

test('a message that is not JSON-RPC is reported and skipped; the session goes on', async () => {
  const node = track(await startTestServer())
  const served = await serveTools(node, 'org/mcp/tools')
  const raw: App = track(await connectApp(node, 'org/mcp/raw'))
  const session = await raw.createPointToPointSession('org/mcp/tools')
  await session.publish('this is not JSON')
  await session.publish(JSON.stringify({ jsonrpc: '1.0', method: 42 }))
  const initialize = {
    jsonrpc: '2.0',
    id: 7,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
  }
  await session.publish(JSON.stringify(initialize))
  const reply = JSON.parse((await session.getMessage({ timeout: 10_000 })).payload.toString('utf8'))
  expect(reply).toMatchObject({ jsonrpc: '2.0', id: 7, result: { serverInfo: { name: 'slim-tools' } } })
  const invalid = served.errors.filter((error) => (error as { code?: string }).code === 'INVALID_ARGUMENT')
  expect(invalid.map((error) => error.message)).toEqual([
    expect.stringMatching(/a message from org\/mcp\/raw is not JSON-RPC \(.*not valid JSON\)$/),
    expect.stringMatching(/a message from org\/mcp\/raw is not JSON-RPC \(not a JSON-RPC 2.0 request/),
  ])
})

test('the client transport rejects misuse with typed errors', async () => {
  const node = track(await startTestServer())
  const app = track(await connectApp(node, 'org/mcp/lonely'))
  const nobody = new SlimClientTransport(app, 'org/mcp/nobody', {
    timeout: 1_500,
    session: { maxRetries: 1, interval: 200 },
  })
  await expect(nobody.send({ jsonrpc: '2.0', method: 'ping', id: 1 })).rejects.toMatchObject({ code: 'CLOSED' })
  const failed = await rejectionOf(nobody.start())
  expect(['TIMEOUT', 'DELIVERY_FAILED']).toContain(failed.code)
  await expect(nobody.start()).rejects.toMatchObject({ code: 'BUSY' })
  const aborted = new SlimClientTransport(app, 'org/mcp/nobody', { signal: AbortSignal.abort() })
  await expect(aborted.start()).rejects.toMatchObject({ code: 'ABORTED' })
  const badName = new SlimClientTransport(app, 'not a name')
  await expect(badName.start()).rejects.toMatchObject({ code: 'INVALID_NAME' })
})

test('node examples/mcp/server.ts and client.ts: tools, the caller, a resource; the server stops on SIGTERM', async () => {
  const { client, stopped, code } = await runServiceExample('mcp', ['--mls'])
  expect(client).toBe(
    [
      'tools: add, whoami',
      'add(2, 3) = 5',
      'whoami: example/mcp/agent',
      'example://motd: Hello from an MCP server over SLIM',
      '',
    ].join('\n'),
  )
  expect([stopped, code]).toEqual(['MCP server stopped', 0])
}, 90_000)
