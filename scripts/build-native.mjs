// Builds the native addon with the napi CLI. The cargo target directory lives
// outside the clone (default ~/.cache/slim-node/target) so rebuilds stay incremental.
// Other arguments go to `napi build` as they are: --release, --target <triple>,
// --use-napi-cross, --cross-compile.
import { spawnSync } from 'node:child_process'
import { homedir } from 'node:os'
import { join } from 'node:path'

const env = { ...process.env }
env.CARGO_TARGET_DIR ??= join(homedir(), '.cache', 'slim-node', 'target')

const args = [
  'build',
  '--platform',
  '--manifest-path',
  'crates/slim-node/Cargo.toml',
  '--output-dir',
  '.',
  '--js',
  'index.js',
  '--dts',
  'index.d.ts',
  '--esm',
]
args.push(...process.argv.slice(2))

const napi = join('node_modules', '.bin', 'napi')
const result = spawnSync(napi, args, { stdio: 'inherit', env })
if (result.error) throw result.error
process.exit(result.status ?? 1)
