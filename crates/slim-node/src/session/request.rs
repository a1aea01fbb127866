//! What JavaScript asked a session to send: one message or several (`publishMany`), with
//! the options and the target they share, taken apart into messages as they leave.

use slim_datapath::api::ProtoName;

use crate::errors::Error;
use crate::session::options::PublishOptions;
use crate::session::outcomes::{PublishOutcomes, Tally};

#[derive(Clone)]
pub enum Target {
    Destination,
    Reply {
        name: ProtoName,
        connection: u64,
    },
    /// Explicit routing (upstream's `publish_with_params`): another name than the
    /// session's destination, the outgoing connection. (Its fanout is left out: upstream's
    /// session sender sets every message's fanout itself.)
    Routed {
        name: Option<ProtoName>,
        connection: Option<u64>,
    },
}

pub struct PublishRequest {
    /// One message, or several that leave in this order under one ticket.
    pub payloads: Vec<Vec<u8>>,
    pub options: PublishOptions,
    pub target: Target,
    pub ticket: u32,
}

/// One message of a request, ready to leave.
pub struct Part {
    pub ticket: u32,
    pub index: u32,
    pub payload: Vec<u8>,
    pub options: PublishOptions,
    pub target: Target,
}

/// A request whose messages are leaving one by one.
pub struct Sending {
    ticket: u32,
    next_index: u32,
    payloads: std::vec::IntoIter<Vec<u8>>,
    options: PublishOptions,
    target: Target,
}

impl Sending {
    pub fn new(request: PublishRequest, tally: &mut Tally) -> Self {
        tally.open(request.ticket, request.payloads.len());
        Self {
            ticket: request.ticket,
            next_index: 0,
            payloads: request.payloads.into_iter(),
            options: request.options,
            target: request.target,
        }
    }

    /// The next message: the last one takes the request's options, the others a copy.
    pub fn next(&mut self) -> Option<Part> {
        let payload = self.payloads.next()?;
        let (options, target) = if self.payloads.len() == 0 {
            let target = std::mem::replace(&mut self.target, Target::Destination);
            (std::mem::take(&mut self.options), target)
        } else {
            (self.options.clone(), self.target.clone())
        };
        let index = self.next_index;
        self.next_index += 1;
        Some(Part {
            ticket: self.ticket,
            index,
            payload,
            options,
            target,
        })
    }

    pub fn is_done(&self) -> bool {
        self.payloads.len() == 0
    }

    /// Fails the messages that did not leave.
    pub fn never_sent(self, why: &Error, tally: &mut Tally, into: &mut PublishOutcomes) {
        let left = u32::try_from(self.payloads.len()).unwrap_or(u32::MAX);
        tally.never_sent(self.ticket, self.next_index, left, why, into);
    }
}
