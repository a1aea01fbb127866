// nats.js's declarations name the WHATWG encoders as DOM types; Node has the same classes.
import type { TextDecoder as NodeTextDecoder, TextEncoder as NodeTextEncoder } from 'node:util'

declare global {
  interface TextEncoder extends NodeTextEncoder {}
  interface TextDecoder extends NodeTextDecoder {}
}
