//! Who is in a session, as upstream's participant list says, and how it changes:
//! upstream announces no change, so while JavaScript listens for them the list is read
//! every [`POLL`] and compared with the last read. The first read reports everyone
//! listed as joined, so a listener sees the whole membership however late it started.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use napi_derive::napi;
use slim_datapath::api::{ParticipantState, ProtoName};
use slim_session::session_controller::SessionController;
use tokio_util::sync::CancellationToken;

use crate::errors::{Error, Result};
use crate::name;

/// How often the list is read while someone listens for its changes.
const POLL: Duration = Duration::from_millis(250);

/// A member of a group session as seen by this app.
///
/// @example
/// ```ts
/// for (const member of await session.participants()) console.log(member.name, member.online ? 'online' : 'offline')
/// ```
/// @group Sessions
#[napi(object)]
#[derive(Clone, PartialEq, Debug)]
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

/// A change in the participant list: the member joined or left it, or went offline or
/// came back online.
#[napi(object)]
#[derive(PartialEq, Debug)]
pub struct ParticipantChange {
    pub name: String,
    pub id: Option<String>,
    pub online: bool,
    /// `joined`, `left`, `offline` or `online`.
    pub change: String,
}

impl ParticipantChange {
    fn of(member: &Participant, change: &str) -> Self {
        Self {
            name: member.name.clone(),
            id: member.id.clone(),
            online: member.online && change != "left",
            change: change.to_owned(),
        }
    }
}

/// What changed from one read of the list to the next.
pub fn changes(before: &[Participant], now: &[Participant]) -> Vec<ParticipantChange> {
    let was: HashMap<&str, &Participant> = before.iter().map(|m| (m.name.as_str(), m)).collect();
    let is: HashMap<&str, &Participant> = now.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut changes = Vec::new();
    for member in now {
        match was.get(member.name.as_str()) {
            None => changes.push(ParticipantChange::of(member, "joined")),
            Some(old) if old.online != member.online => {
                let change = if member.online { "online" } else { "offline" };
                changes.push(ParticipantChange::of(member, change));
            }
            Some(_) => {}
        }
    }
    for member in before {
        if !is.contains_key(member.name.as_str()) {
            changes.push(ParticipantChange::of(member, "left"));
        }
    }
    changes
}

/// Reads the list every [`POLL`] until `stop` is cancelled or the session is gone, and
/// reports each read's changes.
pub async fn watch(
    controller: Weak<SessionController>,
    report: impl Fn(Vec<ParticipantChange>),
    stop: CancellationToken,
) {
    let mut known = Vec::new();
    loop {
        let Some(controller) = controller.upgrade() else {
            return;
        };
        let Ok(now) = participants(&controller).await else {
            return;
        };
        drop(controller);
        let changed = changes(&known, &now);
        if !changed.is_empty() {
            report(changed);
        }
        known = now;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, online: bool) -> Participant {
        Participant {
            name: name.into(),
            id: None,
            online,
        }
    }

    fn said(changes: Vec<ParticipantChange>) -> Vec<(String, String, bool)> {
        changes
            .into_iter()
            .map(|c| (c.name, c.change, c.online))
            .collect()
    }

    #[test]
    fn the_first_read_reports_everyone_as_joined() {
        let now = [member("a/b/c", true), member("a/b/d", false)];
        assert_eq!(
            said(changes(&[], &now)),
            [
                ("a/b/c".into(), "joined".into(), true),
                ("a/b/d".into(), "joined".into(), false)
            ]
        );
    }

    #[test]
    fn later_reads_report_offline_online_and_left() {
        let before = [
            member("x/y/one", true),
            member("x/y/two", false),
            member("x/y/three", true),
        ];
        let now = [member("x/y/one", false), member("x/y/two", true)];
        assert_eq!(
            said(changes(&before, &now)),
            [
                ("x/y/one".into(), "offline".into(), false),
                ("x/y/two".into(), "online".into(), true),
                ("x/y/three".into(), "left".into(), false)
            ]
        );
        assert!(changes(&now, &now).is_empty());
    }
}
