//! A participant of a group learns when the group's moderator is gone. Upstream marks a
//! member offline after three missed heartbeats but keeps a participant's session open
//! when that member is the moderator, and does not say which member moderates: slim-node
//! moderators name themselves in the session metadata, and with MLS the moderator's
//! verified identity names it too.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use slim_datapath::api::{ParticipantState, ProtoName};
use slim_session::session_controller::SessionController;
use tokio_util::sync::CancellationToken;

use crate::name;
use crate::runtime::spawn;
use crate::session::roster::member_state;

/// The session metadata entry in which a slim-node moderator names itself.
pub const MODERATOR_KEY: &str = "slim-node-moderator";

/// Upstream's own detection takes three 10 s heartbeats; a second more is noise.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the moderator must stay listed offline before the session ends. Upstream
/// also lists a member offline when retransmissions to it fail, which an outage of the
/// node causes too; a moderator that is alive heartbeats every 10 s and is listed online
/// again at its next heartbeat.
const GRACE: Duration = Duration::from_secs(12);

/// Names `moderator` in the metadata of a group it creates.
pub fn announce(metadata: &mut HashMap<String, String>, moderator: &ProtoName) {
    metadata.insert(MODERATOR_KEY.to_string(), name::base(moderator));
}

/// Who moderates the session: `Err` when that cannot be known, `Ok(None)` not yet.
fn moderator_of(controller: &SessionController) -> Result<Option<ProtoName>, ()> {
    let announced = controller.metadata().remove(MODERATOR_KEY);
    // With MLS, the identity that signed the invite, once it was checked; it names a
    // member when it is a shared secret's, as slim-node and upstream's bindings set it.
    let verified = || {
        controller
            .peer_identity()
            .map(|id| id.subject().to_string())
    };
    match announced.or_else(verified) {
        Some(text) => name::parse(&text).map(Some).map_err(|_| ()),
        None if controller.session_config().mls_settings.is_some() => Ok(None),
        None => Err(()),
    }
}

/// Runs `gone` with the reason once the moderator of `session` has been listed offline
/// for `GRACE`.
pub fn watch<F, Fut>(session: Weak<SessionController>, closed: CancellationToken, gone: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    spawn(async move {
        let mut moderator: Option<ProtoName> = None;
        let mut offline_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = closed.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let Some(controller) = session.upgrade() else {
                return;
            };
            if moderator.is_none() {
                match moderator_of(&controller) {
                    Ok(found) => moderator = found,
                    Err(()) => return,
                }
            }
            let Some(moderator) = moderator.as_ref() else {
                continue;
            };
            if member_state(&controller, moderator).await != Some(ParticipantState::Offline) {
                offline_since = None;
                continue;
            }
            let since = *offline_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= GRACE {
                drop(controller);
                gone(format!(
                    "its moderator {} went offline",
                    name::base(moderator)
                ))
                .await;
                return;
            }
        }
    });
}
