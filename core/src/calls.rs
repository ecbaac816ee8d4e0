//! The calls Durable Objects make to each other (JSON over an internal
//! `fetch`), and the statuses they answer with. Plain data so both ends agree
//! by construction.

use serde::{Deserialize, Serialize};

use crate::matchmaker::pool::Search;
use crate::stats::SessionCounts;

/// Calls into a Session object from another object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum SessionCall {
    /// A line for this session's host (`0: <message>` from a linked host).
    /// `queue`: keep it if the host is away.
    DeliverToHost {
        line: String,
        queue: bool,
    },
    /// Something this (master) session's host must hear about a slave's
    /// client; ids are already in the master's space. Answered
    /// [`NOT_LINKED_YET`] while the master does not know the slave yet.
    SlaveEvent {
        slave: String,
        event: SlaveEvent,
    },
    /// A master's host wrote to this (slave) session's client at `rank`.
    /// Answered [`CLIENT_UNKNOWN`] when there is no such client.
    ToClient {
        id: u32,
        message: String,
    },
    /// `0: <message>` from a slave's host to its master; `from` is the slave.
    Broadcast {
        from: String,
        message: String,
    },
    /// The Matchmaker made this session a slave of `master` (step 1 of a
    /// link). Answered with the session's clients in the master's space, as
    /// JSON, or [`CONFLICT_STATUS`] if it can no longer be a slave.
    LinkedAsSlave {
        master: String,
        offset: u32,
    },
    /// The Matchmaker made this session master of `slave` (step 2), whose
    /// clients are `clients` (master ids, ascending).
    LinkedAsMaster {
        slave: String,
        offset: u32,
        span: u32,
        #[serde(default)]
        clients: Vec<u32>,
        searching: bool,
    },
    MasterLeft {
        master: String,
    },
    SlaveLeft {
        slave: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlaveEvent {
    Connected(u32),
    Disconnected(u32),
    Message(u32, String),
}

/// Calls into the Matchmaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum MatchmakerCall {
    Search { search: Search },
    Cancel { sid: String },
    Report { sid: String, counts: SessionCounts },
    Stats,
}

/// How a call to another object ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Status(u16, String),
    /// The call never got an answer (transport error).
    Failed(String),
}

pub const OK_STATUS: u16 = 200;
/// Body of a `ToClient` answer when the client does not exist.
pub const CLIENT_UNKNOWN: &str = "unknown";
/// Status of any call to a session that does not exist (any more).
pub const GONE_STATUS: u16 = 410;
/// A link step the session can no longer take (it linked elsewhere meanwhile).
pub const CONFLICT_STATUS: u16 = 409;
/// A slave's call reached its master before the master heard of the link:
/// the slave sends it again shortly, keeping its calls in order.
pub const NOT_LINKED_YET: u16 = 425;
/// A message for an absent host did not fit its session's queue.
pub const QUEUE_FULL_STATUS: u16 = 507;
/// Status of a search the Matchmaker refused because its list is full.
pub const POOL_FULL_STATUS: u16 = 503;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_as_json() {
        let call = SessionCall::ToClient { id: 3, message: "a\nb".into() };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(json, r#"{"call":"ToClient","id":3,"message":"a\nb"}"#);
        assert_eq!(serde_json::from_str::<SessionCall>(&json).unwrap(), call);
        let event = SessionCall::SlaveEvent { slave: "s".into(), event: SlaveEvent::Message(4, "hi".into()) };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<SessionCall>(&json).unwrap(), event);
        let stats: MatchmakerCall = serde_json::from_str(r#"{"call":"Stats"}"#).unwrap();
        assert_eq!(stats, MatchmakerCall::Stats);
    }
}
