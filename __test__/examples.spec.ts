import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { nodeBinary } from '../scripts/node-binaries.mjs'
import { ExampleProcess, root, typescriptFlags } from '../scripts/processes.mjs'
import { closedPort, run, track, trackedExampleServer } from './helpers.js'

const received = (from: string, text: string) => `-> Received message from ${from}: ${text}`
const receivedLines = (process: ExampleProcess) =>
  process.lines.filter((line) => line.includes('-> Received message')).map((line) => line.slice(line.indexOf('->')))

describe.each([false, true])('the multicast example from Python, mls=%s', (mls) => {
  test('members receive exactly what the moderator and a client publish; everyone exits 0', async () => {
    const { server, slim } = await trackedExampleServer()
    const [one, two] = ['agntcy/ns/client-1', 'agntcy/ns/client-2'].map((local) =>
      track(new ExampleProcess(local, 'client.ts', ['--local', local, '--slim', slim])),
    ) as [ExampleProcess, ExampleProcess]
    await one.waitFor('-> Waiting for session...')
    await two.waitFor('-> Waiting for session...')

    const moderator = track(
      new ExampleProcess('moderator', 'moderator.ts', ['--slim', slim, ...(mls ? ['--enable-mls'] : [])]),
    )
    await moderator.waitFor('agntcy/ns/moderator -> add agntcy/ns/client-1 to the group')
    await moderator.waitFor('agntcy/ns/moderator -> add agntcy/ns/client-2 to the group')

    moderator.write('first line')
    moderator.write('second line')
    for (const client of [one, two]) await client.waitFor(received('agntcy/ns/moderator', 'second line'))
    one.write('from client one')
    await moderator.waitFor(received('agntcy/ns/client-1', 'from client one'))
    await two.waitFor(received('agntcy/ns/client-1', 'from client one'))

    moderator.end()
    expect(await moderator.exitCode()).toBe(0)
    await one.waitFor('-> The moderator ended the session')
    await two.waitFor('-> The moderator ended the session')

    const fromModerator = [
      received('agntcy/ns/moderator', 'first line'),
      received('agntcy/ns/moderator', 'second line'),
    ]
    expect(receivedLines(moderator)).toEqual([received('agntcy/ns/client-1', 'from client one')])
    expect(receivedLines(one)).toEqual(fromModerator)
    expect(receivedLines(two)).toEqual([...fromModerator, received('agntcy/ns/client-1', 'from client one')])
    expect(one.lines).toContain('agntcy/ns/client-1 -> Waiting for session...')

    one.end() // end of input
    two.signal('SIGINT') // Ctrl+C
    expect(await one.exitCode()).toBe(0)
    expect(await two.exitCode()).toBe(0)
    server.signal('SIGINT')
    expect(await server.exitCode()).toBe(0)
    expect(server.lines).toContain('SLIM node stopped')
  })
})

describe('the example CLIs on bad input', () => {
  test('with no node listening, moderator and client print one line and exit 1 within 5 s', async () => {
    const slim = JSON.stringify({ endpoint: `http://127.0.0.1:${await closedPort()}`, tls: { insecure: true } })
    for (const script of ['moderator.ts', 'client.ts']) {
      const started = performance.now()
      const process = track(new ExampleProcess(script, script, ['--slim', slim]))
      expect(await process.exitCode(5_000)).toBe(1)
      expect(performance.now() - started).toBeLessThan(5_000)
      expect(process.errors, process.output()).toHaveLength(1)
      expect(process.errors[0]).toMatch(/^error: cannot connect to http:\/\/127\.0\.0\.1:\d+: .*\(CONNECT\)$/)
    }
  })

  test('a short shared secret is one line stating the minimum, not a stack trace', async () => {
    const { slim } = await trackedExampleServer()
    const client = track(new ExampleProcess('client', 'client.ts', ['--slim', slim, '--shared-secret', 'short']))
    expect(await client.exitCode()).toBe(1)
    expect(client.errors).toEqual(['error: sharedSecret must be at least 32 bytes, got 5 (INVALID_ARGUMENT)'])
  })

  test('malformed --slim JSON is refused with an example of the expected shape', async () => {
    const client = track(new ExampleProcess('client', 'client.ts', ['--slim', '{not json']))
    expect(await client.exitCode()).toBe(1)
    expect(client.errors.join('\n')).toContain('expected JSON such as {"endpoint":"http://127.0.0.1:46357"')
  })

  test('the moderator exits 0 on Ctrl+C while waiting for input', async () => {
    const { slim } = await trackedExampleServer()
    const client = track(new ExampleProcess('client', 'client.ts', ['--slim', slim]))
    await client.waitFor('Waiting for session')
    const moderator = track(
      new ExampleProcess('moderator', 'moderator.ts', ['--slim', slim, '--invites', 'agntcy/ns/client-1']),
    )
    await moderator.waitFor('add agntcy/ns/client-1 to the group')
    moderator.signal('SIGINT')
    expect(await moderator.exitCode()).toBe(0)
  })
})

describe('the slim-node command', () => {
  test('`slim-node server` listens until SIGINT; --version names the core', async () => {
    const cli = join(root, 'dist', 'cli.js')
    const { stdout } = await run(process.execPath, [cli, '--version'])
    expect(stdout.trim()).toMatch(/^slim-node \d+\.\d+\.\d+, SLIM core 3\.4\.6$/)

    const child = track(
      spawn(process.execPath, [cli, 'server', '--endpoint', '127.0.0.1:0'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    )
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
    const line = await new Promise<string>((resolve) =>
      child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())),
    )
    expect(line).toMatch(/^SLIM node listening on http:\/\/127\.0\.0\.1:\d+/)
    child.kill('SIGINT')
    expect(await exited).toBe(0)
  })
})

describe.each(['22', '24'] as const)('the examples on Node %s, with its own type stripping', (major) => {
  test('node examples/*.ts runs the group with no loader', async () => {
    const node = nodeBinary(major)
    const { slim } = await trackedExampleServer({ node })
    const client = track(new ExampleProcess('client', 'client.ts', ['--slim', slim], { node }))
    await client.waitFor('-> Waiting for session...')
    const moderator = track(
      new ExampleProcess('moderator', 'moderator.ts', ['--slim', slim, '--invites', 'agntcy/ns/client-1'], { node }),
    )
    await moderator.waitFor('add agntcy/ns/client-1 to the group')
    moderator.write(`hello from node ${major}`)
    await client.waitFor(received('agntcy/ns/moderator', `hello from node ${major}`))
    moderator.end()
    expect(await moderator.exitCode()).toBe(0)
    client.end()
    expect(await client.exitCode()).toBe(0)
    // No loader warnings: the package's module type is declared.
    expect([...client.errors, ...moderator.errors].filter(Boolean)).toEqual([])
  }, 120_000)
})

test('on a terminal the app name is bold and coloured, as in the Python example', async () => {
  const { slim } = await trackedExampleServer()
  const command = [process.execPath, ...typescriptFlags(), join(root, 'examples', 'client.ts'), '--slim', `'${slim}'`]
  // `script` gives the client a pseudo-terminal for stdout.
  const child = track(spawn('script', ['-qfc', command.join(' '), '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] }))
  let output = ''
  const waiting = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Waiting for session')) resolve()
    })
  })
  await waiting
  expect(output).toContain('\x1b[1;36magntcy/ns/client-1\x1b[0m -> Waiting for session...')
})
