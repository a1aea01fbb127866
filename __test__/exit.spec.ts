import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'
import { track } from './helpers.js'

const fixture = fileURLToPath(new URL('./fixtures/open-and-close.mjs', import.meta.url))

test('a process that closes everything exits by itself within 2 s of its last statement', async () => {
  const child = track(spawn(process.execPath, [fixture], { stdio: ['ignore', 'pipe', 'inherit'] }))
  let output = ''
  let lastStatementAt = 0
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
    if (lastStatementAt === 0 && output.includes('LAST_STATEMENT')) lastStatementAt = performance.now()
  })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  const exitedAt = performance.now()

  expect(code).toBe(0)
  // Pending calls settle on close: the session's receive and the app's listen.
  expect(output).toContain('SESSION_CLOSED,CLOSED')
  expect(lastStatementAt).toBeGreaterThan(0)
  expect(exitedAt - lastStatementAt).toBeLessThan(2_000)
})
