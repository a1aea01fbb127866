import { expect, test } from 'vitest'
import { toSlimError } from '../src-ts/errors.js'
import { hooks as native } from './hooks.js'

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
