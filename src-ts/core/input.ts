/**
 * Arguments from callers, checked and copied at the edge before they reach the addon.
 * The addon checks values; what it cannot do safely is read a caller's object whose
 * getters or proxy traps throw, or tell a wrong kind of `signal` from a right one.
 */
import { SlimError } from './errors.js'

/** Nesting deeper than any option object of this API. */
const MAX_DEPTH = 16

export function invalid(what: string, why: string, cause?: unknown): SlimError {
  return new SlimError('INVALID_ARGUMENT', `${what} ${why}`, cause === undefined ? undefined : { cause })
}

/** A short description of a wrong value, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'object') {
    try {
      if (value instanceof Error) return value.message
      return Array.isArray(value) ? 'an array' : 'an object'
    } catch {
      return 'an object that cannot be read'
    }
  }
  return typeof value === 'symbol' ? 'a symbol' : `${typeof value} ${String(value).slice(0, 40)}`
}

/** More values than any option object of this API holds (shared sub-objects count each time). */
const MAX_VALUES = 10_000

interface Budget {
  what: string
  left: number
}

function copy(value: unknown, budget: Budget, depth: number): unknown {
  if (--budget.left < 0) throw invalid(budget.what, `holds more than ${MAX_VALUES} values`)
  if (typeof value !== 'object' || value === null) return value
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof AbortSignal) return value
  if (depth >= MAX_DEPTH) throw invalid(budget.what, `is nested more than ${MAX_DEPTH} levels deep`)
  if (Array.isArray(value)) return value.map((item) => copy(item, budget, depth + 1))
  const plain: Record<string, unknown> = {}
  for (const key of Object.keys(value)) plain[key] = copy((value as Record<string, unknown>)[key], budget, depth + 1)
  return plain
}

/**
 * A plain copy of an options object (own enumerable fields, nested objects and arrays
 * copied, bytes and signals kept), read once here so that no getter runs inside the addon.
 */
export function plainOptions<T>(value: T, what: string): T {
  if (value === undefined || value === null) return value
  if (typeof value !== 'object') throw invalid(what, `must be an object, got ${describe(value)}`)
  try {
    // Inside the try: even Array.isArray throws on a revoked proxy.
    if (Array.isArray(value)) throw invalid(what, 'must be an object, got an array')
    return copy(value, { what, left: MAX_VALUES }, 0) as T
  } catch (error) {
    if (error instanceof SlimError) throw error
    throw invalid(what, `could not be read: ${describe(error)}`, error)
  }
}

/** A string argument, checked here: napi's own message for a wrong type walks the value. */
export function text(value: string, what: string): string {
  if (typeof value !== 'string') throw invalid(what, `must be a string, got ${describe(value)}`)
  return value
}

/** What can be published: bytes or a string. */
export function bytesOrText<T>(value: T, what: string): T {
  if (typeof value !== 'string' && !ArrayBuffer.isView(value)) {
    throw invalid(what, `must be a Uint8Array or a string, got ${describe(value)}`)
  }
  return value
}

/** The messages of one `publishMany`, read once into an array, each one checked. */
export function payloadList<T>(values: Iterable<T>, what: string): T[] {
  const iterable = typeof values === 'object' && values !== null && Symbol.iterator in values
  if (!iterable) throw invalid(what, `must be an iterable of Uint8Arrays or strings, got ${describe(values)}`)
  const list: T[] = []
  try {
    for (const value of values) list.push(bytesOrText(value, `${what}[${list.length}]`))
  } catch (error) {
    if (error instanceof SlimError) throw error
    throw invalid(what, `could not be read: ${describe(error)}`, error)
  }
  return list
}
