//! Who is in a session, as upstream's participant list says.

use napi_derive::napi;
use slim_datapath::api::{ParticipantState, ProtoName};
use slim_session::session_controller::SessionController;

use crate::errors::{Error, Result};
use crate::name;

/// A member of a group session as seen by this app.
///
/// @example
/// ```ts
/// for (const member of await session.participants()) console.log(member.name, member.online ? 'online' : 'offline')
/// ```
/// @group Sessions
#[napi(object)]
pub struct Participant {
    /// The member's name, `org/ns/app`.
    pub name: String,
    /// The member instance's 128-bit id as a UUID, when known.
    pub id: Option<String>,
    /// False once the member stopped answering heartbeats.
    pub online: bool,
}

/// The current members of the session, this app included.
pub async fn participants(controller: &SessionController) -> Result<Vec<Participant>> {
    let list = controller.participants_list().await.map_err(Error::from)?;
    Ok(list
        .into_iter()
        .map(|(name, state)| Participant {
            name: name::base(&name),
            id: name::id(&name),
            online: state == ParticipantState::Online,
        })
        .collect())
}

/// How `member` is listed in the group, if it is.
pub async fn member_state(
    controller: &SessionController,
    member: &ProtoName,
) -> Option<ParticipantState> {
    let wanted = name::base(member);
    let list = controller.participants_list().await.ok()?;
    list.into_iter()
        .find(|(listed, _)| name::base(listed) == wanted)
        .map(|(_, state)| state)
}

/// Whether anyone but `own` is listed.
pub async fn has_others(controller: &SessionController, own: &ProtoName) -> bool {
    controller
        .participants_list()
        .await
        .map(|list| list.iter().any(|(name, _)| !name.match_prefix(own)))
        .unwrap_or(true)
}
