//! The envelopes of received messages: what the messages from one sender over one
//! connection share, numbered per session so that JavaScript gets each one once, and
//! so that a reply names its message's envelope instead of sending its names back.

use std::collections::HashMap;

use napi_derive::napi;
use slim_datapath::api::ProtoName;

use crate::name;

/// What the messages from one sender over one connection have in common.
#[napi(object)]
#[derive(Debug, PartialEq)]
pub struct Envelope {
    /// The sender's name, `org/ns/app`.
    pub source: String,
    /// The sender instance's 128-bit id as a UUID.
    pub source_id: String,
    /// Where the message was sent: the channel of a group, or this app.
    pub destination: String,
    /// The application-defined payload type (`"msg"` unless the sender set one).
    pub payload_type: String,
    /// The connection the message arrived on; `publishTo` replies through it.
    pub input_connection: i64,
}

/// What makes two messages share an envelope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnvelopeKey {
    pub source: ProtoName,
    pub destination: ProtoName,
    pub connection: u64,
    pub payload_type: String,
}

/// A session's envelopes, numbered as JavaScript knows them.
#[derive(Default)]
pub struct Envelopes {
    keys: Vec<EnvelopeKey>,
    numbers: HashMap<EnvelopeKey, u32>,
    /// The number last looked up: a burst from one sender skips the hashing.
    last: usize,
    /// How many times numbering started again; JavaScript counts the same.
    generation: u32,
}

/// Envelopes a session remembers before numbering starts again: a peer that invents
/// payload types cannot make it grow without bound.
const MAX_ENVELOPES: usize = 4096;

impl Envelopes {
    /// The number of `key`'s envelope, with the envelope when JavaScript lacks it.
    pub fn index(&mut self, key: EnvelopeKey) -> (u32, Option<Envelope>) {
        if self.keys.get(self.last) == Some(&key) {
            return (self.last as u32, None);
        }
        if let Some(&number) = self.numbers.get(&key) {
            self.last = number as usize;
            return (number, None);
        }
        let payload_type = if key.payload_type.is_empty() {
            "msg"
        } else {
            key.payload_type.as_str()
        };
        let envelope = Envelope {
            source: name::base(&key.source),
            source_id: name::id(&key.source).unwrap_or_default(),
            destination: name::base(&key.destination),
            payload_type: payload_type.to_string(),
            input_connection: i64::try_from(key.connection).unwrap_or(i64::MAX),
        };
        self.last = self.keys.len();
        self.numbers.insert(key.clone(), self.last as u32);
        self.keys.push(key);
        (self.last as u32, Some(envelope))
    }

    /// Where a reply to a message of envelope `number` of numbering `generation` goes:
    /// its sender, through the connection it came on. None for a numbering gone by.
    pub fn reply_to(&self, generation: u32, number: u32) -> Option<(ProtoName, u64)> {
        let key = self
            .keys
            .get(number as usize)
            .filter(|_| generation == self.generation)?;
        Some((key.source.clone(), key.connection))
    }

    /// Starts numbering again at 0 once the table is full (true then); only between
    /// batches, so every message of a batch refers to one numbering.
    pub fn trim(&mut self) -> bool {
        if self.keys.len() < MAX_ENVELOPES {
            return false;
        }
        self.keys.clear();
        self.numbers.clear();
        self.last = 0;
        self.generation = self.generation.wrapping_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, payload_type: &str) -> EnvelopeKey {
        EnvelopeKey {
            source: name::parse(&format!("org/ns/{app}")).unwrap(),
            destination: name::parse("org/ns/channel").unwrap(),
            connection: 7,
            payload_type: payload_type.to_string(),
        }
    }

    fn sent(new: impl IntoIterator<Item = Option<Envelope>>) -> Vec<(String, String)> {
        new.into_iter()
            .flatten()
            .map(|e| (e.source, e.payload_type))
            .collect()
    }

    #[test]
    fn an_envelope_is_sent_once_per_session() {
        let mut envelopes = Envelopes::default();
        let (a, first) = envelopes.index(key("a", ""));
        let (b, second) = envelopes.index(key("b", "x"));
        assert_eq!((a, b), (0, 1));
        assert_eq!(
            sent([first, second]),
            [
                ("org/ns/a".to_string(), "msg".to_string()),
                ("org/ns/b".to_string(), "x".to_string())
            ]
        );
        assert!(!envelopes.trim());
        assert_eq!(
            envelopes.index(key("b", "x")),
            (1, None),
            "known envelopes travel no more"
        );
        assert_eq!(envelopes.index(key("a", "")), (0, None));
        let (to, connection) = envelopes.reply_to(0, 1).unwrap();
        assert_eq!((name::base(&to), connection), ("org/ns/b".to_string(), 7));
    }

    #[test]
    fn numbering_starts_again_between_batches_once_full() {
        let mut envelopes = Envelopes::default();
        assert!(!envelopes.trim());
        for n in 0..MAX_ENVELOPES {
            let (number, _) = envelopes.index(key("a", &n.to_string()));
            assert_eq!(number as usize, n);
        }
        // The batch that filled the table keeps its numbers; the next one starts over.
        assert_eq!(envelopes.index(key("a", "more")).0 as usize, MAX_ENVELOPES);
        assert!(envelopes.trim());
        let (zero, new) = envelopes.index(key("a", "0"));
        assert_eq!(zero, 0);
        assert_eq!(sent([new]), [("org/ns/a".to_string(), "0".to_string())]);
        // A reply to a message of the numbering gone by is not resolved from it.
        assert!(envelopes.reply_to(0, 0).is_none());
        assert!(envelopes.reply_to(1, 0).is_some());
    }
}
