// The stream messages of slimrpc's generated code (`protoc-gen-slimrpc-node`), tagged
// unions as upstream's bindings make them, and its statuses as an enum object.
import type { RpcCode as NativeRpcCode } from '../../index.js'
import type { RpcError } from '../core/errors.js'
import { addon } from '../core/native.js'

/**
 * The statuses of slimrpc as an enum object (`RpcCode.NotFound === 'NOT_FOUND'`), for
 * code written against upstream's bindings; {@link RpcStatus} is the same strings.
 *
 * @example
 * ```ts
 * throw new RpcError(RpcCode.PermissionDenied, 'admins only')
 * ```
 * @group RPC
 */
export const RpcCode: typeof NativeRpcCode = addon.RpcCode
export type RpcCode = NativeRpcCode

/**
 * The tags of a {@link StreamMessage}.
 *
 * @example
 * ```ts
 * const message = await reader.nextAsync()
 * if (message.tag === StreamMessage_Tags.Data) console.log(message.inner[0].byteLength)
 * ```
 * @group RPC
 */
export const StreamMessage_Tags = Object.freeze({
  /** A message of the stream. */
  Data: 'Data',
  /** The error that ended the stream. */
  Error: 'Error',
  /** The stream's end. */
  End: 'End',
} as const)

/**
 * The tags of a {@link MulticastStreamMessage} (the same three).
 *
 * @example
 * ```ts
 * if (message.tag === MulticastStreamMessage_Tags.End) return
 * ```
 * @group RPC
 */
export const MulticastStreamMessage_Tags = StreamMessage_Tags

/**
 * One step of a stream: data, the error that ended it, or its end.
 *
 * @example
 * ```ts
 * const step: StreamMessage = { tag: 'Data', inner: [new Uint8Array([1])] }
 * ```
 * @group RPC
 */
export type StreamMessage =
  | {
      /** A message. */
      readonly tag: 'Data'
      /** Its bytes. */
      readonly inner: readonly [Uint8Array]
    }
  | {
      /** The stream failed. */
      readonly tag: 'Error'
      /** Why. */
      readonly inner: readonly [RpcError]
    }
  | {
      /** The stream ended. */
      readonly tag: 'End'
    }

/**
 * Who sent an answer of a group call.
 *
 * @example
 * ```ts
 * for await (const { context, response } of group.SayHello(request)) console.log(context.source, response)
 * ```
 * @group RPC
 */
export interface RpcMessageContext {
  /** The member's name, `org/ns/app`. */
  readonly source: string
  /** The member's verified identity (with MLS). */
  readonly subject?: string | undefined
  /** Who issued that identity, when known. */
  readonly issuer?: string | undefined
}

/**
 * One step of a group call's answers.
 *
 * @example
 * ```ts
 * if (step.tag === 'Data') console.log(step.inner.item.context.source)
 * ```
 * @group RPC
 */
export type MulticastStreamMessage =
  | {
      /** A member's answer. */
      readonly tag: 'Data'
      /** The answer and who sent it. */
      readonly inner: {
        /** The answer and who sent it. */
        readonly item: {
          /** Who sent it. */
          readonly context: RpcMessageContext
          /** Its bytes. */
          readonly message: Uint8Array
        }
      }
    }
  | {
      /** A member, or the whole call, failed. */
      readonly tag: 'Error'
      /** Why. */
      readonly inner: {
        /** The failure; its `origin` names the member. */
        readonly error: RpcError
      }
    }
  | {
      /** Every member answered. */
      readonly tag: 'End'
    }
