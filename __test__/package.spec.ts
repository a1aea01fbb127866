// What `npm install slim-node` gives a user: the packed main and platform packages,
// installed from their tarballs alone into fresh projects with no Rust toolchain.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { nodeBinary } from '../scripts/node-binaries.mjs'
import { hostPlatform, pack, type Tarball } from '../scripts/pack.mjs'
import { ExampleProcess, root } from '../scripts/processes.mjs'
import { type Keep, run, sharedResources, track, trackedExampleServer } from './helpers.js'

const work = mkdtempSync(join(tmpdir(), 'slim-node-package-'))
const platformPackage = `slim-node-${hostPlatform()}`

/** The caller's environment without npm's script variables and without cargo or rustc on PATH. */
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
)
env.PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((dir) => !existsSync(join(dir, 'cargo')) && !existsSync(join(dir, 'rustc')))
  .join(delimiter)

/** A new project with `tarballs` installed, offline, from an empty npm cache; `keep` holds its commands. */
async function projectWith(name: string, tarballs: string[], keep: Keep = track): Promise<string> {
  const dir = join(work, name)
  await run('mkdir', ['-p', dir], {}, keep)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true }))
  const cache = join(work, `${name}-npm-cache`)
  await run(
    'npm',
    ['install', '--offline', '--no-audit', '--no-fund', '--cache', cache, ...tarballs],
    { cwd: dir, env },
    keep,
  )
  return dir
}

let tarballs: { main: Tarball; platform: Tarball }
let project: string
afterAll(() => rmSync(work, { recursive: true, force: true }))
// Registered after the removal, so that its afterAll, which runs first, stops what still writes there.
const shared = sharedResources()
beforeAll(async () => {
  tarballs = pack(join(work, 'tarballs'))
  project = await projectWith('consumer', [tarballs.main.path, tarballs.platform.path], shared)
}, 300_000)

test('the test environment has no Rust toolchain, and installs only this platform', async () => {
  await expect(run('sh', ['-c', 'command -v cargo || command -v rustc'], { env })).rejects.toThrow()
  const { stdout } = await run('npm', ['ls', '--all', '--json'], { cwd: project, env })
  const tree = JSON.parse(stdout) as { dependencies: Record<string, { dependencies?: Record<string, unknown> }> }
  expect(Object.keys(tree.dependencies).sort()).toEqual(['slim-node', platformPackage].sort())
  expect(tarballs.main.size).toBeLessThan(1_000_000) // the binary lives in the platform package
})

const GROUP = `
import { createLocalApp, startServer } from 'slim-node'
const node = await startServer({ endpoint: '127.0.0.1:0' })
const options = (local) => ({ local, slim: { endpoint: node.url }, sharedSecret: 'an-installed-package-secret-of-32-bytes' })
const moderator = await createLocalApp(options('org/pkg/moderator'))
const member = await createLocalApp(options('org/pkg/member'))
const joined = member.listenForSession({ timeout: 20000 })
const group = await moderator.createGroupSession('org/pkg/room', { mls: true })
await group.invite('org/pkg/member')
const session = await joined
await group.publish('hello from ' + process.version)
const message = await session.getMessage({ timeout: 10000 })
console.log(message.source + ': ' + message.payload.toString())
await moderator.close()
await member.close()
await node.stop()
`

const REQUIRE = `
const slim = require('slim-node')
console.log(JSON.stringify({ version: slim.version(), app: slim.parseName('org/ns/app').app, error: typeof slim.SlimError }))
`

describe.each(['20', '22', '24'] as const)('installed from tarballs, on Node %s', (major) => {
  const node = () => nodeBinary(major)

  test('import runs an MLS group session; require loads the same API', async () => {
    writeFileSync(join(project, 'group.mjs'), GROUP)
    writeFileSync(join(project, 'require.cjs'), REQUIRE)
    const { stdout: version } = await run(node(), ['--version'], { env })
    expect(version.trim()).toMatch(new RegExp(`^v${major}\\.`))

    const group = await run(node(), ['group.mjs'], { cwd: project, env, timeout: 60_000 })
    expect(group.stdout.trim()).toBe(`org/pkg/moderator: hello from ${version.trim()}`)
    expect(group.stderr).toBe('')

    const required = await run(node(), ['require.cjs'], { cwd: project, env })
    expect(JSON.parse(required.stdout)).toEqual({
      version: { slimNode: '0.1.0', slimCore: '3.4.6' },
      app: 'app',
      error: 'function',
    })
    expect(required.stderr).toBe('')
  }, 120_000)

  test('the example CLIs and the slim-node command run from the installed package', async () => {
    const dir = join(project, 'node_modules', 'slim-node', 'dist', 'examples')
    const options = { node: node(), dir, cwd: project, env: { PATH: env.PATH ?? '' } }
    const { server, slim } = await trackedExampleServer({ ...options, script: 'server.js' })
    const client = track(new ExampleProcess('client', 'client.js', ['--slim', slim], options))
    await client.waitFor('-> Waiting for session...')
    const moderator = track(
      new ExampleProcess(
        'moderator',
        'moderator.js',
        ['--slim', slim, '--invites', 'agntcy/ns/client-1', '--enable-mls'],
        options,
      ),
    )
    await moderator.waitFor('add agntcy/ns/client-1 to the group')
    moderator.write(`installed on node ${major}`)
    await client.waitFor(`-> Received message from agntcy/ns/moderator: installed on node ${major}`)
    moderator.end()
    expect(await moderator.exitCode()).toBe(0)
    client.end()
    expect(await client.exitCode()).toBe(0)
    server.signal('SIGINT')
    expect(await server.exitCode()).toBe(0)

    const bin = join(project, 'node_modules', '.bin', 'slim-node')
    const { stdout } = await run(node(), [bin, '--version'], { env })
    expect(stdout.trim()).toBe('slim-node 0.1.0, SLIM core 3.4.6')
  }, 120_000)
})

test('both import and require are typed for TypeScript users', async () => {
  writeFileSync(
    join(project, 'typed.mts'),
    `import { createLocalApp, type Session } from 'slim-node'
const app = await createLocalApp({ local: 'org/ns/a', slim: { endpoint: 'http://127.0.0.1:1' }, sharedSecret: 'x' })
const session: Session = await app.createGroupSession('org/ns/room', { mls: true })
await session.publish('typed')
// @ts-expect-error: not an option
await app.createGroupSession('org/ns/room', { encryption: 'mls' })
`,
  )
  writeFileSync(
    join(project, 'typed.cts'),
    `import slim = require('slim-node')
const parts: { org: string } = slim.parseName('org/ns/app')
// @ts-expect-error: parseName takes a string
slim.parseName(42)
export { parts }
`,
  )
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2022', '--skipLibCheck']
  const types = ['--types', 'node', '--typeRoots', join(root, 'node_modules', '@types')]
  await run(process.execPath, [tsc, ...flags, ...types, 'typed.mts', 'typed.cts'], { cwd: project, env })
}, 60_000)

test('with no binary for the platform, loading names the missing package', async () => {
  const bare = await projectWith('no-binary', [tarballs.main.path])
  for (const [file, source] of [
    ['load.mjs', `import('slim-node').catch((error) => { console.error(error.message); process.exit(3) })`],
    ['load.cjs', `try { require('slim-node') } catch (error) { console.error(error.message); process.exit(3) }`],
  ] as const) {
    writeFileSync(join(bare, file), source)
    const failure = await run(process.execPath, [file], { cwd: bare, env }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    )
    expect(failure?.code).toBe(3)
    expect(failure?.stderr).toContain(`the package "${platformPackage}" is not installed`)
  }
}, 120_000)
