// The systems a benchmark run compares and how to start each one's clients and node.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, symlinkSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { prepareHost } from '../scripts/prerequisites.mjs'
import { root } from '../scripts/processes.mjs'
import { acceptsConnections, type ClientConfig, freePort } from './clients/common.ts'
import { BenchProcess, type Launch } from './process.ts'

export const SYSTEM_IDS = ['slim-node', 'base', 'rust', 'official', 'python', 'nats'] as const
export type SystemId = (typeof SYSTEM_IDS)[number]

export const SYSTEM_LABELS: Record<SystemId, string> = {
  'slim-node': 'slim-node',
  base: 'slim-node (base)',
  rust: 'pure Rust',
  official: 'official npm binding',
  python: 'Python slim-bindings',
  nats: 'NATS (nats.js)',
}

/** Where each system's pieces are, once prepared. */
export interface Toolchain {
  /** `release` for reported runs, `fast` (thin LTO, incremental) to iterate, `dev` for the harness test. */
  profile: 'release' | 'fast' | 'dev'
  /** The slim-node addon the clients and nodes load. */
  addon: string
  rustClient: string
  /** `--base`: slim-node as another commit built it, in a worktree of its own. */
  base?: { addon: string; dir: string }
  python?: string
  officialModule?: string
  natsServer?: string
}

