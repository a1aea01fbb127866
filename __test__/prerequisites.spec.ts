// How `npm run demo` and `npm test` set up a fresh machine: the rules deciding what to
// install (scripts/prerequisites.mjs), and the script itself on a host that lacks tools.
import { execFile } from 'node:child_process'
import { mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, test } from 'vitest'
import { type HostFacts, NEEDS, planSetup } from '../scripts/prerequisites.mjs'
import { root } from '../scripts/processes.mjs'

const fresh: HostFacts = {
  platform: 'linux',
  isRoot: true,
  commands: new Set(['cargo', 'cc', 'apt-get', 'python3', 'openssl', 'script', 'protoc']),
  libclangFound: false,
  wheelReady: false,
  hasVenv: true,
}
const host = (changes: Partial<HostFacts>): HostFacts => ({ ...fresh, ...changes })
const without = (...names: string[]) => new Set([...fresh.commands].filter((name) => !names.includes(name)))

describe('what a build or test run sets up', () => {
  test('a fresh machine of this kind: only libclang, from the PyPI wheel; no cmake', () => {
    expect(planSetup(fresh, NEEDS.test)).toEqual({ apt: [], wheel: true, useWheel: true, missing: [] })
  })

  test('a wheel fetched before is used again without a download', () => {
    expect(planSetup(host({ wheelReady: true }), NEEDS.build)).toEqual({
      apt: [],
      wheel: false,
      useWheel: true,
      missing: [],
    })
  })

  test('a system libclang needs nothing', () => {
    expect(planSetup(host({ libclangFound: true }), NEEDS.test)).toEqual({
      apt: [],
      wheel: false,
      useWheel: false,
      missing: [],
    })
  })

  test('without python3, root installs libclang and the test tools with apt-get', () => {
    const plan = planSetup(
      host({ commands: without('python3', 'openssl', 'script', 'protoc'), hasVenv: false }),
      NEEDS.test,
    )
    expect(plan.apt).toEqual(['libclang-dev', 'openssl', 'bsdutils', 'python3-venv', 'protobuf-compiler'])
    expect(plan.missing).toEqual([])
  })

  test('a build needs none of the test tools', () => {
    const plan = planSetup(
      host({ commands: without('openssl', 'script'), hasVenv: false, wheelReady: true }),
      NEEDS.build,
    )
    expect(plan).toEqual({ apt: [], wheel: false, useWheel: true, missing: [] })
  })

  test('without root or apt-get, each missing tool is named with what to install', () => {
    const plan = planSetup(host({ isRoot: false, commands: new Set(['cargo']) }), NEEDS.build)
    expect(plan.apt).toEqual([])
    expect(plan.missing).toHaveLength(2)
    expect(plan.missing[0]).toMatch(/C compiler/)
    expect(plan.missing[1]).toMatch(/libclang-dev/)
  })

  test('cargo cannot come from apt-get: it is named, never installed', () => {
    const plan = planSetup(host({ commands: without('cargo') }), NEEDS.build)
    expect(plan.apt).toEqual([])
    expect(plan.missing).toEqual([expect.stringMatching(/Rust 1\.95 with cargo/)])
  })

  test('other platforms generate no bindings here and need no libclang', () => {
    const plan = planSetup(host({ platform: 'darwin', commands: without('apt-get', 'python3') }), NEEDS.build)
    expect(plan).toEqual({ apt: [], wheel: false, useWheel: false, missing: [] })
  })

  test('the script stops at once with one line per missing tool', async () => {
    // Only node on PATH: no cargo, no C compiler and no apt-get to install one.
    const bin = mkdtempSync(join(tmpdir(), 'slim-node-path-'))
    symlinkSync(process.execPath, join(bin, 'node'))
    const env = { PATH: bin, HOME: process.env.HOME ?? '/root' }
    const started = Date.now()
    const failure = await promisify(execFile)(process.execPath, [join(root, 'scripts', 'prerequisites.mjs')], {
      env,
      timeout: 30_000,
    }).then(
      () => undefined,
      (error: { code?: number; stderr: string }) => error,
    )
    expect(failure?.code).toBe(1)
    const lines = failure?.stderr.trim().split('\n') ?? []
    expect(lines.every((line) => line.startsWith('slim-node setup: missing '))).toBe(true)
    expect(lines.join('\n')).toMatch(/cargo/)
    expect(lines.join('\n')).toMatch(/C compiler/)
    expect(Date.now() - started).toBeLessThan(10_000)
  })
})
