// Shared by the moderator and client examples: the Python example's flags, create_local_app,
// and its output format.
import { Command, InvalidArgumentError } from 'commander'
import { type App, createLocalApp, isSlimError, type SlimConnection } from 'slim-node'

/** A development secret that meets SLIM's 32-byte minimum. Never use it in production. */
export const DEV_SHARED_SECRET = 'slim-node-development-secret-0123456789'
export const DEFAULT_SLIM = '{"endpoint":"http://127.0.0.1:46357","tls":{"insecure":true}}'

export interface CommonOptions {
  local: string
  slim: SlimConnection
  enableMls: boolean
  sharedSecret?: string
  jwt?: string
  spireTrustBundle?: string
  audience: string[]
  enableOpentelemetry: boolean
}

/** Collects a repeatable flag. */
export const repeat = (value: string, previous: string[] = []): string[] => [...previous, value]

function slimConfig(text: string): SlimConnection {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new InvalidArgumentError(`expected JSON such as ${DEFAULT_SLIM}`)
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as SlimConnection).endpoint !== 'string') {
    throw new InvalidArgumentError(`expected an object with an "endpoint", such as ${DEFAULT_SLIM}`)
  }
  return parsed as SlimConnection
}

/** The Python example's command line, shared by both roles. */
export function command(name: string, description: string, local: string): Command {
  return new Command(name)
    .description(description)
    .option('--local <name>', 'this app, org/ns/app', local)
    .option('--slim <json>', 'SLIM node to connect to', slimConfig, slimConfig(DEFAULT_SLIM))
    .option('--enable-mls', 'encrypt the group end to end with MLS', false)
    .option('--shared-secret <secret>', 'shared secret identity (at least 32 bytes)')
    .option('--jwt <path>', 'JWT file this app presents')
    .option('--spire-trust-bundle <json>', 'trust domain -> base64 JWKS, to verify peers')
    .option('--audience <aud>', 'accepted JWT audience (repeatable)', repeat, [])
    .option('--enable-opentelemetry', 'export traces and metrics over OTLP to http://localhost:4317', false)
    .showHelpAfterError()
}

const isTerminal = Boolean(process.stdout.isTTY)

/** The Python example's format_message_print: a bold cyan name on a terminal, plain text otherwise. */
export function say(prefix: string, text: string): void {
  console.log(isTerminal ? `\x1b[1;36m${prefix}\x1b[0m ${text}` : `${prefix} ${text}`)
}

/** One line on stderr and exit status 1: what people see when something is wrong. */
export function fail(error: unknown): never {
  const message = isSlimError(error) ? `${error.message} (${error.code})` : String(error)
  console.error(`error: ${message}`)
  process.exit(1)
}

/** create_local_app of the Python example, from the parsed flags. */
export async function connect(options: CommonOptions): Promise<App> {
  const usesJwt = Boolean(options.jwt || options.spireTrustBundle || options.audience.length)
  const app = await createLocalApp({
    local: options.local,
    slim: options.slim,
    enableOpentelemetry: options.enableOpentelemetry,
    ...(usesJwt
      ? { jwt: options.jwt, spireTrustBundle: options.spireTrustBundle, audience: options.audience }
      : { sharedSecret: options.sharedSecret ?? DEV_SHARED_SECRET }),
  })
  say(app.id, 'Created app')
  say(app.id, `Connected to ${options.slim.endpoint}`)
  return app
}

/** Closes `app` and exits 0 on Ctrl+C or SIGTERM. */
export function exitCleanlyOnSignals(app: App): void {
  const stop = () => {
    app.close().finally(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
