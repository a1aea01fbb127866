//! Membership changes, each resolving when upstream reports it done: the moderator
//! invites and removes members; a member goes offline and rejoins.

use std::sync::Arc;

use slim_datapath::api::{ParticipantState, ProtoName};
use slim_session::session_controller::{CloseMode, SessionController};

use crate::errors::{Code, Error, Result};
use crate::name;
use crate::session::core::SessionCore;
use crate::session::options::SessionType;
use crate::session::roster::member_state;
use crate::wait::Limit;

/// The session's controller, for its moderator only: upstream's own checks, done before
/// any route is set so that their errors come first.
fn moderated(core: &SessionCore) -> Result<Arc<SessionController>> {
    let controller = core.controller()?;
    if core.session_type == SessionType::PointToPoint {
        return Err(Error::new(
            Code::NotGroup,
            "only group sessions have members to invite or remove; this is a point-to-point session",
        ));
    }
    if !core.initiator {
        return Err(Error::new(
            Code::NotInitiator,
            "only the moderator (the app that created the group) can invite or remove members",
        ));
    }
    Ok(controller)
}

/// Invites `member`, resolving once it has joined. A member that crashed stays listed,
/// offline, until it is removed: it is removed first, then invited again.
pub async fn invite(core: Arc<SessionCore>, member: ProtoName, limit: Limit) -> Result<()> {
    let controller = moderated(&core)?;
    core.link.set_route(&member).await?;
    match member_state(&controller, &member).await {
        Some(ParticipantState::Online) => {
            return Err(Error::invalid_argument(format!(
                "{} is already a member of this group",
                name::base(&member)
            )));
        }
        Some(_) => remove(&core, &member, &limit).await?,
        None => {}
    }
    let handle = controller
        .invite_participant(&member)
        .await
        .map_err(Error::from)?;
    drop(controller);
    core.complete(handle, &limit, "invite").await
}

/// Removes a listed `member`, resolving once it has left.
pub async fn remove_listed(core: Arc<SessionCore>, member: ProtoName, limit: Limit) -> Result<()> {
    let controller = moderated(&core)?;
    if member_state(&controller, &member).await.is_none() {
        return Err(Error::new(
            Code::NotMember,
            format!("{} is not a member of this group", name::base(&member)),
        ));
    }
    drop(controller);
    remove(&core, &member, &limit).await
}

/// Removes `member`. One that went offline cannot acknowledge its removal, so upstream
/// reports a delivery failure after taking it off the list: that counts as removed.
async fn remove(core: &SessionCore, member: &ProtoName, limit: &Limit) -> Result<()> {
    let handle = core
        .controller()?
        .remove_participant(member)
        .await
        .map_err(Error::from)?;
    match core.complete(handle, limit, "remove").await {
        Err(err) if err.code == Code::DeliveryFailed => match core.controller() {
            Ok(controller) if member_state(&controller, member).await.is_none() => Ok(()),
            _ => Err(err),
        },
        outcome => outcome,
    }
}

/// Tells the group this member goes offline, keeping the session to `rejoin` later.
pub async fn go_offline(core: Arc<SessionCore>, limit: Limit) -> Result<()> {
    let handle = core
        .controller()?
        .close_with_mode(CloseMode::Soft)
        .await
        .map_err(Error::from)?;
    core.complete(handle, &limit, "goOffline").await
}

/// Tells the group this member is back. With MLS, a member that missed an epoch change
/// while offline is refused.
pub async fn rejoin(core: Arc<SessionCore>, limit: Limit) -> Result<()> {
    let handle = core.controller()?.rejoin().await.map_err(Error::from)?;
    core.complete(handle, &limit, "rejoin").await
}
