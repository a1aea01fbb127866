// Waits to be invited, prints what the group says and publishes what you type.
//   node examples/client.ts --local agntcy/ns/client-1
import { createInterface } from 'node:readline'
import type { Session } from 'slim-node'
import { type CommonOptions, command, connect, exitCleanlyOnSignals, fail, say } from './common.ts'

const options = command('client', 'join a group when invited', 'agntcy/ns/client-1').parse().opts<CommonOptions>()

try {
  const app = await connect(options)
  exitCleanlyOnSignals(app)
  let current: Session | undefined

  // Lines typed here go to the group this client is in; end of input exits.
  const input = createInterface({ input: process.stdin, terminal: false })
  input.on('line', (line) => {
    const text = line.trim()
    if (!text) return
    if (!current) return say(options.local, '-> not in a session yet; line dropped')
    current.publish(text).catch((error: unknown) => say(options.local, `-> could not publish: ${String(error)}`))
  })
  input.on('close', () => {
    app.close().then(() => process.exit(0), fail)
  })

  for (;;) {
    say(options.local, '-> Waiting for session...')
    let session: Session
    try {
      session = await app.listenForSession()
    } catch (error) {
      if (app.closed) break
      throw error
    }
    current = session
    say(options.local, `-> Joined session ${session.id} on ${session.destination}`)
    for await (const message of session) {
      say(options.local, `-> Received message from ${message.source}: ${message.payload.toString()}`)
    }
    current = undefined
    if (app.closed) break
    say(options.local, '-> The moderator ended the session')
  }
} catch (error) {
  fail(error)
}
