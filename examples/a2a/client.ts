// An A2A client (the A2A JS SDK's Client over SLIMRPC) talking to the agent of
// examples/a2a/server.ts: reads its card, sends a message, then streams one.
//   node examples/a2a/client.ts [--slim http://127.0.0.1:46357] [--text 'hello there']
import { type Message, Role } from '@a2a-js/sdk'
import { Command } from 'commander'
import { createLocalApp } from 'slim-node'
import { createA2AClient } from 'slim-node/a2a'

const SECRET = 'slim-node-development-secret-0123456789'

const options = new Command('a2a-client')
  .description('talk to the A2A agent at example/a2a/shouter')
  .option('--slim <url>', 'SLIM node to connect to', 'http://127.0.0.1:46357')
  .option('--text <text>', 'what to tell the agent', 'hello there')
  .parse()
  .opts<{ slim: string; text: string }>()

const message = (value: string): Message => ({
  messageId: crypto.randomUUID(),
  contextId: '',
  taskId: '',
  role: Role.ROLE_USER,
  parts: [{ content: { $case: 'text', value }, metadata: undefined, filename: '', mediaType: 'text/plain' }],
  metadata: undefined,
  extensions: [],
  referenceTaskIds: [],
})

try {
  const app = await createLocalApp({
    local: 'example/a2a/user',
    slim: { endpoint: options.slim },
    sharedSecret: SECRET,
  })
  const client = await createA2AClient(app, 'example/a2a/shouter', { timeout: 10_000 })
  const card = await client.getAgentCard()
  console.log(`agent: ${card.name} (${card.description})`)
  const request = { message: message(options.text), tenant: '', configuration: undefined, metadata: undefined }
  const result = await client.sendMessage(request)
  const answer = 'artifacts' in result ? result.artifacts.flatMap((artifact) => artifact.parts) : result.parts
  console.log(`answer: ${answer.map((part) => (part.content?.$case === 'text' ? part.content.value : '')).join('')}`)
  const events: string[] = []
  for await (const event of client.sendMessageStream({ ...request, message: message(options.text) }))
    events.push(event.payload?.$case ?? '?')
  console.log(`streamed: ${events.join(', ')}`)
  await app.close()
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
