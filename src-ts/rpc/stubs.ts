// What generated stubs call on a channel (the ChannelLike methods, timeouts in
// milliseconds, answers as tagged stream messages), over the calls of an RpcChannel.
import { RpcError } from '../core/errors.js'
import type { Payload } from '../core/message.js'
import type { Call, CallOptions } from './call.js'
import { groupAnswer } from './call.js'
import {
  type BidiStreamLike,
  type ChannelLike,
  type RequestWriterLike,
  recordOf,
  type StreamReaderLike,
  viewOf,
} from './codegen.js'
import { toRpcError } from './status.js'
import type { MulticastStreamMessage, StreamMessage } from './stream.js'

/** What the stubs' calls need of a channel. */
export interface CallOpener {
  /** One request, one answer; see {@link RpcChannel.unary}. */
  unary(service: string, method: string, request: Payload, options?: CallOptions): Promise<Uint8Array>
  /** Opens a call of `shape`, on a group channel when `group`, else point to point. */
  open(
    shape: string,
    group: boolean,
    service: string,
    method: string,
    request: Uint8Array | undefined,
    options: CallOptions,
  ): Call
}

/** The {@link ChannelLike} methods of an {@link RpcChannel}, which hands generated stubs' calls here. */
export class StubCalls implements ChannelLike {
  readonly #channel: CallOpener

  constructor(channel: CallOpener) {
    this.#channel = channel
  }

  /** See {@link RpcChannel.unary}. */
  callUnaryAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<Uint8Array> {
    return this.#channel.unary(service, method, viewOf(request), { timeout, metadata: recordOf(metadata) })
  }

  /** See {@link RpcChannel.unaryStream}. */
  async callUnaryStreamAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike> {
    const call = this.#channel.open('unaryStream', false, service, method, viewOf(request), {
      timeout,
      metadata: recordOf(metadata),
    })
    return { nextAsync: () => step(call) }
  }

  /** See {@link RpcChannel.streamUnary}. */
  callStreamUnary(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): RequestWriterLike {
    const bidi = this.callStreamStream(service, method, timeout, metadata)
    return {
      sendAsync: (message) => bidi.sendAsync(message),
      finalizeStreamAsync: async () => {
        await bidi.closeSendAsync()
        const step = await bidi.recvAsync()
        if (step.tag === 'Data') return step.inner[0]
        throw step.tag === 'Error' ? step.inner[0] : new RpcError('INTERNAL', 'the server sent no answer')
      },
    }
  }

  /** See {@link RpcChannel.streamStream}. */
  callStreamStream(service: string, method: string, timeout?: number, metadata?: Map<string, string>): BidiStreamLike {
    const call = this.#channel.open('streamStream', false, service, method, undefined, {
      timeout,
      metadata: recordOf(metadata),
    })
    return bidi(call, () => step(call))
  }

  /** See {@link RpcChannel.multicastUnary}. */
  async callMulticastUnaryAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>> {
    const call = this.#channel.open('multicastUnary', true, service, method, viewOf(request), {
      timeout,
      metadata: recordOf(metadata),
    })
    return { nextAsync: () => groupStep(call) }
  }

  /** See {@link RpcChannel.multicastUnaryStream}. */
  callMulticastUnaryStreamAsync(
    service: string,
    method: string,
    request: ArrayBuffer | Uint8Array,
    timeout?: number,
    metadata?: Map<string, string>,
  ): Promise<StreamReaderLike<MulticastStreamMessage>> {
    return this.callMulticastUnaryAsync(service, method, request, timeout, metadata)
  }

  /** See {@link RpcChannel.multicastStreamUnary}. */
  callMulticastStreamUnary(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage> {
    const call = this.#channel.open('multicastStreamUnary', true, service, method, undefined, {
      timeout,
      metadata: recordOf(metadata),
    })
    return bidi(call, () => groupStep(call))
  }

  /** See {@link RpcChannel.multicastStreamStream}. */
  callMulticastStreamStream(
    service: string,
    method: string,
    timeout?: number,
    metadata?: Map<string, string>,
  ): BidiStreamLike<MulticastStreamMessage> {
    return this.callMulticastStreamUnary(service, method, timeout, metadata)
  }
}

async function step(call: Call): Promise<StreamMessage> {
  try {
    const answer = await call.next()
    return answer?.data ? { tag: 'Data', inner: [answer.data] } : { tag: 'End' }
  } catch (error) {
    return { tag: 'Error', inner: [toRpcError(error)] }
  }
}

async function groupStep(call: Call): Promise<MulticastStreamMessage> {
  try {
    const answer = await call.next()
    if (answer === null) return { tag: 'End' }
    const member = groupAnswer(answer)
    if (member.error) return { tag: 'Error', inner: { error: member.error } }
    const context = { source: member.source, subject: member.subject, issuer: member.issuer }
    return { tag: 'Data', inner: { item: { context, message: member.data ?? new Uint8Array() } } }
  } catch (error) {
    return { tag: 'Error', inner: { error: toRpcError(error) } }
  }
}

function bidi<Message>(call: Call, recv: () => Promise<Message>): BidiStreamLike<Message> {
  return {
    sendAsync: (message) => call.send(viewOf(message)),
    closeSendAsync: async () => call.closeSend(),
    recvAsync: recv,
  }
}
