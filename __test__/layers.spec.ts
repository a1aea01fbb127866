// The modules of the addon and of the facade import each other one way only, and stay
// small enough to read in one sitting (docs/architecture.md draws the layers).
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { expect, test } from 'vitest'
import { root } from '../scripts/processes.mjs'

const MAX_LINES = 400

function files(dir: string, extension: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => join(entry.parentPath, entry.name))
}

/** The first cycle in `graph`, as a path that returns to its start, if there is one. */
function cycleIn(graph: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node]
    state.set(node, 'open')
    path.push(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle) return cycle
    }
    path.pop()
    state.set(node, 'done')
    return undefined
  }
  for (const node of graph.keys()) {
    const cycle = visit(node)
    if (cycle) return cycle
  }
  return undefined
}

/** The addon's modules by path (`session::core`) and the modules each one names. */
function rustGraph(): Map<string, Set<string>> {
  const src = join(root, 'crates', 'slim-node', 'src')
  const modules = new Map<string, string>()
  for (const file of files(src, '.rs')) {
    const path = relative(src, file)
      .replace(/\\/g, '/')
      .replace(/(\/mod)?\.rs$/, '')
    if (path !== 'lib') modules.set(path.replaceAll('/', '::'), readFileSync(file, 'utf8'))
  }
  const graph = new Map<string, Set<string>>()
  for (const [module, source] of modules) {
    const uses = new Set<string>()
    // `crate::a::b::Item` and grouped `use crate::a::{b, c}` both name `a::b` or `a`.
    for (const match of source.matchAll(/crate::((?:[a-z_]+::)*[a-z_]+)/g)) {
      const parts = (match[1] as string).split('::')
      while (parts.length > 0 && !modules.has(parts.join('::'))) parts.pop()
      const target = parts.join('::')
      if (target && target !== module && !module.startsWith(`${target}::`)) uses.add(target)
    }
    graph.set(module, uses)
  }
  return graph
}

function typescriptGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>()
  const facade = join(root, 'src-ts')
  const moduleOf = (file: string) => relative(facade, file).replace(/\.ts$/, '')
  for (const file of files(facade, '.ts')) {
    const source = readFileSync(file, 'utf8')
    const imports = [...source.matchAll(/from '(\.\.?\/[\w/.-]+)\.js'/g)]
      .map((match) => join(dirname(file), `${match[1]}.ts`))
      .filter((target) => target.startsWith(facade))
      .map(moduleOf)
    graph.set(moduleOf(file), new Set(imports))
  }
  return graph
}

test('the addon modules import one way, with no cycle', () => {
  const graph = rustGraph()
  expect(graph.size).toBeGreaterThan(20)
  expect(graph.get('session::core')).toContain('link')
  expect(cycleIn(graph)).toBeUndefined()
})

test('the facade modules import one way, with no cycle', () => {
  const graph = typescriptGraph()
  expect(graph.get('index')).toContain('core/app')
  expect(graph.get('a2a/client')).toContain('rpc/channel')
  expect(cycleIn(graph)).toBeUndefined()
})

test('the cycle check finds a cycle when there is one', () => {
  const graph = new Map([
    ['a', new Set(['b'])],
    ['b', new Set(['c'])],
    ['c', new Set(['a'])],
  ])
  expect(cycleIn(graph)).toEqual(['a', 'b', 'c', 'a'])
})

test(`no Rust module nor facade module is longer than ${MAX_LINES} lines, docs included`, () => {
  const modules = [
    ...files(join(root, 'crates', 'slim-node', 'src'), '.rs'),
    ...files(join(root, 'src-ts'), '.ts'),
  ].map((file) => ({ file: relative(root, file), lines: readFileSync(file, 'utf8').split('\n').length }))
  expect(modules.filter(({ lines }) => lines > MAX_LINES)).toEqual([])
})
