// Membership changes as events: upstream keeps a participant list but announces no
// change, so while someone listens the list is read every ROSTER_POLL_MS and compared.
// The first read reports everyone already listed as joined: a listener sees the whole
// membership, however late it started.
import type { Participant } from '../../index.js'

/** How often the list is read while a `participant` listener exists. */
export const ROSTER_POLL_MS = 250

/**
 * A change in a session's participant list, as a `participant` event reports it.
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

/** Reads the list while `active()` holds and reports what changed since the last read. */
export class RosterWatch {
  readonly #read: () => Promise<Participant[]>
  readonly #report: (change: ParticipantChange) => void
  #known = new Map<string, Participant>()
  #timer: NodeJS.Timeout | undefined

  constructor(read: () => Promise<Participant[]>, report: (change: ParticipantChange) => void) {
    this.#read = read
    this.#report = report
  }

  start(): void {
    if (this.#timer) return
    // Never keeps Node running by itself, as an idle session does not.
    this.#timer = setInterval(() => void this.#poll(), ROSTER_POLL_MS).unref()
    void this.#poll()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#known = new Map()
  }

  async #poll(): Promise<void> {
    let list: Participant[]
    try {
      list = await this.#read()
    } catch {
      // The session ended: nothing more will change.
      this.stop()
      return
    }
    if (!this.#timer) return
    const now = new Map(list.map((member) => [member.name, member]))
    const before = this.#known
    this.#known = now
    for (const [name, member] of now) {
      const was = before.get(name)
      if (!was) this.#report({ ...member, change: 'joined' })
      else if (was.online !== member.online) this.#report({ ...member, change: member.online ? 'online' : 'offline' })
    }
    for (const [name, member] of before) {
      if (!now.has(name)) this.#report({ ...member, online: false, change: 'left' })
    }
  }
}
