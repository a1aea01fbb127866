//! A session's one stream of events to JavaScript: its messages (the answers to
//! receives, warnings, the session's end), the outcomes of its publishes and the changes
//! of its participant list, through one callback, `(kind, first, second)`. Kind 0 is a
//! message batch, `(batch, extras)`; kind 1 publish outcomes, `(done, failures)`; kind 2
//! participant changes, `(changes, null)`. The callback keeps Node running while a
//! receive waits or a publish awaits its outcome ([`Awake`]), so JavaScript never asks.

use std::sync::Arc;

use napi::bindgen_prelude::{JsValuesTupleIntoVec, Null, ToNapiValue};
use napi::sys;

use crate::delivery::{Awake, Callback, Delivery};
use crate::session::outcomes::{OutcomeSink, PublishOutcomes};
use crate::session::receiver::{MessageSink, Pump};
use crate::session::roster::ParticipantChange;

/// What one call of the callback carries.
pub enum SessionEvent {
    Messages(Pump),
    /// Outcomes, with how many awaited publishes they settle.
    Outcomes(PublishOutcomes, usize, Arc<Awake>),
    Participants(Vec<ParticipantChange>),
}

impl JsValuesTupleIntoVec for SessionEvent {
    fn into_vec(self, env: sys::napi_env) -> napi::Result<Vec<sys::napi_value>> {
        let (kind, mut values) = match self {
            Self::Messages(pump) => (0u32, pump.into_vec(env)?),
            Self::Outcomes(outcomes, settled, awake) => {
                // SAFETY: napi converts callback values on the JavaScript thread, with
                // its env, while the callback is alive.
                unsafe { awake.awaiting(env, 0, settled)? };
                (1, outcomes.into_vec(env)?)
            }
            Self::Participants(changes) => {
                // SAFETY: as above.
                let changes = unsafe { ToNapiValue::to_napi_value(env, changes)? };
                // SAFETY: as above.
                (
                    2,
                    vec![changes, unsafe { ToNapiValue::to_napi_value(env, Null)? }],
                )
            }
        };
        // SAFETY: as above.
        values.insert(0, unsafe { ToNapiValue::to_napi_value(env, kind)? });
        Ok(values)
    }
}

/// The session's callback, shared by its receiver and its publisher; released once both
/// are done with it.
pub struct Events {
    delivery: Delivery<SessionEvent>,
    awake: Arc<Awake>,
}

impl Events {
    pub fn new(callback: Callback<SessionEvent>) -> Arc<Self> {
        let delivery = Delivery::new(callback);
        let awake = Arc::new(Awake::new(delivery.keep_alive_handle()));
        Arc::new(Self { delivery, awake })
    }

    /// One more publish awaits its outcome. Called on the JavaScript thread.
    ///
    /// # Safety
    /// `env` must be the current environment of the JavaScript thread.
    pub unsafe fn awaiting_one(&self, env: sys::napi_env) -> napi::Result<()> {
        // SAFETY: the caller's contract; the callback is alive while `self` is.
        unsafe { self.awake.awaiting(env, 1, 0) }
    }

    /// Changes of the participant list, for `participant` listeners.
    pub fn report_participants(&self, changes: Vec<ParticipantChange>) {
        self.delivery.send(SessionEvent::Participants(changes));
    }
}

impl MessageSink for Events {
    fn send_messages(&self, pump: Pump) {
        self.delivery.send(SessionEvent::Messages(pump));
    }

    fn awake(&self) -> Arc<Awake> {
        self.awake.clone()
    }
}

impl OutcomeSink for Events {
    fn report(&self, outcomes: PublishOutcomes, settled: usize) {
        let event = SessionEvent::Outcomes(outcomes, settled, self.awake.clone());
        self.delivery.send(event);
    }
}
