// An A2A agent (the A2A JS SDK's DefaultRequestHandler around a small AgentExecutor)
// served over SLIMRPC as example/a2a/shouter, on a SLIM node embedded in this process.
// It answers every message with a completed task whose artifact is the text in capitals.
//   node examples/a2a/server.ts [--endpoint 127.0.0.1:46357]
import { type AgentCard, type Part, type Task, TaskState } from '@a2a-js/sdk'
import { AgentEvent, type AgentExecutor, DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server'
import { Command } from 'commander'
import { createLocalApp, startServer } from 'slim-node'
import { SLIMRPC_BINDING, serveA2A } from 'slim-node/a2a'

/** A development secret that meets SLIM's 32-byte minimum. Never use it in production. */
const SECRET = 'slim-node-development-secret-0123456789'
const NAME = 'example/a2a/shouter'

const { endpoint } = new Command('a2a-server')
  .description(`serve an A2A agent as ${NAME} on an embedded SLIM node`)
  .option('--endpoint <host:port>', 'address to listen on', '127.0.0.1:46357')
  .parse()
  .opts<{ endpoint: string }>()

const card: AgentCard = {
  name: 'shouter',
  description: 'repeats what it is told, in capitals',
  supportedInterfaces: [{ url: NAME, protocolBinding: SLIMRPC_BINDING, tenant: '', protocolVersion: '1.0' }],
  provider: undefined,
  version: '1.0.0',
  capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: true },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ['text/plain'],
  defaultOutputModes: ['text/plain'],
  skills: [],
  signatures: [],
}

const text = (value: string): Part => ({
  content: { $case: 'text', value },
  metadata: undefined,
  filename: '',
  mediaType: 'text/plain',
})
const now = () => new Date().toISOString()

const shouter: AgentExecutor = {
  async execute(context, bus) {
    const task: Task = context.task ?? {
      id: context.taskId,
      contextId: context.contextId,
      status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() },
      artifacts: [],
      history: [context.userMessage],
      metadata: undefined,
    }
    bus.publish(AgentEvent.task(task))
    const said = context.userMessage.parts.map((part) => (part.content?.$case === 'text' ? part.content.value : ''))
    const artifact = {
      artifactId: crypto.randomUUID(),
      name: 'shout',
      description: '',
      parts: [text(said.join(' ').toUpperCase())],
      metadata: undefined,
      extensions: [],
    }
    bus.publish(
      AgentEvent.artifactUpdate({
        taskId: task.id,
        contextId: task.contextId,
        artifact,
        append: false,
        lastChunk: true,
        metadata: undefined,
      }),
    )
    const done = { state: TaskState.TASK_STATE_COMPLETED, message: undefined, timestamp: now() }
    bus.publish(
      AgentEvent.statusUpdate({ taskId: task.id, contextId: task.contextId, status: done, metadata: undefined }),
    )
    bus.finished()
  },
  async cancelTask(taskId, bus) {
    const cancelled = { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: now() }
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: cancelled, metadata: undefined }))
    bus.finished()
  },
}

try {
  const node = await startServer({ endpoint })
  const app = await createLocalApp({ local: NAME, slim: { endpoint: node.url }, sharedSecret: SECRET })
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  process.once('SIGTERM', () => stop.abort())
  console.log(`A2A agent serving as ${app.name} on ${node.url}`)
  const handler = new DefaultRequestHandler(
    card,
    new InMemoryTaskStore(),
    shouter,
    undefined,
    undefined,
    undefined,
    card,
  )
  await serveA2A(app, handler, { signal: stop.signal })
  await app.close()
  await node.stop()
  console.log('A2A agent stopped')
} catch (error) {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
