// Membership changes as events: the addon reads the participant list while someone
// listens and reports what changed on the session's event stream (session/roster.rs).
import type { Participant } from '../../index.js'

/**
 * A change in a session's participant list, as a `participant` event reports it. The
 * first report after a listener is added lists everyone already there as joined.
 *
 * @example
 * ```ts
 * chat.on('participant', ({ name, change }) => console.log(`${name} ${change}`))
 * ```
 * @group Sessions
 */
export interface ParticipantChange extends Participant {
  /** What changed: the member joined or left the list, or went offline or online. */
  change: 'joined' | 'left' | 'offline' | 'online'
}
