// The MCP SDK's declarations name `HeadersInit`, a DOM type with no global in Node's
// types; Node's fetch (undici) has the same one.
import type { HeadersInit as UndiciHeadersInit } from 'undici-types'

declare global {
  type HeadersInit = UndiciHeadersInit
}
