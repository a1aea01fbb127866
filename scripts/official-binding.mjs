// The official npm binding the benchmark compares against, installed once under
// ~/.cache/slim-node. Its platform package is imported directly: the main package
// @agntcy/slim-bindings is on npm only as 2.0.0-alpha.5, which pins older platform builds.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'

export const OFFICIAL_BINDING = '@agntcy/slim-bindings-linux-x64-gnu'
export const OFFICIAL_BINDING_VERSION = '2.1.2'

/** The directory holding the binding's node_modules, installing it the first time. */
export function officialBindingDir() {
  const dir = join(homedir(), '.cache', 'slim-node', `official-binding-${OFFICIAL_BINDING_VERSION}`)
  const spec = `${OFFICIAL_BINDING}@${OFFICIAL_BINDING_VERSION}`
  // Written last, so an interrupted install is redone rather than half used.
  const ready = join(dir, '.ready')
  if (existsSync(ready) && readFileSync(ready, 'utf8').trim() === spec) return dir
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  // Without a package.json of its own, npm walks up and installs into an enclosing project.
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'official-binding', private: true })}\n`)
  execFileSync('npm', ['install', '--prefix', dir, '--no-save', '--no-audit', '--no-fund', spec], { stdio: 'inherit' })
  writeFileSync(ready, `${spec}\n`)
  return dir
}

/** The absolute path to require() for the binding. */
export function officialBindingModule() {
  return createRequire(join(officialBindingDir(), 'package.json')).resolve(OFFICIAL_BINDING)
}

if (process.argv[1]?.endsWith('official-binding.mjs')) console.log(officialBindingModule())
