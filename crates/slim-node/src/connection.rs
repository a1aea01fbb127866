//! Watches an app's link to its node. Upstream reconnects by itself when the node
//! restarts, but a failed attempt of some kinds (the old node still closing its socket,
//! say) ends its reconnecting for good and drops the connection without a word. The
//! app must learn that, and its sessions must not wait for acknowledgements forever.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use crate::link::{ConnectionState, Link};
use crate::runtime::spawn;

/// Checking is a lookup in the node's connection table, cheap enough to do often.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Watches `connection` until the app closes or disconnects; runs `given_up` if upstream
/// gives the connection up first.
pub fn watch<F, Fut>(link: Weak<Link>, connection: u64, given_up: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let Some(closed) = link.upgrade().map(|link| link.closed.clone()) else {
        return;
    };
    spawn(async move {
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let Some(link) = link.upgrade() else { return };
            match link.connection_state(connection) {
                ConnectionState::Up => continue,
                ConnectionState::Replaced => return,
                ConnectionState::GivenUp => {
                    drop(link);
                    given_up().await;
                    return;
                }
            }
        }
    });
}
