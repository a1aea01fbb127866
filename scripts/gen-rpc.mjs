// `npm run gen:rpc`: generates the slimrpc stubs of examples/rpc/greeter.proto with
// upstream's protoc plugin (protoc-gen-slimrpc-node from the crate
// agntcy-protoc-slimrpc-plugin, built once into ~/.cache/slim-node) and protobuf-es's
// protoc-gen-es, then compiles them to JavaScript: the plugin's TypeScript uses parameter
// properties, which `node file.ts` cannot strip, so examples/rpc/gen holds the compiled
// .js and .d.ts (strict tsc against slim-node's own types: it fails if the runtime does
// not satisfy what the stubs expect); --sources keeps the plugins' .ts there too.
//   node scripts/gen-rpc.mjs [--out dir] [--sources dir]
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { cacheDir } from './prerequisites.mjs'
import { root } from './processes.mjs'

export const PLUGIN = { crate: 'agntcy-protoc-slimrpc-plugin', version: '3.0.1', bin: 'protoc-gen-slimrpc-node' }
const pluginRoot = join(cacheDir, `protoc-slimrpc-${PLUGIN.version}`)

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options })
  if (result.error) throw result.error
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status}`)
}

/** The plugin binary, built with `cargo install` the first time (about 20 s). */
export function slimrpcPlugin() {
  const binary = join(pluginRoot, 'bin', PLUGIN.bin)
  if (!existsSync(binary)) {
    run(
      'cargo',
      ['install', PLUGIN.crate, '--version', PLUGIN.version, '--locked', '--bin', PLUGIN.bin, '--root', pluginRoot],
      { env: { ...process.env, CARGO_TARGET_DIR: join(cacheDir, 'target-protoc') } },
    )
  }
  return binary
}

/** Generates the stubs into `sources` (.ts) and compiles them into `out` (.js, .d.ts). */
export function generate(out = join(root, 'examples', 'rpc', 'gen'), sources = undefined) {
  // Inside the package, so that `slim-node` and `@bufbuild/protobuf` resolve as for a user.
  const src = sources ?? mkdtempSync(join(root, '.tmp-rpc-sources-'))
  mkdirSync(src, { recursive: true })
  mkdirSync(out, { recursive: true })
  const protoDir = join(root, 'examples', 'rpc')
  try {
    run('protoc', [
      `--proto_path=${protoDir}`,
      `--plugin=protoc-gen-slimrpc-node=${slimrpcPlugin()}`,
      `--slimrpc-node_out=${src}`,
      '--slimrpc-node_opt=bindings_import=slim-node',
      `--plugin=protoc-gen-es=${join(root, 'node_modules', '.bin', 'protoc-gen-es')}`,
      `--es_out=${src}`,
      '--es_opt=target=ts,import_extension=js',
      join(protoDir, 'greeter.proto'),
    ])
    run(
      join(root, 'node_modules', '.bin', 'tsc'),
      [
        ...['--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--strict'],
        ...['--declaration', '--skipLibCheck', '--ignoreConfig', '--rootDir', src, '--outDir', out],
        join(src, 'greeter_pb.ts'),
        join(src, 'greeter_slimrpc.ts'),
      ],
      { cwd: root },
    )
  } finally {
    if (!sources) rmSync(src, { recursive: true, force: true })
  }
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2)
  const flag = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
  generate(flag('--out'), flag('--sources'))
}
