// A benchmark process: JSON-line events from stdout, commands to stdin, and its CPU
// time and memory read from /proc, so every system is measured the same way.
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'

export type BenchEvent = { event: string } & Record<string, unknown>

/** Linux's USER_HZ: /proc reports CPU time in these ticks. */
const TICKS_PER_SECOND = 100
const KEPT_STDERR_LINES = 40

export interface Launch {
  command: string
  args: string[]
  env?: NodeJS.ProcessEnv
}

export class BenchProcess {
  readonly #child: ChildProcessByStdio<Writable, Readable, Readable>
  readonly events: BenchEvent[] = []
  readonly #stderr: string[] = []
  readonly #waiters = new Set<() => void>()
  readonly exited: Promise<number | null>
  /** The latest `progress` value and when it last changed (performance.now()). */
  progress = 0
  progressAt = performance.now()

  readonly label: string

  constructor(label: string, launch: Launch) {
    this.label = label
    this.#child = spawn(launch.command, launch.args, {
      env: { ...process.env, ...launch.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.exited = new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)))
    this.#child.stdin.on('error', () => {})
    createInterface({ input: this.#child.stdout }).on('line', (line) => this.#onLine(line))
    createInterface({ input: this.#child.stderr }).on('line', (line) => {
      this.#stderr.push(line)
      if (this.#stderr.length > KEPT_STDERR_LINES) this.#stderr.shift()
    })
    void this.exited.then(() => this.#wake())
  }

  get pid(): number {
    return this.#child.pid ?? -1
  }

  #onLine(line: string): void {
    let event: BenchEvent
    try {
      event = JSON.parse(line) as BenchEvent
    } catch {
      this.#stderr.push(`stdout: ${line}`)
      return
    }
    if (event.event === 'progress') {
      const value = Number(event.sent ?? event.received ?? 0)
      if (value !== this.progress) this.progressAt = performance.now()
      this.progress = value
    }
    this.events.push(event)
    this.#wake()
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter()
  }

  find(name: string): BenchEvent | undefined {
    return this.events.find((e) => e.event === name)
  }

  /** Resolves with the first `name` event; rejects on an `error` event, exit or timeout. */
  waitFor(name: string, timeoutMs: number): Promise<BenchEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(), timeoutMs)
      const settle = (): void => {
        const found = this.find(name)
        const error = this.find('error')
        const exited = this.#child.exitCode !== null || this.#child.signalCode !== null
        if (!found && !error && !exited && performance.now() < deadline) return
        clearTimeout(timer)
        this.#waiters.delete(settle)
        if (found) resolve(found)
        else reject(new Error(`${this.label}: ${this.#why(name, error, timeoutMs)}`))
      }
      const deadline = performance.now() + timeoutMs
      this.#waiters.add(settle)
      settle()
    })
  }

  #why(name: string, error: BenchEvent | undefined, timeoutMs: number): string {
    const tail = this.#stderr.slice(-8).join('\n  ')
    if (error) return `${String(error.message)}${tail ? `\n  ${tail}` : ''}`
    const state =
      this.#child.exitCode !== null ? `exited with ${this.#child.exitCode}` : `no ${name} within ${timeoutMs} ms`
    return `${state}${tail ? `\n  ${tail}` : ''}`
  }

  send(command: string): void {
    if (this.#child.stdin.writable) this.#child.stdin.write(`${command}\n`)
  }

  /** user+system CPU seconds so far (0 once the process is gone). */
  cpuSeconds(): number {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
    } catch {
      return 0
    }
  }

  rssBytes(): number {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8')
      const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1]
      return kb ? Number(kb) * 1024 : 0
    } catch {
      return 0
    }
  }

  /** Asks the process to finish (stop, end of input), then kills it after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.send('stop')
    this.#child.stdin.end()
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }

  kill(): void {
    this.#child.kill('SIGKILL')
  }
}
