// App and session settings that upstream's Python bindings expose: direction, MLS
// settings, build information.
import { expect, test } from 'vitest'
import { buildInfo, createApp, version } from '../src-ts/index.js'
import { connectApp, receive, rejectionOf, SECRET, startTestServer, text, track } from './helpers.js'

test('buildInfo names this build and the SLIM core it embeds', () => {
  const info = buildInfo()
  expect(info.slimNode.version).toBe(version().slimNode)
  expect(info.slimCore.version).toBe(version().slimCore)
  expect(info.slimNode.gitSha).toMatch(/^[0-9a-f]{7,40}$/)
  expect(Date.parse(info.slimNode.date)).toBeGreaterThan(Date.parse('2026-01-01'))
  expect(info.slimNode.profile).toBe('debug')
})

test('MLS settings beside mls: true reach the session, and bad ones are refused', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/mlsset/moderator'))
  const member = track(await connectApp(server, 'org/mlsset/member'))
  const mls = { headerIntegrityValidationPercent: 50, maxSeenControlMessageIds: 128 }
  const group = track(await moderator.createGroupSession('org/mlsset/chat', { mls }))
  expect(group.settings.mls).toBe(true)
  const joined = member.listenForSession({ timeout: 30_000 })
  await group.invite('org/mlsset/member')
  const session = await joined
  await group.publish('encrypted')
  expect(text((await receive(session, 1))[0] as never)).toBe('encrypted')
  for (const bad of [{ headerIntegrityValidationPercent: 101 }, { maxSeenControlMessageIds: -1 }]) {
    const error = await rejectionOf(moderator.createGroupSession('org/mlsset/other', { mls: bad }))
    expect(error.code).toBe('INVALID_ARGUMENT')
  }
})

test('a receive-only app receives the group and is refused when it publishes', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/dir/moderator'))
  const listener = track(
    await createApp({ name: 'org/dir/listener', identity: { sharedSecret: SECRET }, direction: 'receive' }),
  )
  await listener.connect({ endpoint: server.url })
  const group = track(await moderator.createGroupSession('org/dir/chat'))
  const joined = listener.listenForSession({ timeout: 30_000 })
  await group.invite('org/dir/listener')
  const session = await joined
  await group.publish('for everyone')
  expect(text((await receive(session, 1))[0] as never)).toBe('for everyone')
  const refused = await rejectionOf(session.publish('from a listener'))
  expect(refused.code).toBe('INVALID_ARGUMENT')
  expect(refused.message).toContain('Receive')
  await group.publish('still receiving')
  expect(text((await receive(session, 1))[0] as never)).toBe('still receiving')
})

test('a send-only app publishes to the group', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/dirsend/moderator'))
  const sensor = track(
    await createApp({ name: 'org/dirsend/sensor', identity: { sharedSecret: SECRET }, direction: 'send' }),
  )
  await sensor.connect({ endpoint: server.url })
  const group = track(await moderator.createGroupSession('org/dirsend/chat'))
  const joined = sensor.listenForSession({ timeout: 30_000 })
  await group.invite('org/dirsend/sensor')
  const session = await joined
  await session.publish('reading 42')
  expect(text((await receive(group, 1))[0] as never)).toBe('reading 42')
})

test('a direction that is not one of the four is refused', async () => {
  const bad = createApp({ name: 'org/dir/bad', identity: { sharedSecret: SECRET }, direction: 'sideways' as never })
  expect((await rejectionOf(bad)).code).toBe('INVALID_ARGUMENT')
})
