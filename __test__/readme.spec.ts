import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))

/** The README's quick start, run as a user would: an ES module importing `slim-node`. */
test('the README quick start runs and prints what it says', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const snippet = /## Quick start\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(snippet).toBeDefined()
  // Inside the package directory, `slim-node` resolves to this package (self-reference).
  const dir = mkdtempSync(join(root, '.tmp-readme-'))
  const file = join(dir, 'quickstart.mjs')
  writeFileSync(file, snippet as string)
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [file], { timeout: 30_000 })
    expect(stdout.split('\n').filter(Boolean)).toEqual(['agntcy/ns/moderator: hello group', 'hello moderator'])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
