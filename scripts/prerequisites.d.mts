export interface HostFacts {
  platform: NodeJS.Platform
  isRoot: boolean
  commands: Set<string>
  libclangFound: boolean
  wheelReady: boolean
  hasVenv: boolean
}
export interface SetupPlan {
  apt: string[]
  wheel: boolean
  useWheel: boolean
  missing: string[]
}
export type Need = 'cargo' | 'cc' | 'libclang' | 'openssl' | 'script' | 'python3-venv'
export const NEEDS: { build: Need[]; test: Need[] }
export const cacheDir: string
export const wheelLibclangDir: string
export function planSetup(host: HostFacts, needs: readonly Need[]): SetupPlan
export function probeHost(env?: NodeJS.ProcessEnv): HostFacts
export function prepareHost(kind: 'build' | 'test', env?: NodeJS.ProcessEnv): NodeJS.ProcessEnv
