// What a build or test run needs from the host besides npm packages, found or installed
// before cargo starts, so that `npm run demo` and `npm test` work on a fresh machine.
//
// cmake is not needed: .cargo/config.toml selects aws-lc-sys's cc-crate builder. libclang
// is: upstream's crates turn on aws-lc-rs's `bindgen` feature, which generates AWS-LC's
// bindings with libclang at build time. Without a system libclang we take the one that
// PyPI's `libclang` wheel ships (it has no clang headers, so the C compiler's builtin
// include directory stands in for them).
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

export const cacheDir = join(homedir(), '.cache', 'slim-node')
export const LIBCLANG_WHEEL = { name: 'libclang', version: '18.1.1' }
export const wheelLibclangDir = join(cacheDir, `libclang-${LIBCLANG_WHEEL.version}`)

/** Everything a build needs; `test` adds the tools the test suites call. */
export const NEEDS = {
  build: ['cargo', 'cc', 'libclang'],
  test: ['cargo', 'cc', 'libclang', 'openssl', 'script', 'python3-venv', 'protoc'],
}

/** Debian's package for each need that apt-get can install. */
const APT_PACKAGES = {
  cc: 'gcc',
  libclang: 'libclang-dev',
  openssl: 'openssl',
  script: 'bsdutils',
  'python3-venv': 'python3-venv',
  protoc: 'protobuf-compiler',
}

/** Why each need is there, for the line printed when it cannot be met. */
const PURPOSE = {
  cargo: 'Rust 1.95 with cargo (rustup.rs), to build the addon',
  cc: 'a C compiler (cc), for the C code in the upstream crates',
  libclang: 'libclang (Debian: libclang-dev), for the bindings aws-lc-sys generates',
  openssl: 'openssl, which the TLS tests make their certificates with',
  script: 'script (Debian: bsdutils), which gives the CLI test a terminal',
  'python3-venv': "python3 with venv (Debian: python3-venv), for the interop tests' Python peer",
  protoc: 'protoc (Debian: protobuf-compiler), which the slimrpc code-generation test runs',
}

/**
 * Decides how each need is met from what the host has. Pure, so the rules are testable.
 *
 * host: { platform, isRoot, commands: Set of commands on PATH, libclangFound: boolean,
 *         wheelReady: boolean, hasVenv: boolean }
 * Returns { apt: Debian packages to install, wheel: fetch the libclang wheel,
 *           useWheel: point bindgen at the wheel's libclang, missing: lines naming what to install }.
 */
export function planSetup(host, needs) {
  const plan = { apt: [], wheel: false, useWheel: false, missing: [] }
  const canApt = host.isRoot && host.commands.has('apt-get')
  const met = {
    cargo: host.commands.has('cargo'),
    cc: host.commands.has('cc'),
    // Only Linux builds generate bindings here; other hosts' toolchains ship clang.
    libclang: host.platform !== 'linux' || host.libclangFound,
    openssl: host.commands.has('openssl'),
    script: host.platform === 'win32' || host.commands.has('script'),
    'python3-venv': host.hasVenv,
    protoc: host.commands.has('protoc'),
  }
  for (const need of needs) {
    if (met[need]) continue
    if (need === 'libclang' && (host.wheelReady || host.commands.has('python3'))) {
      plan.useWheel = true
      plan.wheel = !host.wheelReady
    } else if (canApt && APT_PACKAGES[need]) {
      plan.apt.push(APT_PACKAGES[need])
    } else {
      plan.missing.push(`missing ${PURPOSE[need]}: install it and run this command again`)
    }
  }
  return plan
}

function commandsOnPath(env) {
  const found = new Set()
  const names = ['cargo', 'cc', 'apt-get', 'python3', 'openssl', 'script', 'protoc']
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    for (const name of names) if (dir && existsSync(join(dir, name))) found.add(name)
  }
  return found
}

function filesIn(dir) {
  try {
    return readdirSync(dir).map((file) => join(dir, file))
  } catch {
    return []
  }
}

function findSystemLibclang(env) {
  if (env.LIBCLANG_PATH) return true
  const llvm = filesIn('/usr/lib').filter((dir) => /\/llvm-\d+$/.test(dir))
  const dirs = [
    ...llvm.map((dir) => join(dir, 'lib')),
    ...filesIn('/usr/lib').filter((dir) => dir.endsWith('-linux-gnu')),
  ]
  dirs.push('/usr/lib64', '/usr/local/lib')
  // libclang-cpp is the C++ library; bindgen loads the C one.
  return dirs.some((dir) => filesIn(dir).some((file) => /\/libclang(-\d+)?\.so/.test(file)))
}

