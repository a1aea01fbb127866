import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Certificates {
  dir: string
  ca: string
  otherCa: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
  pem(path: string): string
}

const openssl = (dir: string, ...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })

function authority(dir: string, name: string): void {
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`)
  openssl(
    dir,
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-subj',
    `/CN=${name}`,
    '-days',
    '2',
    '-out',
    `${name}.pem`,
  )
}

function leaf(dir: string, name: string, extensions: string): void {
  writeFileSync(join(dir, `${name}.ext`), extensions)
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.ec.key`)
  // rustls reads PKCS#8 keys.
  openssl(dir, 'pkcs8', '-topk8', '-nocrypt', '-in', `${name}.ec.key`, '-out', `${name}.key`)
  openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`)
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  )
}

/** A throw-away CA with a server certificate for 127.0.0.1, a client certificate, and an unrelated CA. */
export function makeCertificates(): Certificates {
  const dir = mkdtempSync(join(tmpdir(), 'slim-node-certs-'))
  authority(dir, 'ca')
  authority(dir, 'other-ca')
  leaf(dir, 'server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  leaf(dir, 'client', 'extendedKeyUsage=clientAuth\n')
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    otherCa: join(dir, 'other-ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    pem: (path) => readFileSync(path, 'utf8'),
  }
}
