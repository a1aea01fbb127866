//! Upstream logging, off unless the user asks for it with `RUST_LOG`.

use std::sync::Mutex;

use slim_tracing::{OtelGuard, TracingConfiguration};

/// Keeps the subscriber's exporters alive for the life of the process.
static GUARD: Mutex<Option<OtelGuard>> = Mutex::new(None);

pub fn init_from_env() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    match TracingConfiguration::default().setup_tracing_subscriber() {
        Ok(guard) => {
            if let Ok(mut slot) = GUARD.lock() {
                *slot = Some(guard);
            }
        }
        Err(err) => eprintln!("slim-node: RUST_LOG is set but logging could not start: {err}"),
    }
}
