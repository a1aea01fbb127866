// The A2A tests' echo agent on the A2A JS SDK, the twin of interop/python/a2a_peer.py's:
// a message gets a completed task whose artifact is `echo: <text>`; `ask` gets a task
// that waits for input, so that it can be cancelled; `whoami` the caller as A2A sees it.
import { type AgentCard, type Message, type Part, Role, type Task, TaskState } from '@a2a-js/sdk'
import type { Client } from '@a2a-js/sdk/client'
import { TaskNotFoundError } from '@a2a-js/sdk/errors'
import {
  AgentEvent,
  type AgentExecutor,
  DefaultRequestHandler,
  type ExecutionEventBus,
  InMemoryTaskStore,
} from '@a2a-js/sdk/server'
import { expect } from 'vitest'
import { SLIMRPC_BINDING } from '../src-ts/a2a/index.js'

export const textPart = (text: string): Part => ({
  content: { $case: 'text', value: text },
  metadata: undefined,
  filename: '',
  mediaType: 'text/plain',
})

export const textsOf = (parts: Part[] | undefined): string[] =>
  (parts ?? []).flatMap((part) => (part.content?.$case === 'text' ? [part.content.value] : []))

export function userMessage(text: string, ids: { taskId?: string; contextId?: string } = {}): Message {
  return {
    messageId: crypto.randomUUID(),
    contextId: ids.contextId ?? '',
    taskId: ids.taskId ?? '',
    role: Role.ROLE_USER,
    parts: [textPart(text)],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  }
}

export function echoCard(name: string): AgentCard {
  return {
    name: 'node echo agent',
    description: 'echoes what it is sent',
    supportedInterfaces: [{ url: name, protocolBinding: SLIMRPC_BINDING, tenant: '', protocolVersion: '1.0' }],
    provider: undefined,
    version: '1.0.0',
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: true },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain'],
    skills: [
      {
        id: 'echo',
        name: 'echo',
        description: 'echoes',
        tags: ['echo'],
        examples: [],
        inputModes: [],
        outputModes: [],
        securityRequirements: [],
      },
    ],
    signatures: [],
  }
}

function status(bus: ExecutionEventBus, task: Task, state: TaskState): void {
  const update = { state, message: undefined, timestamp: new Date().toISOString() }
  bus.publish(
    AgentEvent.statusUpdate({ taskId: task.id, contextId: task.contextId, status: update, metadata: undefined }),
  )
}

const echo: AgentExecutor = {
  async execute(context, bus) {
    const task: Task = context.task ?? {
      id: context.taskId,
      contextId: context.contextId,
      status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() },
      artifacts: [],
      history: [context.userMessage],
      metadata: undefined,
    }
    bus.publish(AgentEvent.task(task))
    status(bus, task, TaskState.TASK_STATE_WORKING)
    const text = textsOf(context.userMessage.parts).join('\n')
    if (text === 'ask') {
      status(bus, task, TaskState.TASK_STATE_INPUT_REQUIRED)
    } else {
      const artifact = {
        artifactId: crypto.randomUUID(),
        name: 'echo',
        description: '',
        parts: [textPart(text === 'whoami' ? `user: ${context.context.user?.userName}` : `echo: ${text}`)],
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
      status(bus, task, TaskState.TASK_STATE_COMPLETED)
    }
    bus.finished()
  },
  async cancelTask(taskId, bus) {
    const update = { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: new Date().toISOString() }
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: update, metadata: undefined }))
    bus.finished()
  },
}

export function echoHandler(name: string): DefaultRequestHandler {
  const card = echoCard(name)
  return new DefaultRequestHandler(card, new InMemoryTaskStore(), echo, undefined, undefined, undefined, card)
}

/** A request of one text message, with nothing else set. */
export const sendRequest = (text: string) => ({
  message: userMessage(text),
  tenant: '',
  configuration: undefined,
  metadata: undefined,
})

async function sentTask(client: Client, text: string): Promise<Task> {
  const sent = await client.sendMessage(sendRequest(text))
  if (!('artifacts' in sent)) throw new Error(`expected a task, got ${JSON.stringify(sent)}`)
  return sent
}

/**
 * What every A2A test checks of an echo agent, whichever side serves it: the card, a
 * message, a streamed one, a task read back, a task cancelled and a missing task's error.
 */
export async function expectEchoAgent(client: Client, cardName: string): Promise<void> {
  expect((await client.getAgentCard()).name).toBe(cardName)
  const sent = await sentTask(client, 'hello')
  expect(sent.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
  expect(textsOf(sent.artifacts.flatMap((artifact) => artifact.parts))).toEqual(['echo: hello'])
  const kinds: string[] = []
  for await (const event of client.sendMessageStream(sendRequest('stream me'))) kinds.push(event.payload?.$case ?? '')
  expect(kinds).toEqual(['task', 'statusUpdate', 'artifactUpdate', 'statusUpdate'])
  const again = await client.getTask({ id: sent.id, historyLength: undefined, tenant: '' })
  expect(again.status?.state).toBe(TaskState.TASK_STATE_COMPLETED)
  const waiting = await sentTask(client, 'ask')
  expect(waiting.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED)
  const cancelled = await client.cancelTask({ id: waiting.id, tenant: '', metadata: undefined })
  expect(cancelled.status?.state).toBe(TaskState.TASK_STATE_CANCELED)
  const missing = client.getTask({ id: 'no-such-task', historyLength: undefined, tenant: '' })
  await expect(missing).rejects.toBeInstanceOf(TaskNotFoundError)
}
