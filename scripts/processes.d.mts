import type { ChildProcess } from 'node:child_process'

export declare const root: string
export declare function typescriptFlags(): string[]

export declare class ExampleProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly lines: string[]
  readonly errors: string[]
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  constructor(
    name: string,
    script: string,
    args?: string[],
    options?: {
      stdin?: 'pipe' | 'ignore'
      env?: Record<string, string>
      echo?: boolean
      node?: string
      /** Directory of `script` (default: the repository's examples/). */
      dir?: string
      cwd?: string
    },
  )
  waitFor(pattern: RegExp | string, timeout?: number, from?: number): Promise<string>
  write(line: string): void
  end(): void
  signal(name: NodeJS.Signals): void
  exitCode(timeout?: number): Promise<number | null>
  output(): string
  stop(): void
}

export declare function startExampleServer(options?: {
  echo?: boolean
  node?: string
  dir?: string
  cwd?: string
  script?: string
}): Promise<{ server: ExampleProcess; url: string; slim: string }>
export declare function isBuilt(): boolean
