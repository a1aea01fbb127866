//! Publishes whose callers wait with a timeout or a signal. A publish's outcome reaches
//! JavaScript through the session's event callback, not a promise of its own, so its
//! wait is watched here: when the wait ends before the outcome, the publish is reported
//! failed (TIMEOUT or ABORTED) at once. The message itself goes on, being SLIM's
//! already; its real outcome, reported later, finds nobody waiting.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::session::outcomes::{OutcomeSink, PublishOutcomes};
use crate::wait::Limit;

/// The watched publishes of one session, by ticket.
#[derive(Default)]
pub struct Watched {
    tickets: Mutex<Tickets>,
}

#[derive(Default)]
struct Tickets {
    /// Publishes whose wait may still end first: cancelled when their outcome comes.
    watched: HashMap<u32, CancellationToken>,
    /// Publishes reported when their wait ended, whose outcome is still to come.
    expired: HashSet<u32>,
}

impl Watched {
    /// Watches `ticket`'s wait; called before its request is queued, so that its
    /// outcome cannot be reported first.
    pub fn watch(self: &Arc<Self>, ticket: u32, limit: Limit, sink: Weak<dyn OutcomeSink>) {
        if !limit.bounded() {
            return;
        }
        let settled = CancellationToken::new();
        self.tickets.lock().watched.insert(ticket, settled.clone());
        let watched = Arc::downgrade(self);
        limit.watch("publish", settled, move |why| {
            if let Some(watched) = watched.upgrade() {
                let mut tickets = watched.tickets.lock();
                tickets.watched.remove(&ticket);
                tickets.expired.insert(ticket);
            }
            if let Some(sink) = sink.upgrade() {
                sink.report(PublishOutcomes::failed(ticket, why), 1);
            }
        });
    }

    /// The publishes of `batch` are settled: their watches end. Returns how many of them
    /// JavaScript still awaited (not those already reported when their wait ended).
    pub fn settle(&self, batch: &PublishOutcomes) -> usize {
        let mut tickets = self.tickets.lock();
        if tickets.watched.is_empty() && tickets.expired.is_empty() {
            return batch.tickets().count();
        }
        batch
            .tickets()
            .filter(|ticket| {
                if let Some(watch) = tickets.watched.remove(ticket) {
                    watch.cancel();
                }
                !tickets.expired.remove(ticket)
            })
            .count()
    }

    /// The publisher stopped: no outcome is left to report, so no watch is left either.
    pub fn settle_all(&self) {
        let mut tickets = self.tickets.lock();
        for (_, watch) in tickets.watched.drain() {
            watch.cancel();
        }
        tickets.expired.clear();
    }

    /// Ends the watch of a publish that was never queued.
    pub fn forget(&self, ticket: u32) {
        if let Some(watch) = self.tickets.lock().watched.remove(&ticket) {
            watch.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The reports sent to it, in order.
    #[derive(Default)]
    struct Sink(Mutex<Vec<(Vec<u32>, usize)>>);

    impl OutcomeSink for Sink {
        fn report(&self, outcomes: PublishOutcomes, settled: usize) {
            self.0.lock().push((outcomes.tickets().collect(), settled));
        }
    }

    fn closed(ticket: u32) -> PublishOutcomes {
        PublishOutcomes::failed(ticket, crate::errors::Error::session_closed(1))
    }

    #[tokio::test]
    async fn a_settled_publish_is_no_longer_watched() {
        let watched = Arc::new(Watched::default());
        let sink: Arc<dyn OutcomeSink> = Arc::new(Sink::default());
        watched.watch(
            4,
            Limit::after(Duration::from_secs(60)),
            Arc::downgrade(&sink),
        );
        watched.watch(5, Limit::default(), Arc::downgrade(&sink));
        assert_eq!(
            watched.tickets.lock().watched.len(),
            1,
            "a wait that cannot end is not watched"
        );
        assert_eq!(watched.settle(&closed(4)), 1);
        assert_eq!(watched.settle(&closed(5)), 1);
        assert!(watched.tickets.lock().watched.is_empty());
    }

    #[tokio::test]
    async fn a_wait_that_ends_first_is_reported_once_and_its_late_outcome_not_counted() {
        let watched = Arc::new(Watched::default());
        let sink = Arc::new(Sink::default());
        let weak = Arc::downgrade(&sink) as Weak<dyn OutcomeSink>;
        watched.watch(9, Limit::after(Duration::from_millis(5)), weak);
        // The watch runs on the addon's runtime: bounded polling, not a fixed sleep.
        for _ in 0..200 {
            if !sink.0.lock().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*sink.0.lock(), [(vec![9], 1)]);
        assert_eq!(
            watched.settle(&closed(9)),
            0,
            "JavaScript no longer awaits it"
        );
        let tickets = watched.tickets.lock();
        assert!(tickets.watched.is_empty() && tickets.expired.is_empty());
    }
}
