// Completes dist/examples after `tsc -p tsconfig.examples.json`: tsc emits only what it
// compiles, and examples/rpc/gen is already JavaScript (the compiled slimrpc stubs, with
// their .d.ts, that `npm run gen:rpc` commits), so dist/examples/rpc/*.js would import a
// ./gen directory that a clean build never makes. This copies it there as it is.
import { cpSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { root } from './processes.mjs'

export function shipExamples(dist = join(root, 'dist', 'examples')) {
  const target = join(dist, 'rpc', 'gen')
  rmSync(target, { recursive: true, force: true })
  cpSync(join(root, 'examples', 'rpc', 'gen'), target, {
    recursive: true,
    filter: (file) => !/\.ts$/.test(file) || file.endsWith('.d.ts'),
  })
  return target
}

if (process.argv[1]?.endsWith('ship-examples.mjs')) shipExamples()
