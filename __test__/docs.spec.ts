// The API reference in docs/api is typedoc's rendering of the facade's doc comments
// (typedoc.json): it must build without a warning, match what is committed, and give
// every export an example.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const committed = join(root, 'docs', 'api')
const work = mkdtempSync(join(tmpdir(), 'slim-node-docs-'))
const markdown = join(work, 'api')
const json = join(work, 'api.json')

/** typedoc on a busy machine (a cargo build beside it) takes far longer than alone. */
const TYPEDOC_TIMEOUT_MS = 180_000

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  log: string
}

/**
 * typedoc with the project's typedoc.json, into `markdown` and `json`. Warnings are
 * collected from the log instead of aborting the run, so that each test below can fail
 * on its own: a run that warns writes nothing when warnings are errors.
 */
function typedoc(): Promise<Run> {
  const bin = join(root, 'node_modules', 'typedoc', 'bin', 'typedoc')
  const args = [bin, '--out', markdown, '--json', json, '--treatWarningsAsErrors', 'false', '--logLevel', 'Warn']
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: root, timeout: TYPEDOC_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null
        resolve({
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          signal: failure?.signal ?? null,
          // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
          log: `${stdout}${stderr}`.replace(/\u001b\[[0-9;]*m/g, ''),
        })
      },
    )
  })
}

/** Every file under `dir`, by path relative to it (forward slashes), with its text. */
function tree(dir: string): Map<string, string> {
  const files = new Map<string, string>()
  if (!existsSync(dir)) return files
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()) {
    const path = join(dir, entry)
    if (statSync(path).isFile()) files.set(entry.split('\\').join('/'), readFileSync(path, 'utf8'))
  }
  return files
}

let run: Run
beforeAll(async () => {
  run = await typedoc()
}, TYPEDOC_TIMEOUT_MS + 10_000)
afterAll(() => rmSync(work, { recursive: true, force: true }))

test('typedoc builds the API reference without a warning', () => {
  const problems = run.log.split('\n').filter((line) => /\[(warning|error)\]/.test(line))
  expect(run.signal, `typedoc was stopped (${run.signal}), after ${TYPEDOC_TIMEOUT_MS} ms at most:\n${run.log}`).toBe(
    null,
  )
  expect(problems, `typedoc reported problems; fix the doc comments:\n${run.log}`).toEqual([])
  expect(run.code, `typedoc failed:\n${run.log}`).toBe(0)
})

test('docs/api is the current output of typedoc', () => {
  const fresh = tree(markdown)
  expect(fresh.size, `typedoc wrote no markdown:\n${run.log}`).toBeGreaterThan(0)
  const old = tree(committed)
  const stale = [...new Set([...fresh.keys(), ...old.keys()])]
    .sort()
    .filter((path) => fresh.get(path) !== old.get(path))
    .map((path) => `${path} (${!old.has(path) ? 'missing' : !fresh.has(path) ? 'no longer generated' : 'changed'})`)
  expect(stale, 'docs/api is stale: run npm run docs and commit docs/api').toEqual([])
})

/** The parts of typedoc's JSON output read here. */
interface Comment {
  blockTags?: { tag: string }[]
}
interface Reflection {
  id: number
  name: string
  kind: number
  comment?: Comment
  signatures?: { comment?: Comment }[]
  children?: Reflection[]
}
interface Project {
  children?: Reflection[]
  symbolIdMap?: Record<string, { packagePath: string }>
}

const exampleIn = (comment: Comment | undefined) => comment?.blockTags?.some(({ tag }) => tag === '@example') ?? false

/** A function's example sits on its signature (each overload's), anything else's on itself. */
function hasExample(item: Reflection): boolean {
  if (exampleIn(item.comment)) return true
  const signatures = item.signatures ?? []
  return signatures.length > 0 && signatures.every((signature) => exampleIn(signature.comment))
}

test('every export of every entry point has an @example', () => {
  expect(existsSync(json), `typedoc wrote no JSON:\n${run.log}`).toBe(true)
  const project = JSON.parse(readFileSync(json, 'utf8')) as Project
  // One module per entry point (slim-node, slim-node/mcp, slim-node/a2a), each with its exports.
  const modules = project.children ?? []
  expect(modules.map((module) => module.name).sort()).toEqual(['slim-node', 'slim-node/a2a', 'slim-node/mcp'])
  const exports = modules.flatMap((module) => module.children ?? [])
  // Far fewer would mean the entry point or the JSON layout changed, not that all is well.
  expect(exports.length).toBeGreaterThan(30)
  const missing = exports
    .filter((item) => !hasExample(item))
    .map((item) => {
      const file = project.symbolIdMap?.[item.id]?.packagePath ?? 'an unknown file'
      const where = file === 'index.d.ts' ? "index.d.ts (from the addon's Rust /// comment)" : file
      return `${item.name}, documented in ${where}`
    })
  expect(missing, 'exports whose doc comment has no @example block').toEqual([])
})
