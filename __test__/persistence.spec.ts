// A member that keeps its sessions in a store comes back after its process was killed,
// and the group delivers to it again without a new invitation.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, onTestFinished, test } from 'vitest'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import type { App, Session } from '../src-ts/index.js'
import { connectApp, rejectionOf, startTestServer, track } from './helpers.js'

/** The member in its own process: __test__/fixtures/persistent-member.mjs. */
function member(...args: string[]): ExampleProcess {
  return track(new ExampleProcess('member', 'persistent-member.mjs', args, { dir: join(root, '__test__', 'fixtures') }))
}

function store(): string {
  const dir = mkdtempSync(join(tmpdir(), 'slim-node-store-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** SIGKILLs the member `first`, restores it on its store at `path`, and checks that it receives `group` again. */
async function killAndRestore(first: ExampleProcess, url: string, path: string, group: Session): Promise<void> {
  first.signal('SIGKILL')
  await first.exitCode()
  const second = member('restore', url, path, 'a passphrase of our own')
  expect(await second.waitFor(/^restored /)).toBe(`restored ${group.id}`)
  await group.publish('after the restart')
  await second.waitFor(/^got after the restart$/)
}

test.each([false, true])('a killed member restores its group session from its store, mls=%s', async (mls) => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, `org/persist/moderator${mls ? 'mls' : ''}`))
  const group: Session = track(
    await moderator.createGroupSession(`org/persist/chat${mls ? 'mls' : ''}`, { mls, maxRetries: 5, interval: 300 }),
  )
  const path = store()
  const first = member('join', server.url, path, 'a passphrase of our own')
  const invited = group.invite('org/persist/member')
  const [, id] = /^joined (\d+)$/.exec(await first.waitFor(/^joined /)) ?? []
  await invited
  expect(Number(id)).toBe(group.id)
  await group.publish('before the crash')
  await first.waitFor(/^got before the crash$/)
  await killAndRestore(first, server.url, path, group)
})

// MLS keys advance with each message; a member restored from its store must not start
// more than the 1 024 that MLS lets it skip behind the moderator.
test('a member killed after 1 100 MLS messages in one epoch restores and decrypts what comes next', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/persist/moderatorgap'))
  const group: Session = track(await moderator.createGroupSession('org/persist/chatgap', { mls: true }))
  const path = store()
  const first = member('join', server.url, path, 'a passphrase of our own')
  const invited = group.invite('org/persist/member')
  await first.waitFor(/^joined /)
  await invited
  for (let i = 0; i < 11; i++) await group.publishMany(Array.from({ length: 100 }, (_, j) => `m-${i * 100 + j}`))
  await first.waitFor(/^got m-1099$/, 30_000)
  await killAndRestore(first, server.url, path, group)
})

test.each([false, true])('a killed moderator restores its group from its store and goes on, mls=%s', async (mls) => {
  const server = track(await startTestServer())
  const memberApp = track(await connectApp(server, `org/persist/member${mls ? 'mls' : ''}`))
  const joined = memberApp.listenForSession({ timeout: 30_000 })
  const path = store()
  const moderator = (...args: string[]) =>
    track(
      new ExampleProcess('moderator', 'persistent-moderator.mjs', args, { dir: join(root, '__test__', 'fixtures') }),
    )
  const channel = `org/persist/group${mls ? 'mls' : ''}`
  const first = moderator('create', server.url, path, String(mls), channel, `org/persist/member${mls ? 'mls' : ''}`)
  const [, id] = /^created (\d+)$/.exec(await first.waitFor(/^created /)) ?? []
  const session = await joined
  expect(session.id).toBe(Number(id))
  first.write('before the crash')
  expect((await session.getMessage({ timeout: 10_000 })).payload.toString()).toBe('before the crash')
  first.signal('SIGKILL')
  await first.exitCode()

  const second = moderator('restore', server.url, path)
  expect(await second.waitFor(/^restored /)).toBe(`restored ${id}`)
  second.write('after the restart')
  expect(await second.waitFor(/^(sent|failed) after the restart/)).toBe('sent after the restart')
  expect((await session.getMessage({ timeout: 10_000 })).payload.toString()).toBe('after the restart')
  expect(session.closed).toBe(false)
})

// The member misses a commit while offline, so its rejoin is an MLS rejoin: the moderator
// commits again, and must keep that commit in its store before it is killed.
test('a moderator killed right after a member rejoined restores at the epoch of the group', async () => {
  const server = track(await startTestServer())
  const members = await Promise.all(
    ['a', 'b'].map(async (n) => track(await connectApp(server, `org/persist/epoch-${n}`))),
  )
  const [a, b] = members as [App, App]
  const joinedA = a.listenForSession({ timeout: 30_000 })
  const path = store()
  const first = track(
    new ExampleProcess(
      'moderator',
      'persistent-moderator.mjs',
      ['create', server.url, path, 'true', 'org/persist/epoch', 'org/persist/epoch-a'],
      { dir: join(root, '__test__', 'fixtures') },
    ),
  )
  await first.waitFor(/^created /)
  const sessionA = await joinedA
  await sessionA.goOffline({ timeout: 10_000 })
  const joinedB = b.listenForSession({ timeout: 30_000 })
  first.write('invite org/persist/epoch-b')
  await first.waitFor(/^invited /)
  const sessionB = await joinedB
  await sessionA.rejoin({ timeout: 20_000 })
  first.signal('SIGKILL')
  await first.exitCode()

  const second = track(
    new ExampleProcess('moderator', 'persistent-moderator.mjs', ['restore', server.url, path], {
      dir: join(root, '__test__', 'fixtures'),
    }),
  )
  await second.waitFor(/^restored /)
  second.write('after the restart')
  expect(await second.waitFor(/^(sent|failed) after the restart/)).toBe('sent after the restart')
  for (const session of [sessionA, sessionB]) {
    expect((await session.getMessage({ timeout: 10_000 })).payload.toString()).toBe('after the restart')
  }
})

test('a store opened with another passphrase is refused with a typed error', async () => {
  const server = track(await startTestServer())
  const moderator = track(await connectApp(server, 'org/persist/moderatorkey'))
  const group = track(await moderator.createGroupSession('org/persist/chatkey', { mls: true }))
  const path = store()
  const first = member('join', server.url, path, 'the right passphrase')
  const invited = group.invite('org/persist/member')
  await first.waitFor(/^joined /)
  await invited
  first.signal('SIGKILL')
  await first.exitCode()
  const wrong = member('restore', server.url, path, 'the wrong passphrase')
  const line = await wrong.waitFor(/^(failed|restored)/)
  expect(line).toBe('failed STORE')
})

test('persistence options are checked', async () => {
  const { createApp } = await import('../src-ts/index.js')
  const identity = { sharedSecret: 'slim-node-test-secret-0123456789abcdef' }
  for (const persistence of [{ path: '' }, { path: store(), passphrase: '' }]) {
    const error = await rejectionOf(createApp({ name: 'org/persist/bad', identity, persistence }))
    expect(error.code).toBe('INVALID_ARGUMENT')
  }
})
