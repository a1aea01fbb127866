// Creates the group, invites the clients and publishes what you type.
//   node examples/moderator.ts --remote agntcy/ns/chat --invites agntcy/ns/client-1 --enable-mls
import { createInterface } from 'node:readline'
import { type CommonOptions, command, connect, exitCleanlyOnSignals, fail, repeat, say } from './common.ts'

interface ModeratorOptions extends CommonOptions {
  remote: string
  invites?: string[]
}

const options = command('moderator', 'create a group and publish to it', 'agntcy/ns/moderator')
  .option('--remote <channel>', 'the group channel, org/ns/channel', 'agntcy/ns/chat')
  .option('--invites <name>', 'a member to invite (repeatable)', repeat)
  .parse()
  .opts<ModeratorOptions>()
const invites = options.invites ?? ['agntcy/ns/client-1', 'agntcy/ns/client-2']

try {
  const app = await connect(options)
  exitCleanlyOnSignals(app)
  const session = await app.createGroupSession(options.remote, {
    maxRetries: 5,
    interval: 5000,
    mls: options.enableMls,
  })
  for (const member of invites) {
    await session.invite(member)
    console.log(`${options.local} -> add ${member} to the group`)
  }

  // Members publish too: show what they send.
  const printing = (async () => {
    for await (const message of session) {
      say(options.local, `-> Received message from ${message.source}: ${message.payload.toString()}`)
    }
  })()

  const input = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY })
  input.setPrompt('message> ')
  if (process.stdin.isTTY) input.prompt()
  for await (const line of input) {
    const text = line.trim()
    if (text === 'exit' || text === 'quit') break
    if (text) {
      try {
        await session.publish(text)
      } catch (error) {
        say(options.local, `-> could not publish: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
    if (process.stdin.isTTY) input.prompt()
  }
  input.close()
  process.stdin.destroy()
  await session.close()
  await printing
  await app.close()
} catch (error) {
  fail(error)
}
