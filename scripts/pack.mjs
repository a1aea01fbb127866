// Packs what a release publishes, from the local build: this host's platform package
// (napi-rs layout, npm/<platform>) and the main package, whose optionalDependencies
// name every platform package as `napi pre-publish` sets them.
//   node scripts/pack.mjs [out-dir] [--check-budget]
// prints { main, platform } with each tarball's path, size and unpacked size, as JSON;
// --check-budget fails when the platform tarball exceeds 15 MB or its library 40 MB.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

/** napi-rs's platform key of this host, e.g. linux-x64-gnu, darwin-arm64, win32-x64-msvc. */
export function hostPlatform() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report.getReport().header.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  return platform === 'win32' ? `win32-${arch}-msvc` : `${platform}-${arch}`
}

function npmPack(dir, out) {
  const [info] = JSON.parse(
    execFileSync('npm', ['pack', dir, '--pack-destination', out, '--json', '--silent'], { encoding: 'utf8' }),
  )
  return { path: join(out, info.filename), size: info.size, unpackedSize: info.unpackedSize }
}

export function pack(out) {
  mkdirSync(out, { recursive: true })
  const staging = mkdtempSync(join(tmpdir(), 'slim-node-pack-'))
  try {
    const platform = hostPlatform()
    const binary = `${manifest.napi.binaryName}.${platform}.node`
    if (!existsSync(join(root, binary))) throw new Error(`${binary} is missing: run npm run build first`)
    const platformDir = join(staging, platform)
    cpSync(join(root, 'npm', platform), platformDir, { recursive: true })
    cpSync(join(root, binary), join(platformDir, binary))
    // A dev build carries debug info; releases are stripped by their cargo profile.
    spawnSync('objcopy', ['--strip-debug', join(platformDir, binary)], { stdio: 'ignore' })

    const mainDir = join(staging, 'main')
    for (const entry of [...manifest.files, 'README.md'])
      cpSync(join(root, entry), join(mainDir, entry), { recursive: true })
    for (const name of manifest.bundleDependencies ?? []) {
      cpSync(join(root, 'node_modules', name), join(mainDir, 'node_modules', name), { recursive: true })
    }
    const optionalDependencies = Object.fromEntries(
      readdirSync(join(root, 'npm')).map((dir) => {
        const { name, version } = JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8'))
        return [name, version]
      }),
    )
    const { devDependencies: _, scripts: __, ...published } = manifest
    writeFileSync(join(mainDir, 'package.json'), `${JSON.stringify({ ...published, optionalDependencies }, null, 2)}\n`)
    return { main: npmPack(mainDir, out), platform: npmPack(platformDir, out) }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

/** The release budget for a platform package, in bytes. */
export const BUDGET = { tarball: 15_000_000, library: 40_000_000 }

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [out = join(root, 'packages')] = process.argv.slice(2).filter((arg) => !arg.startsWith('--'))
  const packed = pack(resolve(out))
  console.log(JSON.stringify(packed, null, 2))
  if (process.argv.includes('--check-budget')) {
    const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`
    const { size, unpackedSize } = packed.platform
    console.log(
      `platform tarball ${mb(size)} (budget ${mb(BUDGET.tarball)}), unpacked ${mb(unpackedSize)} (budget ${mb(BUDGET.library)})`,
    )
    if (size > BUDGET.tarball || unpackedSize > BUDGET.library) process.exit(1)
  }
}