function hasVenv(commands, env) {
  if (!commands.has('python3')) return false
  return spawnSync('python3', ['-c', 'import venv, ensurepip'], { env, stdio: 'ignore' }).status === 0
}

/** What this host has, for `planSetup`. */
export function probeHost(env = process.env) {
  const commands = commandsOnPath(env)
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    commands,
    libclangFound: process.platform === 'linux' && findSystemLibclang(env),
    wheelReady: existsSync(join(wheelLibclangDir, 'libclang.so')),
    hasVenv: hasVenv(commands, env),
  }
}

function say(line) {
  console.error(`slim-node setup: ${line}`)
}

function installWithApt(packages) {
  say(`installing ${packages.join(' ')} with apt-get`)
  const quiet = { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }
  execFileSync('apt-get', ['update', '-qq'], quiet)
  execFileSync('apt-get', ['install', '-y', '-qq', ...packages], quiet)
}

function fetchLibclangWheel() {
  const spec = `${LIBCLANG_WHEEL.name}==${LIBCLANG_WHEEL.version}`
  say(`fetching libclang from PyPI (${spec}) into ${wheelLibclangDir}`)
  const work = mkdtempSync(join(tmpdir(), 'slim-node-libclang-'))
  try {
    const pip = ['-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps']
    execFileSync('python3', [...pip, '--only-binary=:all:', '--dest', work, spec], { stdio: 'inherit' })
    const wheel = readdirSync(work).find((file) => file.endsWith('.whl'))
    if (!wheel) throw new Error(`pip download of ${spec} left no wheel`)
    const unpacked = join(work, 'unpacked')
    execFileSync('python3', ['-m', 'zipfile', '-e', join(work, wheel), unpacked])
    const library = filesIn(unpacked)
      .map((dir) => join(dir, 'platlib', 'clang', 'native', 'libclang.so'))
      .find((file) => existsSync(file))
    if (!library) throw new Error(`${wheel} holds no libclang.so`)
    mkdirSync(wheelLibclangDir, { recursive: true })
    renameSync(library, join(wheelLibclangDir, 'libclang.so'))
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/**
 * Meets the needs of `kind` ('build' or 'test') and returns the environment for cargo,
 * or prints one line per unmet need and exits at once.
 */
export function prepareHost(kind, env = process.env) {
  const plan = planSetup(probeHost(env), NEEDS[kind])
  if (plan.missing.length > 0) {
    for (const line of plan.missing) say(line)
    process.exit(1)
  }
  try {
    if (plan.apt.length > 0) installWithApt(plan.apt)
    if (plan.wheel) fetchLibclangWheel()
  } catch (error) {
    say(`could not install what the build needs: ${error.message}`)
    process.exit(1)
  }
  const ready = { ...env }
  ready.CARGO_TARGET_DIR ??= join(cacheDir, 'target')
  // As .cargo/config.toml says, for the builds that do not read it (`cargo install`).
  ready.AWS_LC_SYS_CMAKE_BUILDER ??= '0'

  if (plan.useWheel) {
    ready.LIBCLANG_PATH = wheelLibclangDir
    const builtins = execFileSync('cc', ['-print-file-name=include'], { encoding: 'utf8' }).trim()
    ready.BINDGEN_EXTRA_CLANG_ARGS = [env.BINDGEN_EXTRA_CLANG_ARGS, `-I${builtins}`].filter(Boolean).join(' ')
  }
  return ready
}

// `node scripts/prerequisites.mjs [build|test]` sets the host up; `… env` also prints the
// variables for plain cargo commands: eval "$(node scripts/prerequisites.mjs env)".
if (process.argv[1]?.endsWith('prerequisites.mjs')) {
  const mode = process.argv[2]
  const env = prepareHost(mode === 'test' ? 'test' : 'build')
  if (mode === 'env') {
    for (const name of ['CARGO_TARGET_DIR', 'AWS_LC_SYS_CMAKE_BUILDER', 'LIBCLANG_PATH', 'BINDGEN_EXTRA_CLANG_ARGS']) {
      if (env[name] !== undefined) console.log(`export ${name}='${env[name]}'`)
    }
  } else {
    say('ready')
  }
}
