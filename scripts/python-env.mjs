// The Python side of the interop tests: a virtual environment with the upstream
// slim-bindings pinned in interop/python/requirements.txt, from PyPI, made once and
// kept under ~/.cache/slim-node.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { root } from './processes.mjs'

export const requirements = join(root, 'interop', 'python', 'requirements.txt')

/** The venv's python, with the pinned slim-bindings installed. */
export function pythonWithSlim() {
  const pin = readFileSync(requirements, 'utf8')
    .trim()
    .replace(/[^\w.-]+/g, '_')
  const dir = join(homedir(), '.cache', 'slim-node', `venv-${pin}`)
  const python = join(dir, 'bin', 'python')
  const ready = join(dir, '.ready')
  if (existsSync(ready)) return python
  rmSync(dir, { recursive: true, force: true })
  execFileSync('python3', ['-m', 'venv', dir], { stdio: 'inherit' })
  execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements], {
    stdio: 'inherit',
  })
  writeFileSync(ready, `${pin}\n`)
  return python
}

if (process.argv[1]?.endsWith('python-env.mjs')) console.log(pythonWithSlim())
