//! Watches an app's link to its node. Upstream reconnects by itself when the node
//! restarts, but a failed attempt of some kinds (the old node still closing its socket,
//! say) ends its reconnecting for good and drops the connection without a word. The
//! app must learn that, and its sessions must not wait for acknowledgements forever.

use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::AppCore;
use crate::runtime::spawn;

/// Checking is a lookup in the node's connection table, cheap enough to do often.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Watches `connection` until the app closes or disconnects, or upstream gives it up.
pub fn watch(app: Weak<AppCore>, connection: u64, closed: CancellationToken) {
    spawn(async move {
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let Some(core) = app.upgrade() else { return };
            match core.connection_state(connection) {
                State::Up => continue,
                State::Replaced => return,
                State::GivenUp => {
                    core.connection_lost(connection).await;
                    return;
                }
            }
        }
    });
}

/// Where an app's connection stands, as far as the watch is concerned.
pub enum State {
    /// Connected, or upstream is still reconnecting.
    Up,
    /// The app disconnected or closed on its own.
    Replaced,
    /// Upstream stopped reconnecting and dropped the connection.
    GivenUp,
}
