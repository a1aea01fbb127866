//! Per-call cancellation: the facade links an `AbortSignal` to one of these.

use napi_derive::napi;
use tokio_util::sync::CancellationToken;

/// A one-shot cancellation handle for a pending native call.
#[napi]
#[derive(Default)]
pub struct CancelToken {
    token: CancellationToken,
}

#[napi]
impl CancelToken {
    #[napi(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call that was given this token reject with ABORTED.
    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }

    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl CancelToken {
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// The token of an optional JavaScript-side handle, for moving into a future.
pub fn token_of(cancel: Option<&CancelToken>) -> Option<CancellationToken> {
    cancel.map(CancelToken::token)
}
