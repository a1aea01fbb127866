//! The one wait of every call that waits. The facade turns a call's `{ timeout, signal }`
//! into a [`Wait`] (the signal cancels it) and passes it last; the call's future runs
//! under its [`Limit`] here, so a timeout, an abort and the owner's close end every wait
//! the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue};
use napi_derive::napi;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::errors::{Code, Error, Result, js};
use crate::runtime::{millis, promise, spawn};

/// How long a native call may wait: a deadline and a cancellation.
#[napi]
pub struct Wait {
    limit: Limit,
}

#[napi]
impl Wait {
    /// A wait that ends `timeout` milliseconds from now (0 to `MAX_TIMEOUT_MS`; none: no
    /// deadline), or when cancelled.
    #[napi(constructor)]
    pub fn new(timeout: Option<f64>) -> js::Result<Self> {
        let timeout = millis(timeout, "timeout")?;
        Ok(Self {
            limit: Limit {
                deadline: timeout.map(|timeout| (Instant::now() + timeout, timeout)),
                abort: Some(CancellationToken::new()),
                id: NEXT_WAIT.fetch_add(1, Ordering::Relaxed),
            },
        })
    }

    /// Ends every call waiting under this one with ABORTED.
    #[napi]
    pub fn cancel(&self) {
        if let Some(abort) = &self.limit.abort {
            abort.cancel();
        }
    }

    /// Whether `cancel` was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.limit
            .abort
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }
}

/// A promise of work that is SLIM's once started (a close, a subscription): it settles
/// when the work does, or when `wait` ends first while the work goes on
/// ([`Limit::detached`]).
pub fn detached_promise<'env, T, F>(
    env: &'env Env,
    wait: Option<&Wait>,
    what: &'static str,
    work: F,
) -> js::Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let limit = limit_of(wait);
    promise(env, async move { limit.detached(work, what).await })
}

/// The limit of an optional [`Wait`], for moving into a future; none waits forever.
pub fn limit_of(wait: Option<&Wait>) -> Limit {
    wait.map(|wait| wait.limit.clone()).unwrap_or_default()
}

/// Numbers the waits JavaScript makes, from 1.
static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);

/// A wait's deadline (with the timeout it came from, for the message) and cancellation.
#[derive(Clone, Default)]
pub struct Limit {
    deadline: Option<(Instant, Duration)>,
    abort: Option<CancellationToken>,
    /// Which JavaScript wait this is (0: the addon's own).
    id: u64,
}

impl Limit {
    /// A limit of `timeout` from now and no cancellation, for the addon's own waits.
    pub fn after(timeout: Duration) -> Self {
        Self {
            deadline: Some((Instant::now() + timeout, timeout)),
            abort: None,
            id: 0,
        }
    }

    /// Whether this wait can end at all (it has a deadline or can be cancelled).
    pub fn bounded(&self) -> bool {
        self.deadline.is_some() || self.abort.is_some()
    }

