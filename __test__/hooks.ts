// The addon's test-only exports (cargo feature `test-hooks`, on in dev builds). They are
// left out of index.js and index.d.ts, so the tests load the binary index.js would load.
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

export interface TestHooks {
  panicForTest(message: string): void
  panicForTestAsync(message: string): Promise<void>
  aliveTasksForTest(): number
  armPanicForTest(): void
  packBatchesForTest(batches: string): Array<[ArrayBuffer, unknown]>
}

const root = fileURLToPath(new URL('..', import.meta.url))
const binary = readdirSync(root).find((file) => /^slim-node\..+\.node$/.test(file))
if (!binary) throw new Error(`no slim-node.*.node in ${root}: run npm run build:native`)

export const hooks = createRequire(import.meta.url)(`../${binary}`) as TestHooks
if (typeof hooks.aliveTasksForTest !== 'function') {
  throw new Error(`${binary} was built without the test-hooks feature: run npm run build:native`)
}
