// Builds the native addon with the napi CLI. The cargo target directory lives
// outside the clone (default ~/.cache/slim-node/target) so rebuilds stay incremental.
// Other arguments go to `napi build` as they are: --release, --target <triple>,
// --use-napi-cross, --cross-compile.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { prepareHost } from './prerequisites.mjs'

const env = prepareHost('build')

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
  // ErrorCode and SessionType as real string enums (`export declare enum`), not const
  // enums, which type-stripping and isolatedModules cannot use.
  '--no-const-enum',
  '--runtime-string-enum',
]
const extra = process.argv.slice(2)
// The test-only exports (panicForTest, aliveTasksForTest) exist in dev builds only.
if (!extra.includes('--release')) args.push('--features', 'test-hooks')
args.push(...extra)

const napi = join('node_modules', '.bin', 'napi')
const result = spawnSync(napi, args, { stdio: 'inherit', env })
if (result.error) throw result.error
process.exit(result.status ?? 1)
