//! Logging and OpenTelemetry. Quiet by default: logs only when `RUST_LOG` is set, spans
//! and upstream's metrics (connections, messages by type, processing errors) exported over
//! OTLP gRPC only when asked. The subscriber is process-wide, so it is
//! installed once, at the first app, node or telemetry request.

use std::sync::Mutex;

use napi_derive::napi;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::MetricsLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::errors::{Code, Error, Result};

pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4317";

/// OpenTelemetry export settings.
///
/// @example
/// ```ts
/// await enableOpentelemetry({ endpoint: 'http://127.0.0.1:4317', serviceName: 'chat-moderator' })
/// ```
/// @group Telemetry
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// OTLP gRPC collector, default `http://localhost:4317`.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans and metrics, default `slim-node`.
    pub service_name: Option<String>,
    /// How often metrics are exported, in milliseconds (default 30 000).
    pub metrics_interval: Option<f64>,
}

const DEFAULT_METRICS_INTERVAL_MS: u64 = 30_000;

struct Installed {
    /// The OTLP endpoint spans go to, when exporting.
    endpoint: Option<String>,
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

static STATE: Mutex<Option<Installed>> = Mutex::new(None);

/// Installs the subscriber if nothing has yet; `telemetry` adds the OTLP exporter.
/// Must run inside the tokio runtime when exporting (the exporter's channel lives there).
pub fn install(telemetry: Option<&TelemetryOptions>) -> Result<()> {
    let mut state = STATE
        .lock()
        .map_err(|_| Error::new(Code::Internal, "tracing state poisoned"))?;
    let endpoint = telemetry.map(|t| {
        t.endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.into())
    });
    if let Some(installed) = state.as_ref() {
        return match (&endpoint, &installed.endpoint) {
            (None, _) => Ok(()),
            (Some(wanted), Some(current)) if wanted == current => Ok(()),
            (Some(_), _) => Err(Error::invalid_argument(
                "OpenTelemetry is process-wide: enable it once, before creating apps or nodes",
            )),
        };
    }
    if endpoint.is_none() && std::env::var_os("RUST_LOG").is_none() {
        // Stay uninstalled, so telemetry can still be enabled later.
        return Ok(());
    }
    let logs = std::env::var("RUST_LOG")
        .ok()
        .map(|directives| tracing_subscriber::fmt::layer().with_filter(EnvFilter::new(directives)));
    let (tracer, meter) = match (&endpoint, telemetry) {
        (Some(endpoint), Some(options)) => (
            Some(tracer_provider(endpoint, options)?),
            Some(meter_provider(endpoint, options)?),
        ),
        _ => (None, None),
    };
    let spans = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("slim-node"))
            .with_filter(EnvFilter::new("info"))
    });
    // Upstream counts with `counter.*` / `monotonic_counter.*` fields on info events.
    let metrics = meter
        .as_ref()
        .map(|provider| MetricsLayer::new(provider.clone()).with_filter(EnvFilter::new("info")));
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(metrics)
        .try_init()
        .map_err(|e| Error::new(Code::Internal, format!("cannot install tracing: {e}")))?;
    *state = Some(Installed {
        endpoint,
        tracer,
        meter,
    });
    Ok(())
}

fn resource(options: &TelemetryOptions) -> Resource {
    let service = options
        .service_name
        .clone()
        .unwrap_or_else(|| "slim-node".into());
    Resource::builder().with_service_name(service).build()
}

fn bad_endpoint(endpoint: &str) -> impl Fn(opentelemetry_otlp::ExporterBuildError) -> Error {
    move |e| Error::invalid_argument(format!("OpenTelemetry endpoint {endpoint:?}: {e}"))
}

fn tracer_provider(endpoint: &str, options: &TelemetryOptions) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(bad_endpoint(endpoint))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(options))
        .with_batch_exporter(exporter)
        .build())
}

fn meter_provider(endpoint: &str, options: &TelemetryOptions) -> Result<SdkMeterProvider> {
    let interval = crate::runtime::millis(options.metrics_interval, "metricsInterval")?.unwrap_or(
        std::time::Duration::from_millis(DEFAULT_METRICS_INTERVAL_MS),
    );
    if interval.is_zero() {
        return Err(Error::invalid_argument("metricsInterval must be above 0"));
    }
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(bad_endpoint(endpoint))?;
    Ok(SdkMeterProvider::builder()
        .with_resource(resource(options))
        .with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(interval)
                .build(),
        )
        .build())
}

/// Sends the spans and metrics recorded so far; what is still buffered at exit is lost.
pub async fn flush() -> Result<()> {
    let providers = STATE.lock().ok().and_then(|state| {
        state
            .as_ref()
            .map(|installed| (installed.tracer.clone(), installed.meter.clone()))
    });
    let Some((tracer, meter)) = providers else {
        return Ok(());
    };
    // The exporters block on their own runtime handles; keep them off the workers.
    tokio::task::spawn_blocking(move || {
        let failed = |e| Error::new(Code::Internal, format!("telemetry flush failed: {e}"));
        if let Some(tracer) = tracer {
            tracer.force_flush().map_err(failed)?;
        }
        if let Some(meter) = meter {
            meter.force_flush().map_err(failed)?;
        }
        Ok::<_, Error>(())
    })
    .await
    .map_err(|e| Error::new(Code::Internal, e.to_string()))??;
    Ok(())
}
