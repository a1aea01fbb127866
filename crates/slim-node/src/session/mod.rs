//! Sessions, from the bottom up: what a session is made with (`options`), how soon a
//! point-to-point one ends without its peer (`peer`), who is in it (`roster`), how its
//! publishes end and what they ask to send (`outcomes`, `request`), the waits of
//! publishes (`watched`), its outgoing and incoming messages (`publisher`, `receiver`),
//! the one callback both report through (`events`), the watch on a group's moderator
//! (`moderator`), its state and lifecycle (`core`), and the moderator's membership
//! changes (`membership`). Each imports only those before it.

pub mod core;
pub mod events;
pub mod membership;
pub mod moderator;
pub mod options;
pub mod outcomes;
pub mod peer;
pub mod publisher;
pub mod receiver;
pub mod request;
pub mod roster;
pub mod watched;