const cache = join(homedir(), '.cache', 'slim-node')
const tsx = ['--import', 'tsx']

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = root): void {
  const result = spawnSync(command, args, { cwd, stdio: 'inherit', env: { ...process.env, ...env } })
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} in ${cwd} failed (${result.status ?? result.signal})`)
  }
}

/** Builds the addon of the checkout at `cwd` with `cargoArgs` into `out`. */
function buildAddon(cwd: string, cargoArgs: string[], out: string, env: NodeJS.ProcessEnv): void {
  const args = ['napi', 'build', '--platform', ...cargoArgs, '--manifest-path', 'crates/slim-node/Cargo.toml']
  run('npx', [...args, '--output-dir', out, '--no-js', '--dts', join(out, 'index.d.ts')], env, cwd)
}

/**
 * Builds what the run needs. `release` (benchmarks) and `fast` (iterating) build the
 * package's JavaScript, and the addon and the Rust client with one cargo profile
 * (`release`, or `bench-fast`: thin LTO) into their own cache; `dev` (the harness's own
 * test) uses the repository's dev builds.
 */
export async function prepare(
  profile: Toolchain['profile'],
  systems: readonly SystemId[],
  baseRef?: string,
): Promise<Toolchain> {
  const optimised = profile !== 'dev'
  const cargoProfile = profile === 'release' ? 'release' : profile === 'fast' ? 'bench-fast' : 'debug'
  const targetDir = join(cache, optimised ? 'target-release' : 'target')
  const env = { ...prepareHost('build'), CARGO_TARGET_DIR: targetDir }
  // The slim-node client imports the package, so its JavaScript must match the addon
  // (`npm test` builds it before the harness's own test runs).
  if (optimised && systems.includes('slim-node')) run('npx', ['tsc', '-p', 'tsconfig.build.json'], {})
  let addon = join(root, 'slim-node.linux-x64-gnu.node')
  const cargoArgs = profile === 'release' ? ['--release'] : profile === 'fast' ? ['--profile', cargoProfile] : []
  if (optimised) {
    const out = join(cache, profile === 'release' ? 'bench-native' : 'bench-native-fast')
    buildAddon(root, cargoArgs, out, env)
    addon = join(out, 'slim-node.linux-x64-gnu.node')
  }
  // The host triple, as napi builds with it: both builds then share their dependencies.
  const host = /^host: (.+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))?.[1] ?? ''
  const rustClient = join(targetDir, host, cargoProfile, 'slim-bench')
  if (systems.includes('rust')) {
    run('cargo', ['build', '--quiet', '-p', 'slim-bench', '--target', host, ...cargoArgs], env)
  }
  const toolchain: Toolchain = { profile, addon, rustClient }
  if (systems.includes('base')) toolchain.base = prepareBase(baseRef ?? 'HEAD', cargoArgs, env)
  // Imported only when needed: each installs its peer on first use.
  if (systems.includes('python')) toolchain.python = (await import('../scripts/python-env.mjs')).pythonWithSlim()
  if (systems.includes('official')) {
    toolchain.officialModule = (await import('../scripts/official-binding.mjs')).officialBindingModule()
  }
  if (systems.includes('nats')) toolchain.natsServer = natsServer()
  return toolchain
}

/**
 * slim-node as commit `ref` has it, for an A/B run: a worktree of that commit with this
 * tree's benchmark clients (so both sides run the same client), its facade compiled and
 * its addon built with the same profile as this tree's, in a target directory of its own
 * (so that a run rebuilds only what changed since the last).
 */
function prepareBase(ref: string, cargoArgs: string[], env: NodeJS.ProcessEnv): NonNullable<Toolchain['base']> {
  const dir = join(cache, 'ab-base')
  const commit = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], {
    cwd: root,
    encoding: 'utf8',
  }).trim()
  // The worktree is kept between runs and checked out anew: files the commits share keep
  // their times, so cargo rebuilds only what differs.
  const checkedOut = existsSync(join(dir, '.git'))
    ? execFileSync('git', ['rev-parse', 'HEAD'], { cwd: dir, encoding: 'utf8' }).trim()
    : undefined
  // (A checkout rewrites HEAD, which the addon's build script watches for its git sha.)
  if (checkedOut === commit) run('git', ['reset', '--hard', '--quiet'], {}, dir)
  else if (checkedOut !== undefined) run('git', ['checkout', '--force', '--detach', commit], {}, dir)
  else {
    run('git', ['worktree', 'prune'])
    run('git', ['worktree', 'add', '--force', '--detach', dir, commit])
  }
  if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  cpSync(join(root, 'bench', 'clients'), join(dir, 'bench', 'clients'), { recursive: true })
  run('npx', ['tsc', '-p', 'tsconfig.build.json'], {}, dir)
  // A target directory of its own: built into this tree's, each side's `slim-node` crate
  // would be rebuilt over the other's on every run.
  const out = join(cache, 'bench-native-base')
  buildAddon(dir, cargoArgs, out, { ...env, CARGO_TARGET_DIR: join(cache, 'target-ab-base') })
  return { addon: join(out, 'slim-node.linux-x64-gnu.node'), dir }
}

/** Debian's nats-server, installed when missing and the run may use apt. */
function natsServer(): string {
  const found = ['/usr/sbin/nats-server', '/usr/bin/nats-server'].find((path) => existsSync(path))
  if (found) return found
  execFileSync('apt-get', ['install', '-y', '-q', 'nats-server'], { stdio: 'inherit' })
  return '/usr/sbin/nats-server'
}

/** The command line of `system`'s client with `config`. */
export function clientLaunch(system: SystemId, tools: Toolchain, config: ClientConfig): Launch {
  const json = JSON.stringify(config)
  const script = (name: string): string => join(root, 'bench', 'clients', name)
  switch (system) {
    case 'slim-node':
      return {
        command: process.execPath,
        args: [...tsx, script('slim-node.ts'), json],
        env: { NAPI_RS_NATIVE_LIBRARY_PATH: tools.addon },
      }
    case 'base':
      return {
        command: process.execPath,
        args: [...tsx, join(tools.base?.dir ?? root, 'bench', 'clients', 'slim-node.ts'), json],
        env: { NAPI_RS_NATIVE_LIBRARY_PATH: tools.base?.addon ?? tools.addon },
      }
    case 'rust':
      return { command: tools.rustClient, args: [json] }
    case 'official':
      return {
        command: process.execPath,
        args: [...tsx, script('official.ts'), json],
        env: { SLIM_OFFICIAL_MODULE: tools.officialModule },
      }
    case 'python':
      return {
        command: tools.python ?? 'python3',
        args: [script(config.role.startsWith('rpc-') ? 'python_rpc.py' : 'python_client.py'), json],
      }
    case 'nats':
      return { command: process.execPath, args: [...tsx, script('nats.ts'), json] }
  }
}

export interface Node {
  process: BenchProcess
  /** What clients connect to. */
  endpoint: string
}

/**
 * Starts the node `system`'s clients use: slim-node's embedded node serves slim-node, the
 * Rust client and Python (all SLIM core 3.4.6); the official binding (core 2.x) needs its
 * own, and the base of an A/B run has its own build of slim-node's.
 */
export async function startNode(system: SystemId, tools: Toolchain, base: ClientConfig): Promise<Node> {
  const port = await freePort()
  if (system === 'nats') {
    const nats = new BenchProcess('nats-server', {
      command: tools.natsServer ?? 'nats-server',
      args: ['-a', '127.0.0.1', '-p', String(port)],
    })
    await acceptsConnections('127.0.0.1', port, 10_000)
    return { process: nats, endpoint: `127.0.0.1:${port}` }
  }
  const host = system === 'official' || system === 'base' ? system : 'slim-node'
  const config = { ...base, role: 'node' as const, endpoint: `127.0.0.1:${port}` }
  const node = new BenchProcess(`${host} node`, clientLaunch(host, tools, config))
  const listening = await node.waitFor('listening', 30_000)
  return { process: node, endpoint: String(listening.url) }
}
