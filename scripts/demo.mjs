// `npm run demo`: the multicast example (from SLIM's Python bindings), end to end, on an embedded node.
// A node, two clients and a moderator with MLS run as separate processes; the
// moderator and a client publish, and every member's view is printed at the end.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
function step(args) {
  const result = spawnSync(npm, args, { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
}

// A fresh clone: install the tools, then build the addon (dev profile) and the facade.
if (!existsSync(join(root, 'node_modules', '.bin', 'napi'))) step(['ci', '--no-audit', '--no-fund'])
const { ExampleProcess, isBuilt, startExampleServer } = await import('./processes.mjs')
if (!isBuilt()) step(['run', 'build'])

const moderatorLines = ['Hello from the moderator', 'This group is end-to-end encrypted with MLS']
const clientLine = 'Hi all, client-1 here'
const received = (from, text) => `-> Received message from ${from}: ${text}`

const started = []
function show(process) {
  started.push(process)
  return process
}

try {
  const { server, slim } = await startExampleServer({ echo: true })
  show(server)

  const clients = ['agntcy/ns/client-1', 'agntcy/ns/client-2'].map((local) =>
    show(new ExampleProcess(local, 'client.ts', ['--local', local, '--slim', slim], { echo: true })),
  )
  await Promise.all(clients.map((client) => client.waitFor('Waiting for session')))

  const moderator = show(
    new ExampleProcess('agntcy/ns/moderator', 'moderator.ts', ['--slim', slim, '--enable-mls'], { echo: true }),
  )
  await moderator.waitFor('add agntcy/ns/client-2 to the group')
  await Promise.all(clients.map((client) => client.waitFor('Joined session')))

  for (const line of moderatorLines) moderator.write(line)
  for (const client of clients) {
    for (const line of moderatorLines) await client.waitFor(received('agntcy/ns/moderator', line))
  }

  const [first, second] = clients
  first.write(clientLine)
  await moderator.waitFor(received('agntcy/ns/client-1', clientLine))
  await second.waitFor(received('agntcy/ns/client-1', clientLine))

  moderator.end() // end of input: the moderator closes the group and exits
  const moderatorCode = await moderator.exitCode()
  for (const client of clients) await client.waitFor('The moderator ended the session')
  for (const client of clients) client.signal('SIGINT')
  const clientCodes = await Promise.all(clients.map((client) => client.exitCode()))
  server.signal('SIGINT')
  const serverCode = await server.exitCode()

  console.log('\nWhat each member received:')
  for (const member of [moderator, ...clients]) {
    console.log(`\n${member.name}`)
    for (const line of member.lines.filter((l) => l.includes('-> Received message'))) {
      console.log(`  ${line.slice(line.indexOf('->'))}`)
    }
  }
  const codes = [moderatorCode, ...clientCodes, serverCode]
  console.log(`\nexit codes: moderator ${moderatorCode}, clients ${clientCodes.join(' ')}, node ${serverCode}`)
  if (codes.some((code) => code !== 0)) process.exitCode = 1
} catch (error) {
  console.error(`demo failed: ${error.message}`)
  for (const process of started) console.error(`\n--- ${process.name}\n${process.output()}`)
  process.exitCode = 1
} finally {
  for (const process of started) process.stop()
}
