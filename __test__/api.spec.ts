import { createRequire } from 'node:module'
import { expect, test } from 'vitest'
import { SLIM_ERROR_CODES } from '../src-ts/errors.js'
import { version } from '../src-ts/index.js'

const native = createRequire(import.meta.url)('../index.js') as { errorCodes(): string[] }

test('version() reports this package and the embedded upstream core', async () => {
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string }
  expect(version()).toEqual({ slimNode: pkg.version, slimCore: '3.4.6' })
})

test('the facade knows exactly the error codes the addon produces', () => {
  expect([...SLIM_ERROR_CODES].sort()).toEqual(native.errorCodes().sort())
})
