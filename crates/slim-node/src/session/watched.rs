//! Publishes whose callers wait with a timeout or a signal. A publish's outcome reaches
//! JavaScript through the outcome callback, not a promise of its own, so its wait is
//! watched here: when the wait ends before the outcome, the publish is reported failed
//! (TIMEOUT or ABORTED) at once. The message itself goes on, being SLIM's already; its
//! real outcome, reported later, finds nobody waiting.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::session::outcomes::PublishOutcomes;
use crate::wait::Limit;

/// The watched publishes of one session, by ticket.
#[derive(Default)]
pub struct Watched {
    settled: Mutex<HashMap<u32, CancellationToken>>,
}

impl Watched {
    /// Watches `ticket`'s wait; called before its request is queued, so that its
    /// outcome cannot be reported first.
    pub fn watch(
        self: &Arc<Self>,
        ticket: u32,
        limit: Limit,
        outcomes: Weak<Delivery<PublishOutcomes>>,
    ) {
        if !limit.bounded() {
            return;
        }
        let settled = CancellationToken::new();
        self.settled.lock().insert(ticket, settled.clone());
        let watched = Arc::downgrade(self);
        limit.watch("publish", settled, move |why| {
            if let Some(watched) = watched.upgrade() {
                watched.settled.lock().remove(&ticket);
            }
            if let Some(outcomes) = outcomes.upgrade() {
                outcomes.send(PublishOutcomes::failed(ticket, why));
            }
        });
    }

    /// The publishes of `batch` are settled: their watches end.
    pub fn settle(&self, batch: &PublishOutcomes) {
        let mut settled = self.settled.lock();
        if settled.is_empty() {
            return;
        }
        for ticket in batch.tickets() {
            if let Some(watch) = settled.remove(&ticket) {
                watch.cancel();
            }
        }
    }

    /// The publisher stopped: no outcome is left to report, so no watch is left either.
    pub fn settle_all(&self) {
        for (_, watch) in self.settled.lock().drain() {
            watch.cancel();
        }
    }

    /// Ends the watch of a publish that was never queued.
    pub fn forget(&self, ticket: u32) {
        if let Some(watch) = self.settled.lock().remove(&ticket) {
            watch.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_settled_publish_is_no_longer_watched() {
        let watched = Arc::new(Watched::default());
        watched.watch(4, Limit::after(Duration::from_secs(60)), Weak::new());
        watched.watch(5, Limit::default(), Weak::new());
        assert_eq!(
            watched.settled.lock().len(),
            1,
            "a wait that cannot end is not watched"
        );
        watched.settle(&PublishOutcomes::failed(
            4,
            crate::errors::Error::session_closed(1),
        ));
        assert!(watched.settled.lock().is_empty());
    }

    #[tokio::test]
    async fn a_wait_that_ends_first_forgets_its_ticket() {
        let watched = Arc::new(Watched::default());
        watched.watch(9, Limit::after(Duration::from_millis(5)), Weak::new());
        for _ in 0..200 {
            if watched.settled.lock().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the expired watch stayed");
    }
}
