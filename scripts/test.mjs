// The README's test command: builds what is needed (dev profile), runs every suite
// (checks, cargo tests, vitest) and ends with one line `N passed, N failed`.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareHost } from './prerequisites.mjs'

const env = prepareHost('test')
// A fresh clone: the npm tools first, as `npm run demo` does.
if (!existsSync(join('node_modules', '.bin', 'napi'))) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const installed = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit', env })
  if (installed.status !== 0) process.exit(installed.status ?? 1)
}
const bin = (name) => join('node_modules', '.bin', name)
// napi builds for the explicit host target; cargo uses the same one so that every
// step shares one set of compiled dependencies.
const host = /^host: (.+)$/m.exec(spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout ?? '')?.[1]
const target = host ? ['--target', host] : []

let passed = 0
let failed = 0

function run(label, command, args, options = {}) {
  console.log(`\n== ${label}: ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, {
    stdio: options.capture ? 'pipe' : 'inherit',
    env: { ...env, ...options.env },
    encoding: 'utf8',
  })
  if (options.capture) process.stdout.write(`${result.stdout ?? ''}${result.stderr ?? ''}`)
  return result
}

/** A step that counts as one test: it passes when the command exits 0. */
function check(label, command, args) {
  const ok = run(label, command, args).status === 0
  if (ok) passed++
  else failed++
  console.log(`== ${label}: ${ok ? 'ok' : 'FAILED'}`)
  return ok
}

const built = check('build native addon (dev)', process.execPath, ['scripts/build-native.mjs'])
check('generated index.js/index.d.ts are committed and current', 'git', [
  'diff',
  '--exit-code',
  '--',
  'index.js',
  'index.d.ts',
])
check('build TypeScript facade', bin('tsc'), ['-p', 'tsconfig.build.json'])
check('build the examples for the package', bin('tsc'), ['-p', 'tsconfig.examples.json'])
check('add the generated RPC stubs to the built examples', process.execPath, ['scripts/ship-examples.mjs'])
check('type-check facade and tests (strict)', bin('tsc'), ['-p', 'tsconfig.json'])
check('lint and format (biome)', bin('biome'), ['check', '.'])
for (const workflow of readdirSync(join('.github', 'workflows'))) {
  check(`workflow schema: ${workflow}`, bin('action-validator'), [join('.github', 'workflows', workflow)])
}
check('rustfmt', 'cargo', ['fmt', '--all', '--check'])
check('clippy', 'cargo', [
  'clippy',
  '--workspace',
  '--all-targets',
  '--all-features',
  ...target,
  '--',
  '-D',
  'warnings',
])

const cargo = run('cargo tests', 'cargo', ['test', '--workspace', ...target], { capture: true })
const cargoOutput = `${cargo.stdout ?? ''}${cargo.stderr ?? ''}`
let cargoCounted = false
for (const match of cargoOutput.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed/g)) {
  passed += Number(match[1])
  failed += Number(match[2])
  cargoCounted = true
}
if (cargo.status !== 0 && !cargoCounted) failed++

// The benchmark harness's own test runs the Rust client; built here, outside its timeout.
check('build the Rust benchmark client (dev)', 'cargo', ['build', '-p', 'slim-bench', ...target])

// The interop suite's Python peers: made once, then cached.
check('Python slim-bindings environment for interop', process.execPath, ['scripts/python-env.mjs'])
check('upstream slim node binary for interop (cargo install, cached)', process.execPath, ['scripts/upstream-node.mjs'])

/** Runs vitest on `files` (or every suite but `excluded`) and counts its tests. */
function vitest(label, files, excluded = []) {
  const report = join(mkdtempSync(join(tmpdir(), 'slim-node-vitest-')), 'report.json')
  const exclude = excluded.flatMap((file) => ['--exclude', file])
  const args = ['run', '--reporter=default', '--reporter=json', `--outputFile=${report}`, ...exclude, ...files]
  const result = run(label, bin('vitest'), args)
  const failedBefore = failed
  try {
    const results = JSON.parse(readFileSync(report, 'utf8'))
    passed += results.numPassedTests
    failed += results.numFailedTests + results.numPendingTests + results.numTodoTests
    // A file that failed to load has no test results of its own.
    failed += results.testResults.filter(
      (file) => file.status === 'failed' && file.assertionResults.length === 0,
    ).length
  } catch {
    failed++
  }
  if (result.status !== 0 && failed === failedBefore) failed++
}

// Suites that fill both cores run alone: the fuzz (a minute of junk calls), the MLS
// burst (which loads both cores itself, once with a busy process beside it), and the
// chaos test (eight processes, timed faults).
const alone = ['__test__/burst.spec.ts', '__test__/fuzz.spec.ts', '__test__/chaos.spec.ts']
if (built) {
  vitest('vitest', [], alone)
  for (const file of alone) vitest(`vitest (${file})`, [file], [])
} else {
  failed++
}

console.log(`\n${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
