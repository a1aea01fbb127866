// Upstream's own SLIM node, the `slim` binary of crate agntcy-slim (same core line as the
// addon), built once from crates.io with `cargo install` and kept under ~/.cache/slim-node.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { prepareHost } from './prerequisites.mjs'

export const UPSTREAM_NODE_VERSION = '3.4.6'

/** The path of the `slim` binary, building it the first time. */
export function upstreamNode() {
  const cache = join(homedir(), '.cache', 'slim-node')
  const root = join(cache, `slim-${UPSTREAM_NODE_VERSION}`)
  const binary = join(root, 'bin', 'slim')
  if (existsSync(binary)) return binary
  // A dev build: this node only routes test traffic, and it builds much faster.
  execFileSync('cargo', ['install', `agntcy-slim@${UPSTREAM_NODE_VERSION}`, '--locked', '--debug', '--root', root], {
    stdio: 'inherit',
    env: { ...prepareHost('build'), CARGO_TARGET_DIR: join(cache, 'target-slim') },
  })
  return binary
}

if (process.argv[1]?.endsWith('upstream-node.mjs')) console.log(upstreamNode())
