// The benchmark harness itself, on its smallest plan: slim-node and the pure-Rust client
// (dev builds) through every scenario, slimrpc's included, checked for complete,
// well-formed results. The figures are not judged here: performance is measured by
// `npm run bench`, not by tests.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import type { Summary } from '../bench/report.ts'

test('the smoke plan runs every scenario on slim-node and the Rust client and writes the report', () => {
  const out = mkdtempSync(join(tmpdir(), 'slim-node-bench-'))
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'bench/run.ts',
      '--plan',
      'smoke',
      '--systems',
      'slim-node,rust',
      '--profile',
      'dev',
      '--out',
      out,
    ],
    { encoding: 'utf8', timeout: 240_000 },
  )
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0)
  const { summaries } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { summaries: Summary[] }
  const scenarios = ['throughput', 'unreliable', 'p2p', 'latency', 'rtt', 'rpc-unary', 'rpc-stream']
  for (const system of ['slim-node', 'rust'] as const) {
    const ran = summaries.filter((s) => s.system === system)
    expect(new Set(ran.map((s) => s.scenario))).toEqual(new Set(scenarios))
    for (const s of ran) {
      expect(s.status, `${system} ${s.config}: ${s.error ?? ''}`).toBe('ok')
      expect(s.duplicates).toBe(0)
      expect(s.cpuSeconds.publisher).toBeGreaterThan(0)
    }
    // Acknowledged sessions lose nothing; their rates come from real receive times.
    // A slimrpc stream, too: its caller counts the answers as a subscriber counts messages.
    for (const s of ran.filter((r) => ['throughput', 'p2p', 'rpc-stream'].includes(r.scenario))) {
      expect(s.lost).toBe(0)
      expect(s.received).toBe(s.expected)
      expect(s.perSubscriber).toBeGreaterThan(0)
    }
    const latency = ran.find((s) => s.scenario === 'latency')?.latencyMs
    expect(latency?.p50).toBeGreaterThan(0)
    expect(latency?.p99).toBeGreaterThanOrEqual(latency?.p50 ?? Infinity)
    expect(ran.find((s) => s.scenario === 'rtt')?.rttMs?.p50).toBeGreaterThan(0)
    const unary = ran.find((s) => s.scenario === 'rpc-unary')
    expect(unary?.received).toBe(unary?.expected)
    expect(unary?.rttMs?.p50).toBeGreaterThan(0)
  }
  // The paced runs that pair the two clients, one each way, and the split they give.
  for (const [system, receiver] of [
    ['slim-node', 'rust'],
    ['rust', 'slim-node'],
  ] as const) {
    const paired = summaries.find((s) => s.scenario === 'latency' && s.system === system && s.receiver === receiver)
    expect(paired?.status, `${system} → ${receiver}: ${paired?.error ?? ''}`).toBe('ok')
    expect(paired?.latencyMs?.p50).toBeGreaterThan(0)
  }
  const report = readFileSync(join(out, 'results.md'), 'utf8')
  expect(report).toMatch(/\| 1→1 at 1000 msg\/s, 64 B, MLS off \| pure Rust → slim-node \| ok \|/)
  expect(report).toMatch(/slim-node's p50 is -?\d+ µs above the Rust client's: -?\d+ µs when only the publisher/)
  expect(report).toContain('## Targets')
  expect(report).toMatch(/\| 1→2, 64 B, MLS on \| slim-node \| ok \|/)
  expect(report).toMatch(/## slimrpc unary round trip\n\n.*\n.*\n\| slimrpc unary, 64 B, MLS on \| slim-node \| ok \|/)
  const svg = readFileSync(join(out, 'chart.svg'), 'utf8')
  expect(svg.match(/<rect [^>]*fill="#2f6fdf"/g)?.length).toBeGreaterThanOrEqual(2)
}, 300_000)

test('--reps runs each configuration again with the systems taking turns, and reports medians with their spread', () => {
  const out = mkdtempSync(join(tmpdir(), 'slim-node-bench-'))
  const args = ['--plan', 'smoke', '--systems', 'slim-node,rust', '--scenarios', 'p2p', '--profile', 'dev']
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args, '--reps', '3', '--out', out], {
    encoding: 'utf8',
    timeout: 240_000,
  })
  expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0)
  const { summaries, reps } = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
    summaries: Summary[]
    reps: number
  }
  expect(reps).toBe(3)
  expect(summaries.map((s) => `${s.system}#${s.rep}`)).toEqual([
    'slim-node#0',
    'rust#0',
    'slim-node#1',
    'rust#1',
    'slim-node#2',
    'rust#2',
  ])
  const ratios = [0, 1, 2].map((rep) => {
    const of = (system: string) => summaries.find((s) => s.system === system && s.rep === rep)?.perSubscriber ?? 0
    return of('slim-node') / of('rust')
  })
  const median = [...ratios].sort((a, b) => a - b)[1] as number
  const report = readFileSync(join(out, 'results.md'), 'utf8')
  const row = report.split('\n').find((line) => line.startsWith('| point-to-point, 64 B, MLS off: msg/s'))
  expect(row?.split('|').map((cell) => cell.trim())[2]).toBe(median.toFixed(2))
  expect(row).toContain(`${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`)
  expect(run.stdout).toContain('over the reps')
  expect(report).toContain('| slim-node #3 |')
}, 300_000)
