// MCP over SLIM against upstream's Python packages (`mcp` 1.26.0 and slim-bindings 3.3.8
// from PyPI, interop/python/mcp_peer.py) with upstream slim-mcp's framing: a slim-node MCP
// client using a Python MCP server, and a Python MCP client using a slim-node one.
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { expect, test } from 'vitest'
import { SlimClientTransport, serveMcp } from '../src-ts/mcp/index.js'
import { createToolServer, NOTE } from './fixtures/mcp-tools.mjs'
import { connectApp, SECRET, startTestServer, track } from './helpers.js'
import { PythonPeer } from './python-peer.js'

const python = (role: string, args: string[]) =>
  track(new PythonPeer(role, [...args, '--secret', SECRET], 'mcp_peer.py'))

const textOf = (result: Awaited<ReturnType<Client['callTool']>>): string =>
  (result.content as Array<{ text?: string }>)[0]?.text ?? ''

test('a slim-node MCP client uses a Python MCP server', async () => {
  const node = track(await startTestServer())
  const server = python('mcp-server', ['--slim', node.url, '--local', 'org/pymcp/server'])
  await server.waitFor('ready', 60_000)
  const app = track(await connectApp(node, 'org/pymcp/agent'))
  const client = new Client({ name: 'node-agent', version: '1.0.0' })
  await client.connect(new SlimClientTransport(app, 'org/pymcp/server', { timeout: 20_000 }))
  track({ close: () => client.close() })
  expect(client.getServerVersion()?.name).toBe('py-tools')
  expect((await client.listTools()).tools.map((tool) => tool.name)).toEqual(['add', 'whoami'])
  expect(textOf(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } }))).toBe('42')
  expect(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).toBe('python')
  expect((await client.listResources()).resources.map((resource) => resource.uri)).toEqual([NOTE])
  expect((await client.readResource({ uri: NOTE })).contents[0]).toMatchObject({ uri: NOTE, text: 'buy milk' })
})

test.each([false, true])('a Python MCP client uses a slim-node MCP server (MLS %s)', async (mls) => {
  const node = track(await startTestServer())
  const app = track(await connectApp(node, 'org/nodemcp/server'))
  const stop = new AbortController()
  const errors: Error[] = []
  const serving = serveMcp(app, () => createToolServer(), {
    signal: stop.signal,
    onerror: (error) => errors.push(error),
  })
  track({
    close: () => {
      stop.abort()
      return serving
    },
  })
  const args = ['--slim', node.url, '--local', 'org/nodemcp/client', '--remote', 'org/nodemcp/server']
  const client = python('mcp-client', mls ? [...args, '--mls'] : args)
  await client.waitFor('done', 90_000)
  const result = (name: string) =>
    client.events.find((event) => event.event === 'result' && (event as { case?: string }).case === name) as
      | Record<string, unknown>
      | undefined
  expect(result('initialize')?.server).toBe('slim-tools')
  expect(result('tools')?.names).toEqual(['add', 'whoami'])
  expect(result('add')?.text).toBe('42')
  // The slim-node server saw the Python client's SLIM name as the caller.
  expect(result('whoami')?.text).toBe('org/nodemcp/client')
  expect(result('resource')?.text).toBe('buy milk')
  expect(errors).toEqual([])
})
