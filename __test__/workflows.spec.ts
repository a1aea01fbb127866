import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { root } from '../scripts/processes.mjs'

const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  version: string
  engines: { node: string }
  napi: { targets: string[] }
}

test('the release workflow builds exactly the targets that have platform packages', () => {
  const release = readFileSync(join(root, '.github', 'workflows', 'release.yml'), 'utf8')
  const built = [...release.matchAll(/^\s+- target: (\S+)$/gm)].map((match) => match[1])
  expect(built.sort()).toEqual([...manifest.napi.targets].sort())

  const packages = readdirSync(join(root, 'npm')).map(
    (dir) =>
      JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8')) as {
        name: string
        version: string
        os: string[]
        cpu: string[]
        libc?: string[]
        engines: { node: string }
      },
  )
  expect(packages).toHaveLength(manifest.napi.targets.length)
  for (const pkg of packages) {
    expect(pkg.version).toBe(manifest.version)
    expect(pkg.engines).toEqual(manifest.engines)
    // npm installs a package only where os, cpu and (on Linux) libc all match.
    const [, os, cpu, abi] = /^slim-node-(linux|darwin|win32)-(x64|arm64)(?:-(gnu|musl|msvc))?$/.exec(pkg.name) ?? []
    expect(pkg.os, pkg.name).toEqual([os])
    expect(pkg.cpu, pkg.name).toEqual([cpu])
    expect(pkg.libc, pkg.name).toEqual(os === 'linux' ? [abi === 'gnu' ? 'glibc' : 'musl'] : undefined)
  }
})
