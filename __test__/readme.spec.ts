import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { expect, onTestFinished, test } from 'vitest'
import { run } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))

const quickStart = (readme: string) => /## Quick start\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1]

/** The README's quick start, run as a user would: an ES module importing `slim-node`. */
test('the README quick start runs and prints what it says', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const snippet = quickStart(readme)
  expect(snippet).toBeDefined()
  // Inside the package directory, `slim-node` resolves to this package (self-reference).
  const dir = mkdtempSync(join(root, '.tmp-readme-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'quickstart.mjs')
  writeFileSync(file, snippet as string)
  const { stdout } = await run(process.execPath, [file], { timeout: 30_000 })
  expect(stdout.split('\n').filter(Boolean)).toEqual(['agntcy/ns/moderator: hello group', 'hello moderator'])
})

/** Names the README's snippets use as placeholders for the reader's own values. */
const placeholders = `
import type { App, Session } from 'slim-node'
declare const serverApp: App
declare const clientApp: App
declare const local: string
declare const slim: { endpoint: string }
declare const sharedSecret: string
declare const secret: string
declare const privateKeyPem: string
declare const base64Jwks: string
declare const session: Session
declare const card: import('@a2a-js/sdk').AgentCard
declare const executor: import('@a2a-js/sdk/server').AgentExecutor
declare const message: import('@a2a-js/sdk').Message
`

/** Every other TypeScript snippet in the README compiles against the package's published types. */
test('the README snippets type-check against the package', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const snippets = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)]
    .map((match) => match[1] as string)
    .filter((snippet) => snippet !== quickStart(readme)) // run by the test above
  expect(snippets.length).toBeGreaterThanOrEqual(4)
  const dir = mkdtempSync(join(root, '.tmp-readme-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const files = snippets.map((snippet, index) => {
    const file = join(dir, `snippet-${index + 1}.ts`)
    writeFileSync(file, `${snippet}\n${placeholders}\nexport {}\n`)
    return file
  })
  // The MCP SDK's declarations name the DOM's HeadersInit; the shim gives it to Node-only programs.
  const program = ts.createProgram([...files, join(root, 'src-ts', 'globals.d.ts')], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
    types: ['node'],
    strict: true,
    noEmit: true,
  })
  const problems = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const where = diagnostic.file ? diagnostic.file.fileName.slice(dir.length + 1) : ''
    return `${where}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`
  })
  expect(problems).toEqual([])
})
