// SLIM names, `org/ns/app[/id]`, parsed and formatted by the addon (name.rs).
import type { NameParts } from '../../index.js'
import { callSync } from './errors.js'
import { plainOptions, text } from './input.js'
import { addon } from './native.js'

/**
 * Splits a SLIM name, `org/ns/app` or `org/ns/app/<uuid>`, into its parts.
 *
 * @param name - The name to parse.
 * @returns The name's organisation, namespace and app, and its instance id when it has one.
 * @throws {SlimError} `INVALID_NAME` when the name is malformed, `INVALID_ARGUMENT` when it
 * is not a string.
 * @example
 * ```ts
 * import { parseName } from 'slim-node'
 *
 * const { org, namespace, app } = parseName('agntcy/ns/alice') // 'agntcy', 'ns', 'alice'
 * ```
 * @group Names
 */
export function parseName(name: string): NameParts {
  return callSync(() => addon.parseName(text(name, 'parseName text')))
}

/**
 * Formats name parts as `org/ns/app`, or `org/ns/app/<uuid>` when an id is given:
 * the inverse of {@link parseName}.
 *
 * @param parts - The organisation, namespace and app, and optionally the instance id.
 * @returns The formatted name.
 * @throws {SlimError} `INVALID_NAME` when a part is empty or malformed,
 * `INVALID_ARGUMENT` when `parts` is not an object.
 * @example
 * ```ts
 * import { formatName } from 'slim-node'
 *
 * formatName({ org: 'agntcy', namespace: 'ns', app: 'alice' }) // 'agntcy/ns/alice'
 * ```
 * @group Names
 */
export function formatName(parts: NameParts): string {
  return callSync(() => addon.formatName(plainOptions(parts, 'formatName parts')))
}
