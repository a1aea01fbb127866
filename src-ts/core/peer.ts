// How soon a point-to-point session gives up a silent peer (session/peer.rs).
import { callSync } from './errors.js'
import { addon } from './native.js'

/**
 * Sets how soon a point-to-point session (slimrpc's and MCP's included) ends once its
 * peer's process is gone. SLIM lists a silent peer offline only after three missed 10 s
 * heartbeats and keeps the session open, so a `getMessage`, an RPC or an MCP call waiting
 * on a dead peer waited 30 s or until its own timeout. slim-node's point-to-point sessions
 * heartbeat every eighth of the peer timeout and say so to their peer; once a slim-node
 * peer stayed silent for the timeout, the session ends with `SESSION_CLOSED` ("its peer …
 * went offline") and what waits on it fails.
 *
 * A peer that is only slow is not taken for dead: heartbeats come from the addon's own
 * threads, not from JavaScript, so a busy event loop does not stop them, and while this
 * app is cut off from its node its peers' silence does not count. Peers built on other
 * SLIM SDKs do not say their interval and are still judged by SLIM's 30 s. Each
 * point-to-point session then sends about three small heartbeats a second each way; 0
 * turns that off. Process-wide; applies to the sessions created or joined after the call.
 *
 * @param ms - Default 3000, past the 2 s a peer takes at most to reconnect after its node
 * restarted with the default `reconnect` settings; from 500 to 30 000; 0 turns it off
 * (SLIM's behaviour).
 * @throws {SlimError} `INVALID_ARGUMENT` for a value that is not 0 or from 500 to 30 000.
 * @example
 * ```ts
 * import { setPeerTimeout } from 'slim-node'
 *
 * setPeerTimeout(10_000) // peers on a flaky network: give them 10 s before giving up
 * ```
 * @group Sessions
 */
export function setPeerTimeout(ms: number): void {
  callSync(() => addon.setPeerTimeout(ms))
}
