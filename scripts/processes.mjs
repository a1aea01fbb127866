// Runs the TypeScript examples as real processes: used by `npm run demo` and the tests.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stripVTControlCharacters } from 'node:util'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Node flags to run a .ts file: none where Node strips types itself (>= 22.18), tsx elsewhere. */
export function typescriptFlags() {
  return process.features.typescript ? [] : ['--import', 'tsx']
}

/** An example started with `node examples/<script>.ts`, its output split into lines. */
export class ExampleProcess {
  /** @type {string[]} */ lines = []
  /** @type {string[]} */ errors = []
  #waiters = new Set()

  constructor(
    name,
    script,
    args = [],
    { stdin = 'pipe', env = {}, echo = false, node, dir = join(root, 'examples'), cwd = root } = {},
  ) {
    this.name = name
    this.echo = echo
    // A given Node binary (>= 22.18) strips types itself, and .js needs no help; ours may need tsx.
    const flags = node || script.endsWith('.js') ? [] : typescriptFlags()
    this.child = spawn(node ?? process.execPath, [...flags, join(dir, script), ...args], {
      cwd,
      stdio: [stdin, 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })))
    this.#collect(this.child.stdout, this.lines)
    this.#collect(this.child.stderr, this.errors)
  }

  #collect(stream, into) {
    let pending = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => {
      pending += chunk
      const parts = pending.split('\n')
      pending = parts.pop() ?? ''
      for (const part of parts) {
        const line = stripVTControlCharacters(part)
        into.push(line)
        if (this.echo) console.log(`${`[${this.name}]`.padEnd(22)} ${line}`)
      }
      for (const waiter of this.#waiters) waiter()
    })
  }

  /**
   * Resolves with the first output line matching `pattern`, from line `from` on (0: all it
   * printed so far); rejects after `timeout` ms.
   */
  waitFor(pattern, timeout = 15_000, from = 0) {
    const matches = (line) => (typeof pattern === 'string' ? line.includes(pattern) : pattern.test(line))
    return new Promise((resolve, reject) => {
      const check = () => {
        let line
        for (let i = from; i < this.lines.length && line === undefined; i++) {
          if (matches(this.lines[i])) line = this.lines[i]
        }
        if (line === undefined) return false
        cleanup()
        resolve(line)
        return true
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`${this.name}: no line matching ${pattern} within ${timeout} ms; output:\n${this.output()}`))
      }, timeout)
      const cleanup = () => {
        clearTimeout(timer)
        this.#waiters.delete(check)
      }
      if (!check()) this.#waiters.add(check)
    })
  }

  write(line) {
    this.child.stdin.write(`${line}\n`)
  }

  end() {
    this.child.stdin.end()
  }

  signal(name) {
    this.child.kill(name)
  }

  /** The exit code, or a rejection if the process is still running after `timeout` ms. */
  async exitCode(timeout = 10_000) {
    let timer
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} still running after ${timeout} ms`)), timeout)
    })
    try {
      const { code } = await Promise.race([this.exited, expired])
      return code
    } finally {
      clearTimeout(timer)
    }
  }

  output() {
    return [...this.lines, ...this.errors.map((line) => `stderr: ${line}`)].join('\n')
  }

  stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }
}

/** Starts the server example (examples/server.ts by default) on a free port; resolves with it and its URL. */
export async function startExampleServer({ echo = false, node, dir, cwd, script = 'server.ts' } = {}) {
  const server = new ExampleProcess('server', script, ['--endpoint', '127.0.0.1:0'], {
    stdin: 'ignore',
    echo,
    node,
    dir,
    cwd,
  })
  const line = await server.waitFor('SLIM node listening on')
  const url = line.slice(line.indexOf('http://'))
  return { server, url, slim: JSON.stringify({ endpoint: url, tls: { insecure: true } }) }
}

/** Whether the native addon and the compiled facade are present. */
export function isBuilt() {
  const addon = readdirSync(root).some((file) => file.startsWith('slim-node.') && file.endsWith('.node'))
  return addon && existsSync(join(root, 'dist', 'index.js'))
}
