// What this package and its SLIM core are, and how they were built.
import type { BuildInfo, Versions } from '../../index.js'
import { addon } from './native.js'

/**
 * The versions of this package and of the upstream SLIM core compiled into its addon.
 *
 * @returns `slimNode`, this package's version, and `slimCore`, the SLIM core's.
 * @example
 * ```ts
 * import { version } from 'slim-node'
 *
 * const { slimNode, slimCore } = version()
 * console.log(`slim-node ${slimNode}, SLIM core ${slimCore}`)
 * ```
 * @group Versions
 */
export function version(): Versions {
  return addon.version()
}

/**
 * How this addon and the SLIM core inside it were built: version, git commit, build date
 * and cargo profile of each (`debug` in a development build, `release` in the packages).
 *
 * @example
 * ```ts
 * import { buildInfo } from 'slim-node'
 *
 * const { slimNode, slimCore } = buildInfo()
 * console.log(`slim-node ${slimNode.version} ${slimNode.gitSha} ${slimNode.profile}, core ${slimCore.version}`)
 * ```
 * @group Versions
 */
export function buildInfo(): BuildInfo {
  return addon.buildInfo()
}
