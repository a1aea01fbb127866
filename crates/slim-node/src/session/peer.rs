//! How soon a point-to-point session ends once its peer's process is gone. Upstream lists
//! a peer offline after three missed 10 s heartbeats and keeps the session open, so a
//! receive or a call on it waited 30 s or for ever. With a peer timeout, point-to-point
//! sessions (slimrpc's too) heartbeat every eighth of it and say so in their join request
//! or reply and heartbeats; a peer that said so and stayed silent for the timeout is gone,
//! and the session ends (patches/agntcy-slim-session). Heartbeats come from the tokio
//! runtime, not from JavaScript, so a busy event loop does not silence them; while this
//! app is cut off from its node, its peers' silence does not count. Upstream peers, which
//! do not say their interval, are still judged by upstream's 30 s.

use std::sync::Once;
use std::time::Duration;

use slim_session::controller_sender;

use crate::errors::{Error, Result};
use crate::runtime::millis;

/// The peer timeout until [`set`] changes it: past the time a peer needs to reconnect
/// after its node restarted (slim-node's reconnect waits at most 2 s by default), and
/// within 5 s of a death with the heartbeat that comes before it.
pub const DEFAULT: Duration = Duration::from_secs(3);

/// The shortest timeout accepted: sessions heartbeat every eighth of it.
const MIN: Duration = Duration::from_millis(500);
/// The longest: upstream's own three missed heartbeats take 30 s.
const MAX: Duration = Duration::from_secs(30);

/// Sets the peer timeout of the point-to-point sessions created from now on, in ms; 0
/// keeps upstream's behaviour.
pub fn set(ms: f64) -> Result<()> {
    let timeout = millis(Some(ms), "peerTimeout")?.filter(|t| !t.is_zero());
    if timeout.is_some_and(|t| !(MIN..=MAX).contains(&t)) {
        return Err(Error::invalid_argument(format!(
            "peerTimeout must be 0 (off) or from {} to {} ms, got {ms}",
            MIN.as_millis(),
            MAX.as_millis()
        )));
    }
    CHOSEN.call_once(|| {});
    controller_sender::set_peer_timeout(timeout);
    Ok(())
}

/// Whether the timeout was chosen: by [`set`], or by the first app taking the default.
static CHOSEN: Once = Once::new();

/// Turns the default on unless [`set`] chose already; called as each app is created,
/// before it has sessions.
pub fn default_unless_set() {
    CHOSEN.call_once(|| controller_sender::set_peer_timeout(Some(DEFAULT)));
}
