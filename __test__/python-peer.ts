// Drives interop/python/peer.py (upstream's slim-bindings from PyPI) as a real process:
// every stdout line it prints is one JSON event.
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { root } from '../scripts/processes.mjs'
import { pythonWithSlim } from '../scripts/python-env.mjs'

export interface PeerEvent {
  event: string
  source?: string
  payload?: string
  payloadType?: string
  metadata?: Record<string, string>
  message?: string
  url?: string
  channel?: string
  channels?: string[]
}

export class PythonPeer {
  readonly events: PeerEvent[] = []
  readonly stderr: string[] = []
  readonly #child: ChildProcess
  readonly #waiters = new Set<() => void>()
  readonly exited: Promise<number | null>

  readonly role: string

  /** `script`: the peer program in interop/python (peer.py, or rpc_peer.py for slimrpc). */
  constructor(role: string, args: string[], script = 'peer.py') {
    this.role = role
    this.#child = spawn(pythonWithSlim(), [join(root, 'interop', 'python', script), role, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.exited = new Promise((resolve) => this.#child.on('exit', (code) => resolve(code)))
    let pending = ''
    this.#child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      // Upstream's logger also writes to stdout; events are the JSON lines.
      for (const line of lines) {
        if (line.startsWith('{')) this.events.push(JSON.parse(line) as PeerEvent)
        else if (line) this.stderr.push(`${line}\n`)
      }
      for (const waiter of this.#waiters) waiter()
    })
    this.#child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk))
    this.#child.on('exit', () => {
      for (const waiter of this.#waiters) waiter()
    })
  }

  /**
   * The first event named `name` (or that `name` accepts); rejects on an `error` event, an
   * exit, or after `timeout` ms.
   */
  waitFor(name: string | ((event: PeerEvent) => boolean), timeout = 30_000): Promise<PeerEvent> {
    const wanted = typeof name === 'string' ? (e: PeerEvent) => e.event === name : name
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.find(wanted)
        const failed = this.events.find((e) => e.event === 'error')
        if (found || failed || this.#child.exitCode !== null) {
          cleanup()
          if (found) resolve(found)
          else
            reject(
              new Error(`${this.role}: no "${typeof name === 'string' ? name : 'matching'}" event: ${this.output()}`),
            )
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(
          new Error(
            `${this.role}: no "${typeof name === 'string' ? name : 'matching'}" event within ${timeout} ms: ${this.output()}`,
          ),
        )
      }, timeout)
      const cleanup = () => {
        clearTimeout(timer)
        this.#waiters.delete(check)
      }
      this.#waiters.add(check)
      check()
    })
  }

  messages(): PeerEvent[] {
    return this.events.filter((e) => e.event === 'message')
  }

  /** The Python process: a test that tracks this peer kills it when it ends. */
  get child(): ChildProcess {
    return this.#child
  }

  /** Sends the peer one command line (the `member` role's `offline`, `rejoin`, …). */
  send(line: string): void {
    this.#child.stdin?.write(`${line}\n`)
  }

  /** Asks the peer to close its session and exit. */
  close(): void {
    this.#child.stdin?.end('close\n')
  }

  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL')
  }

  output(): string {
    return `${JSON.stringify(this.events)}\nstderr: ${this.stderr.join('')}`
  }
}
