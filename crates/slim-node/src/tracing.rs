//! Logging and OpenTelemetry. Quiet by default: logs only when `RUST_LOG` is set, spans
//! exported over OTLP gRPC only when asked. The subscriber is process-wide, so it is
//! installed once, at the first app, node or telemetry request.

use std::sync::Mutex;

use napi_derive::napi;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::errors::{Code, Error, Result};

pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4317";

/// OpenTelemetry export settings.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// OTLP gRPC collector, default `http://localhost:4317`.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans, default `slim-node`.
    pub service_name: Option<String>,
}

struct Installed {
    /// The OTLP endpoint spans go to, when exporting.
    endpoint: Option<String>,
    provider: Option<SdkTracerProvider>,
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
    let provider = match (&endpoint, telemetry) {
        (Some(endpoint), Some(options)) => Some(tracer_provider(endpoint, options)?),
        _ => None,
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("slim-node"))
            .with_filter(EnvFilter::new("info"))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| Error::new(Code::Internal, format!("cannot install tracing: {e}")))?;
    *state = Some(Installed { endpoint, provider });
    Ok(())
}

fn tracer_provider(endpoint: &str, options: &TelemetryOptions) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            Error::invalid_argument(format!("OpenTelemetry endpoint {endpoint:?}: {e}"))
        })?;
    let service = options
        .service_name
        .clone()
        .unwrap_or_else(|| "slim-node".into());
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_batch_exporter(exporter)
        .build())
}

/// Exports spans over OTLP gRPC from now on (and logs per `RUST_LOG`). Call once, first.
#[napi(catch_unwind)]
pub async fn enable_opentelemetry(options: Option<TelemetryOptions>) -> napi::Result<()> {
    Ok(install(Some(&options.unwrap_or_default()))?)
}

/// Sends the spans recorded so far; spans still buffered at exit are otherwise lost.
#[napi(catch_unwind)]
pub async fn flush_telemetry() -> napi::Result<()> {
    let provider = STATE
        .lock()
        .ok()
        .and_then(|state| state.as_ref().and_then(|s| s.provider.clone()));
    if let Some(provider) = provider {
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .map_err(|e| Error::new(Code::Internal, e.to_string()))?
            .map_err(|e| Error::new(Code::Internal, format!("telemetry flush failed: {e}")))?;
    }
    Ok(())
}
