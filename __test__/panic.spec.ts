import { expect, test } from 'vitest'
import { toSlimError } from '../src-ts/core/errors.js'
import { RpcChannel, SlimError } from '../src-ts/index.js'
import { connectApp, startTestServer, track } from './helpers.js'
import { hooks as native } from './hooks.js'
import { decode, echoServer, SERVICE } from './rpc-service.js'

test('a panic in a synchronous export becomes an error, and the process lives on', () => {
  let caught: unknown
  try {
    native.panicForTest('sync boom')
  } catch (error) {
    caught = error
  }
  const error = toSlimError(caught)
  expect(error.code).toBe('INTERNAL')
  expect(error.message).toContain('sync boom')
})

test('a panic in an async export rejects the promise', async () => {
  const error = toSlimError(await native.panicForTestAsync('async boom').catch((e: unknown) => e))
  expect(error.code).toBe('INTERNAL')
  expect(error.message).toMatch(/panic/i)
  // The runtime still works afterwards.
  await expect(native.panicForTestAsync('again')).rejects.toBeDefined()
})

test('a panic in a slimrpc export becomes INTERNAL, and the channel works on', async () => {
  const node = track(await startTestServer())
  await echoServer(node, 'org/rpcpanic/server')
  const client = track(await connectApp(node, 'org/rpcpanic/client'))
  native.armPanicForTest()
  let caught: unknown
  try {
    new RpcChannel(client, 'org/rpcpanic/server')
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(SlimError)
  expect(caught).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('RpcChannel constructor') })

  const channel = new RpcChannel(client, 'org/rpcpanic/server')
  const call = channel.callStreamStream(SERVICE, 'Chat')
  native.armPanicForTest()
  const failed = toSlimError(await call.closeSendAsync().catch((error: unknown) => error))
  expect(failed).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('RpcCall.closeSend') })
  expect(decode(await channel.unary(SERVICE, 'Echo', 'after'))).toBe('echo:after')
})
