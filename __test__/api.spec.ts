import { createRequire } from 'node:module'
import { expect, expectTypeOf, test } from 'vitest'
import type { ErrorCode } from '../index.js'
import { isSlimError, parseName, SLIM_ERROR_CODES, type SlimErrorCode, version } from '../src-ts/index.js'
import { hooks } from './hooks.js'

const native = createRequire(import.meta.url)('../index.js') as { ErrorCode: Record<string, string> }

test('version() reports this package and the embedded upstream core', async () => {
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string }
  expect(version()).toEqual({ slimNode: pkg.version, slimCore: '3.4.6' })
})

test('the facade knows exactly the error codes the addon defines', () => {
  expectTypeOf<SlimErrorCode>().toEqualTypeOf<`${ErrorCode}`>()
  expect([...SLIM_ERROR_CODES].sort()).toEqual(Object.values(native.ErrorCode).sort())
  expect(SLIM_ERROR_CODES).toContain('NOT_MEMBER')
})

test('the addon sets the code on what it throws, as the enum spells it', () => {
  let thrown: unknown
  try {
    ;(native as unknown as { parseName(text: string): unknown }).parseName('not a name')
  } catch (error) {
    thrown = error
  }
  expect((thrown as { code?: unknown }).code).toBe(native.ErrorCode.InvalidName)
  let facade: unknown
  try {
    parseName('not a name')
  } catch (error) {
    facade = error
  }
  expect(isSlimError(facade, 'INVALID_NAME')).toBe(true)
})

test('the test hooks stay out of the published loader', () => {
  const loader = createRequire(import.meta.url)('../index.js') as Record<string, unknown>
  expect(loader.panicForTest).toBeUndefined()
  expect(loader.aliveTasksForTest).toBeUndefined()
  expect(typeof hooks.aliveTasksForTest()).toBe('number')
})
