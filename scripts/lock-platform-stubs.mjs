// The npm mirror this project is developed against lacks some platform-specific
// optional packages (darwin, win32, musl builds of dev tools). `npm install` then leaves
// them out of package-lock.json and `npm ci` refuses the lock as out of sync. This
// records each missing optional platform package with its os/cpu/libc, so `npm ci`
// accepts the lock and skips them on hosts they do not fit, as it does on npmjs.org.
// Run after `npm install` whenever dev dependencies change.
import { readFileSync, writeFileSync } from 'node:fs'

const OS = ['android', 'darwin', 'freebsd', 'linux', 'win32', 'openbsd', 'sunos', 'aix']
const CPU = ['arm64', 'x64', 'arm', 'ia32', 'ppc64', 'riscv64', 's390x', 'loong64', 'wasm32']

function platformOf(name) {
  const tokens = name.split('/').pop().split('-')
  const entry = {}
  const os = tokens.find((t) => OS.includes(t))
  const cpu = tokens.find((t) => CPU.includes(t))
  if (os) entry.os = [os]
  if (cpu) entry.cpu = [cpu]
  if (tokens.includes('musl')) entry.libc = ['musl']
  else if (os === 'linux' && tokens.includes('gnu')) entry.libc = ['glibc']
  return entry.os || entry.cpu ? entry : undefined
}

const path = 'package-lock.json'
const lock = JSON.parse(readFileSync(path, 'utf8'))
let added = 0
for (const [location, pkg] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const key = `${location ? `${location}/` : ''}node_modules/${dep}`
    const hoisted = `node_modules/${dep}`
    if (lock.packages[key] || lock.packages[hoisted]) continue
    const platform = platformOf(dep)
    if (!platform) continue
    lock.packages[hoisted] = { version, optional: true, ...platform }
    added++
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : a.localeCompare(b))),
)
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`)
console.log(`recorded ${added} optional platform packages`)
