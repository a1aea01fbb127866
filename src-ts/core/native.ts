// The addon, through the napi-generated loader. When this host's prebuilt binary is
// missing, the error names the package to install instead of only the loader's chain.
import { createRequire } from 'node:module'
import type * as Addon from '../../index.js'

const PLATFORM_PACKAGE = /Cannot find module '(slim-node-[\w-]+)'/g

function missingBinary(error: unknown): Error {
  const messages: string[] = []
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) messages.push(cause.message)
  // The loader also tries a WebAssembly fallback package; the native one is what to install.
  const packages = messages.flatMap((message) => [...message.matchAll(PLATFORM_PACKAGE)].map((match) => match[1]))
  const missing = packages.find((name) => !name?.includes('wasm32')) ?? packages[0]
  const host = `${process.platform}-${process.arch}`
  const message = missing
    ? `slim-node has no native binary for ${host}: the package "${missing}" is not installed. ` +
      `Install it (npm install ${missing}), or reinstall slim-node without --omit=optional.`
    : `slim-node has no native binary for ${host}: ${messages.join('; ')}`
  return Object.assign(new Error(message, { cause: error }), { code: 'ERR_SLIM_NODE_BINARY' })
}

function load(): typeof Addon {
  try {
    return createRequire(import.meta.url)('../../index.js') as typeof Addon
  } catch (error) {
    throw missingBinary(error)
  }
}

export const addon = load()
