// The features beyond the Python example, against upstream's Python package
// (slim-bindings 3.3.8 from PyPI): soft close and rejoin, sessions restored from a store
// after the process died, and basic authentication to the node, in both directions.

import { on } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, onTestFinished, test } from 'vitest'
import { createApp, type ParticipantChange, type Session, startServer } from '../src-ts/index.js'
import { receive, rejectionOf, SECRET, startTestServer, text, track } from './helpers.js'
import { type PeerEvent, PythonPeer } from './python-peer.js'

const python = (role: string, args: string[]) => track(new PythonPeer(role, [...args, '--secret', SECRET]))
const said = (payload: string) => (event: PeerEvent) => event.event === 'message' && event.payload === payload

async function app(url: string, name: string, auth?: { basic: { username: string; password: string } }) {
  const created = track(await createApp({ name, identity: { sharedSecret: SECRET } }))
  await created.connect({ endpoint: url, auth })
  return created
}

async function nextChange(
  session: Session,
  name: string,
  kind: ParticipantChange['change'],
): Promise<ParticipantChange> {
  for await (const [change] of on(session, 'participant', { signal: AbortSignal.timeout(20_000) })) {
    const seen = change as ParticipantChange
    if (seen.name === name && seen.change === kind) return seen
  }
  throw new Error('no participant event')
}

describe.each([false, true])('a Python member goes offline and rejoins a slim-node group, mls=%s', (mls) => {
  test('the moderator sees it offline and online, and the group delivers both ways after', async () => {
    const server = track(await startTestServer())
    const tag = `pysoft${mls ? 'mls' : ''}`
    const moderator = await app(server.url, `org/${tag}/moderator`)
    const py = python('member', ['--slim', server.url, '--local', `org/${tag}/py`])
    const group = track(await moderator.createGroupSession(`org/${tag}/room`, { mls, maxRetries: 5, interval: 300 }))
    await py.waitFor('connected')
    const joinedChange = nextChange(group, `org/${tag}/py`, 'joined')
    await group.invite(`org/${tag}/py`)
    await py.waitFor('joined')
    expect((await joinedChange).change).toBe('joined')

    const offline = nextChange(group, `org/${tag}/py`, 'offline')
    py.send('offline')
    await py.waitFor('offline')
    expect(await offline).toMatchObject({ online: false, change: 'offline' })

    const online = nextChange(group, `org/${tag}/py`, 'online')
    py.send('rejoin')
    await py.waitFor('online')
    expect(await online).toMatchObject({ online: true, change: 'online' })
    await group.publish('welcome back')
    await py.waitFor(said('welcome back'))
    py.send('publish glad to be back')
    const [back] = await receive(group, 1)
    expect(text(back as never)).toBe('glad to be back')
  })
})

test('a Python member restores its slim-node group from its store after being killed', async () => {
  const server = track(await startTestServer())
  const store = mkdtempSync(join(tmpdir(), 'slim-node-pystore-'))
  onTestFinished(() => rmSync(store, { recursive: true, force: true }))
  const moderator = await app(server.url, 'org/pypersist/moderator')
  const group = track(
    await moderator.createGroupSession('org/pypersist/room', { mls: true, maxRetries: 5, interval: 300 }),
  )
  const member = ['--slim', server.url, '--local', 'org/pypersist/py', '--persist', store, '--passphrase', 'p4ss']
  const first = python('member', member)
  await first.waitFor('connected')
  await group.invite('org/pypersist/py')
  await first.waitFor('joined')
  await group.publish('before the crash')
  await first.waitFor(said('before the crash'))
  first.kill()
  await first.exited

  const second = python('member', [...member, '--restore'])
  expect((await second.waitFor('restored')).channels).toEqual(['org/pypersist/room'])
  await group.publish('after the restart')
  await second.waitFor(said('after the restart'))
})

describe('basic authentication to the node, across the two packages', () => {
  const basic = { username: 'edge', password: 'correct horse battery staple' }

  test('a node of the Python package that requires it admits slim-node apps that present it', async () => {
    const node = track(new PythonPeer('node', ['--auth-user', basic.username, '--auth-password', basic.password]))
    const url = (await node.waitFor('listening')).url as string
    const moderator = await app(url, 'org/pyauth/moderator', { basic })
    const member = await app(url, 'org/pyauth/member', { basic })
    const group = track(await moderator.createGroupSession('org/pyauth/room'))
    const joined = member.listenForSession({ timeout: 30_000 })
    await group.invite('org/pyauth/member')
    const session = await joined
    await group.publish('through an authenticated node')
    expect(text((await receive(session, 1))[0] as never)).toBe('through an authenticated node')
    const stranger = track(await createApp({ name: 'org/pyauth/stranger', identity: { sharedSecret: SECRET } }))
    expect((await rejectionOf(stranger.connect({ endpoint: url, timeout: 10_000 }))).code).toBe('CONNECT')
  })

  test('a slim-node node that requires it admits a Python member that presents it', async () => {
    const server = track(await startServer({ endpoint: '127.0.0.1:0', auth: { basic } }))
    const moderator = await app(server.url, 'org/pyauth2/moderator', { basic })
    const py = python('member', [
      '--slim',
      server.url,
      '--local',
      'org/pyauth2/py',
      '--auth-user',
      basic.username,
      '--auth-password',
      basic.password,
    ])
    const group = track(await moderator.createGroupSession('org/pyauth2/room'))
    await py.waitFor('connected')
    await group.invite('org/pyauth2/py')
    await py.waitFor('joined')
    await group.publish('hello, authenticated Python')
    await py.waitFor(said('hello, authenticated Python'))
  })
})
