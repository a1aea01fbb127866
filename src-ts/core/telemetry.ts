// OpenTelemetry export of the addon's spans and metrics (tracing.rs).
import type { TelemetryOptions } from '../../index.js'
import { call } from './errors.js'
import { plainOptions } from './input.js'
import { addon } from './native.js'

/**
 * Exports spans and metrics over OTLP gRPC (default `http://localhost:4317`).
 * Process-wide: call it once, before creating apps or nodes; calling it again with the
 * same endpoint does nothing. Logs stay off unless `RUST_LOG` is set.
 *
 * @param options - The collector, service name and metrics interval; defaults for each.
 * @throws {SlimError} `INVALID_ARGUMENT` when the options are malformed, or telemetry is
 * already set up differently: enabled with another endpoint, or logging to `RUST_LOG`
 * started without it because an app or node was created first.
 * @example
 * ```ts
 * import { enableOpentelemetry, flushTelemetry } from 'slim-node'
 *
 * await enableOpentelemetry({ endpoint: 'http://collector:4317', serviceName: 'chat-bot' })
 * // ... create apps, exchange messages ...
 * await flushTelemetry()
 * ```
 * @group Telemetry
 */
export function enableOpentelemetry(options: TelemetryOptions = {}): Promise<void> {
  return call(async () => addon.enableOpentelemetry(plainOptions(options, 'enableOpentelemetry options')))
}

/**
 * Sends the spans and metrics recorded so far; call it before exiting, since what is
 * still buffered at exit is lost. Does nothing when telemetry is not enabled.
 *
 * @throws {SlimError} `INTERNAL` when the exporter fails to flush.
 * @example
 * ```ts
 * import { flushTelemetry } from 'slim-node'
 *
 * await app.close()
 * await flushTelemetry() // the last spans, before the program exits
 * ```
 * @group Telemetry
 */
export function flushTelemetry(): Promise<void> {
  return call(() => addon.flushTelemetry())
}
