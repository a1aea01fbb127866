// `npm run soak`: the burst and leak tests at full size (the test run uses smaller counts).
import { spawnSync } from 'node:child_process'
import { root } from './processes.mjs'

const sizes = {
  SLIM_BURST_COUNT: '100000',
  SLIM_LEAK_CYCLES: '1000',
  SLIM_SOAK_MESSAGES: '1000000',
  SLIM_FUZZ_RUNS: '20000',
}
const result = spawnSync(
  process.execPath,
  [
    'node_modules/vitest/vitest.mjs',
    'run',
    '__test__/burst.spec.ts',
    '__test__/leaks.spec.ts',
    '__test__/fuzz.spec.ts',
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, ...sizes } },
)
process.exit(result.status ?? 1)
