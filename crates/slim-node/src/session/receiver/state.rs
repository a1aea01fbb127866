//! What a session's receiver keeps between receives, and the lock around it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::MutexGuard;
use slim_datapath::api::ProtoMessage;
use slim_session::{AppChannelReceiver, SessionError};

use crate::envelope::Envelopes;
use crate::errors::Error;
use crate::message::ReceivedBatch;
use crate::wait::Poller;

pub(super) type Item = std::result::Result<ProtoMessage, SessionError>;

pub(super) struct State {
    /// Upstream's channel, until it closes.
    pub(super) rx: Option<AppChannelReceiver>,
    /// The most messages the waiting receive takes, while one waits.
    pub(super) request: Option<usize>,
    /// The waiting receive's wait, if it can end, and why it ended once it did.
    pub(super) wait: Option<Poller>,
    pub(super) wait_ended: Option<Error>,
    /// A message taken from upstream while nobody asked (to learn that the channel is
    /// still open), for the next receive.
    pub(super) held: Option<Item>,
    pub(super) envelopes: Envelopes,
    /// Why the session ended, once it did.
    pub(super) ended: Option<Error>,
    /// The member upstream last reported disconnected.
    pub(super) gone: Option<String>,
    /// Set once JavaScript has been told of the end.
    pub(super) end_told: bool,
}

/// The state, locked. While it is, the waker leaves the channel to whoever holds it
/// and, at most, checks again once it is free ([`Receiver::check_idle`]), so that it
/// never calls JavaScript for a receive that the holder is answering.
pub(super) struct Locked<'a> {
    pub(super) state: MutexGuard<'a, State>,
    pub(super) waiting: &'a AtomicBool,
}

impl State {
    pub(super) fn new(rx: AppChannelReceiver) -> Self {
        Self {
            rx: Some(rx),
            request: None,
            wait: None,
            wait_ended: None,
            held: None,
            envelopes: Envelopes::default(),
            ended: None,
            gone: None,
            end_told: false,
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.waiting
            .store(self.state.request.is_some(), Ordering::SeqCst);
    }
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

/// What a receive gets now.
pub(super) enum Served {
    /// Nothing yet: it waits.
    Nothing,
    /// Errors only (warnings for JavaScript): it goes on waiting.
    Warnings(ReceivedBatch),
    /// Its answer: messages, or the session's end.
    Answer(ReceivedBatch),
}
