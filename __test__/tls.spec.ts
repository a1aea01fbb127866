import { rmSync } from 'node:fs'
import { afterAll, describe, expect, test } from 'vitest'
import { createLocalApp, startServer, type TlsOptions } from '../src-ts/index.js'
import { type Certificates, makeCertificates } from './certs.js'
import { rejectionOf, SECRET, track } from './helpers.js'

const certs: Certificates = makeCertificates()
afterAll(() => rmSync(certs.dir, { recursive: true, force: true }))

/** An app connected over `tls`, closed when the test ends. */
const connect = async (endpoint: string, local: string, tls: TlsOptions) =>
  track(await createLocalApp({ local, slim: { endpoint, tls }, sharedSecret: SECRET }))

describe('TLS between apps and the node', () => {
  test('with the right CA, messages flow over TLS; a wrong CA fails with CONNECT naming TLS', async () => {
    const server = track(
      await startServer({
        endpoint: '127.0.0.1:0',
        tls: { certFile: certs.serverCert, keyFile: certs.serverKey },
      }),
    )
    expect(server.url).toMatch(/^https:\/\//)
    const alice = await connect(server.url, 'org/tls/alice', { caFile: certs.ca })
    const bob = await connect(server.url, 'org/tls/bob', { caPem: certs.pem(certs.ca) })
    const joined = bob.listenForSession({ timeout: 30_000 })
    const session = track(await alice.createPointToPointSession('org/tls/bob'))
    await session.publish('over tls')
    expect((await (await joined).getMessage({ timeout: 10_000 })).payload.toString()).toBe('over tls')

    // Skipping verification connects without the CA (testing only).
    const trusting = await connect(server.url, 'org/tls/trusting', { insecureSkipVerify: true })
    await trusting.close()

    const started = performance.now()
    const error = await rejectionOf(connect(server.url, 'org/tls/mallory', { caFile: certs.otherCa }))
    expect(error.code).toBe('CONNECT')
    expect(error.message).toMatch(/TLS/)
    expect(performance.now() - started).toBeLessThan(12_000)
  })

  test('mutual TLS: a client certificate from the CA is accepted, none is refused', async () => {
    const server = track(
      await startServer({
        endpoint: '127.0.0.1:0',
        tls: { certFile: certs.serverCert, keyFile: certs.serverKey, clientCaFile: certs.ca },
      }),
    )
    const app = await connect(server.url, 'org/mtls/alice', {
      caFile: certs.ca,
      certFile: certs.clientCert,
      keyFile: certs.clientKey,
    })
    const group = track(await app.createGroupSession('org/mtls/room'))
    expect(group.type).toBe('group')

    const refused = await rejectionOf(connect(server.url, 'org/mtls/anonymous', { caFile: certs.ca }))
    expect(refused.code).toBe('CONNECT')
    expect(refused.message).toMatch(/TLS/)
  })

  test('bad TLS settings are refused before connecting', async () => {
    const server = track(await startServer({ endpoint: '127.0.0.1:0' }))
    const bad: TlsOptions[] = [
      { certFile: certs.clientCert },
      { caFile: '/nonexistent/ca.pem' },
      { insecure: true, caFile: certs.ca },
    ]
    for (const tls of bad) {
      expect((await rejectionOf(connect(server.url, 'org/tls/bad', tls))).code).toBe('INVALID_ARGUMENT')
    }
    expect(
      (await rejectionOf(startServer({ endpoint: '127.0.0.1:0', tls: { certFile: certs.serverCert } }))).code,
    ).toBe('INVALID_ARGUMENT')
  })
})
