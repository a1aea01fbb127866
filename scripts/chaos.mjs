// `npm run chaos`: the chaos test for 10 minutes (the test run uses 60 s). Set
// SLIM_CHAOS_SECONDS for another length and SLIM_CHAOS_SEED to replay a run's faults.
import { spawnSync } from 'node:child_process'
import { root } from './processes.mjs'

const result = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '__test__/chaos.spec.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { SLIM_CHAOS_SECONDS: '600', ...process.env },
})
process.exit(result.status ?? 1)
