//! The calls Durable Objects make to each other (JSON over an internal
//! `fetch`). Plain data so both ends agree by construction.

use serde::{Deserialize, Serialize};

use crate::matchmaking::Search;
use crate::stats::SessionCounts;

/// Calls into a Session object from another object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum SessionCall {
    /// A line for this session's host (a linked session's client event or
    /// message, already translated). `queue`: keep it if the host is away.
    DeliverToHost {
        line: String,
        queue: bool,
    },
    /// A master's host wrote to one of this (slave) session's clients.
    /// Answered with [`CLIENT_UNKNOWN`] when there is no such client.
    ToClient {
        id: u32,
        message: String,
    },
    /// `0: <message>` from a linked host; `from` is the sending session.
    Broadcast {
        from: String,
        message: String,
    },
    /// The Matchmaker linked this session as master of `slave`.
    LinkedAsMaster {
        slave: String,
        offset: u32,
        span: u32,
        searching: bool,
    },
    /// The Matchmaker linked this session as slave of `master`.
    LinkedAsSlave {
        master: String,
        offset: u32,
    },
    MasterLeft {
        master: String,
    },
    SlaveLeft {
        slave: String,
    },
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

/// Body of a `ToClient` answer when the client does not exist.
pub const CLIENT_UNKNOWN: &str = "unknown";
/// Status of any call to a session that does not exist (any more).
pub const GONE_STATUS: u16 = 410;
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
        let stats: MatchmakerCall = serde_json::from_str(r#"{"call":"Stats"}"#).unwrap();
        assert_eq!(stats, MatchmakerCall::Stats);
    }
}
