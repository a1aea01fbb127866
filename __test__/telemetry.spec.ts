import { createServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { expect, test, vi } from 'vitest'
import { createLocalApp, enableOpentelemetry, flushTelemetry, startServer } from '../src-ts/index.js'
import { SECRET, track } from './helpers.js'

/** A loopback OTLP/gRPC collector: answers every export with OK and keeps the request bodies. */
async function collector() {
  const traces: Buffer[] = []
  const metrics: Buffer[] = []
  const server = createServer((request: Http2ServerRequest, response: Http2ServerResponse) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      if (request.url.endsWith('TraceService/Export')) traces.push(Buffer.concat(chunks))
      if (request.url.endsWith('MetricsService/Export')) metrics.push(Buffer.concat(chunks))
      response.writeHead(200, { 'content-type': 'application/grpc' })
      response.addTrailers({ 'grpc-status': '0' })
      response.end(Buffer.from([0, 0, 0, 0, 0])) // an empty, uncompressed gRPC message
    })
  })
  // The exporter keeps its HTTP/2 connection open; close it with the server.
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (session) => sessions.add(session))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const close = () => {
    for (const session of sessions) session.destroy()
    return new Promise((resolve) => server.close(resolve))
  }
  return { endpoint: `http://127.0.0.1:${port}`, traces, metrics, close }
}

test('spans and metrics of a publish/receive round trip reach an OTLP gRPC collector', async () => {
  const otlp = track(await collector())
  await enableOpentelemetry({ endpoint: otlp.endpoint, serviceName: 'slim-node-test' })
  // Process-wide: a second, different endpoint is refused.
  await expect(enableOpentelemetry({ endpoint: 'http://127.0.0.1:1' })).rejects.toMatchObject({
    code: 'INVALID_ARGUMENT',
  })

  const node = track(await startServer({ endpoint: '127.0.0.1:0' }))
  const slim = { endpoint: node.url }
  const alice = track(await createLocalApp({ local: 'org/otel/alice', slim, sharedSecret: SECRET }))
  const bob = track(await createLocalApp({ local: 'org/otel/bob', slim, sharedSecret: SECRET }))
  const incoming = bob.listenForSession({ timeout: 30_000 })
  const session = track(await alice.createPointToPointSession('org/otel/bob'))
  await session.publish('traced')
  expect((await (await incoming).getMessage({ timeout: 10_000 })).payload.toString()).toBe('traced')

  await flushTelemetry()
  await vi.waitFor(() => {
    const spans = Buffer.concat(otlp.traces).toString('latin1')
    expect(spans).toContain('slim.publish')
    expect(spans).toContain('slim.receive')
    expect(spans).toContain('slim-node-test')
    // Upstream's own counters, from the datapath of the node and the apps.
    const counters = Buffer.concat(otlp.metrics).toString('latin1')
    expect(counters).toContain('num_processed_messages')
    expect(counters).toContain('num_active_connections')
    expect(counters).toContain('slim-node-test')
  })
})