    /// Resolves when the wait ends: TIMEOUT at the deadline, ABORTED once cancelled;
    /// never for a wait without either.
    pub async fn ended(&self, what: &str) -> Error {
        let deadline = async {
            match self.deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let aborted = async {
            match &self.abort {
                Some(abort) => abort.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = deadline => self.timed_out(what),
            () = aborted => aborted_error(what),
        }
    }

    /// Runs `work` until it completes, the wait ends (TIMEOUT, ABORTED) or `closed`
    /// fires (CLOSED). Ending early drops `work`.
    pub async fn run<T>(
        &self,
        work: impl Future<Output = Result<T>>,
        closed: &CancellationToken,
        what: &str,
    ) -> Result<T> {
        tokio::select! {
            res = work => res,
            err = self.ended(what) => Err(err),
            () = closed.cancelled() => Err(Error::new(Code::Closed, format!("{what} was interrupted: closed"))),
        }
    }

    /// For a call whose answer reaches JavaScript through a callback (a publish's
    /// outcome): `expire` runs if the wait ends before `settled` is cancelled.
    pub fn watch(
        self,
        what: &'static str,
        settled: CancellationToken,
        expire: impl FnOnce(Error) + Send + 'static,
    ) {
        if !self.bounded() {
            return;
        }
        spawn(async move {
            tokio::select! {
                () = settled.cancelled() => {}
                err = self.ended(what) => expire(err),
            }
        });
    }

    /// The wait as something to poll with a waker of one's own (the receiver's), for a
    /// wait that must not cost a task; none for a wait that cannot end.
    pub fn poller(&self) -> Option<Poller> {
        if !self.bounded() {
            return None;
        }
        // The timer is the runtime's: made inside it, from the JavaScript thread too.
        let _runtime = crate::runtime::enter();
        Some(Poller {
            deadline: self
                .deadline
                .map(|(at, _)| Box::pin(tokio::time::sleep_until(at))),
            aborted: self
                .abort
                .clone()
                .map(|abort| Box::pin(abort.cancelled_owned())),
            timeout: self.deadline.map(|(_, timeout)| timeout),
            id: self.id,
        })
    }

    /// Like [`Limit::run`] for work that is SLIM's once started (a close, a subscription
    /// sent): ending early ends only the wait, and the work goes on.
    pub async fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
        what: &str,
    ) -> Result<T> {
        if self.deadline.is_none() && self.abort.is_none() {
            return work.await;
        }
        let task = tokio::spawn(work);
        let joined = async {
            task.await.unwrap_or_else(|err| {
                Err(Error::new(Code::Internal, format!("{what} failed: {err}")))
            })
        };
        self.run(joined, &CancellationToken::new(), what).await
    }

    fn timed_out(&self, what: &str) -> Error {
        timed_out(what, self.deadline.map(|(_, timeout)| timeout))
    }
}

fn timed_out(what: &str, timeout: Option<Duration>) -> Error {
    let ms = timeout.unwrap_or_default().as_millis();
    Error::new(Code::Timeout, format!("{what} timed out after {ms} ms"))
}

fn aborted_error(what: &str) -> Error {
    Error::new(Code::Aborted, format!("{what} was aborted"))
}

/// A [`Limit`] polled by hand: see [`Limit::poller`].
pub struct Poller {
    deadline: Option<Pin<Box<Sleep>>>,
    aborted: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    timeout: Option<Duration>,
    id: u64,
}

impl Poller {
    /// Whether this serves `limit` too: the same signal-only wait, which a receive loop
    /// passes to every receive, so that it is registered once for all of them.
    pub fn serves(&self, limit: &Limit) -> bool {
        self.deadline.is_none() && self.id != 0 && self.id == limit.id
    }

    /// Whether it may stay for the next receive: a wait without a deadline.
    pub fn lasts(&self) -> bool {
        self.deadline.is_none()
    }

    /// Ready with TIMEOUT or ABORTED once the wait ended; registers `cx`'s waker else.
    pub fn poll_ended(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<Error> {
        if let Some(aborted) = &mut self.aborted
            && aborted.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(aborted_error(what));
        }
        if let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(timed_out(what, self.timeout));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> impl Future<Output = Result<()>> {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_limit_ends_with_timeout_abort_or_close() {
        let open = CancellationToken::new();
        let err = Limit::after(Duration::from_millis(5))
            .run(pending(), &open, "recv")
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::Timeout);
        assert_eq!(err.message, "recv timed out after 5 ms");

        let wait = Wait::new(None).unwrap();
        wait.cancel();
        let err = limit_of(Some(&wait))
            .run(pending(), &open, "recv")
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::Aborted);

        let closed = CancellationToken::new();
        closed.cancel();
        let err = Limit::default()
            .run(pending(), &closed, "recv")
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::Closed);
    }

    #[tokio::test]
    async fn one_deadline_covers_every_step_of_a_call() {
        let limit = Limit::after(Duration::from_millis(40));
        let open = CancellationToken::new();
        let step = || async {
            tokio::time::sleep(Duration::from_millis(25)).await;
            Ok(())
        };
        limit.run(step(), &open, "step").await.unwrap();
        let err = limit.run(step(), &open, "step").await.unwrap_err();
        assert_eq!(err.code, Code::Timeout);
    }

    #[tokio::test]
    async fn detached_work_goes_on_after_its_wait_ends() {
        let (done, finished) = tokio::sync::oneshot::channel();
        let work = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = done.send(());
            Ok(())
        };
        let err = Limit::after(Duration::from_millis(1))
            .detached(work, "close")
            .await
            .unwrap_err();
        assert_eq!(err.code, Code::Timeout);
        finished
            .await
            .expect("the work finished after the wait ended");
    }

    #[test]
    fn the_timeout_range_is_checked_once_here() {
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            assert!(Wait::new(Some(bad)).is_err());
        }
        assert!(Wait::new(Some(f64::from(crate::runtime::MAX_TIMEOUT_MS))).is_ok());
    }
}
