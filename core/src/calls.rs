//! The calls objects make to each other (JSON over an internal `fetch`), and
//! the statuses they answer with. Plain data, so both ends agree by
//! construction.
//!
//! Production physics shape every call here (ARCHITECTURE.md, "Calls between
//! objects"): a call takes 50–150 ms between colos, may be lost, repeated or
//! overtaken, and fails when either object is reset by a deploy, while old
//! and new code run side by side. So:
//! - every call is idempotent: a link's messages carry sequence numbers and
//!   the receiver applies each once; the Matchmaker's steps carry the link's
//!   id; a session's search and figures are its whole desired state, tagged
//!   with an epoch, never a delta;
//! - every call that changes state is retried until it is answered, from
//!   state that is stored, so a reset does not lose it;
//! - every call names the link or epoch it belongs to, and a receiver refuses
//!   one that is stale instead of acting on it;
//! - every call carries [`CALLS_VERSION`]; an object that cannot read a newer
//!   call answers [`UPGRADING_STATUS`], which the sender retries until the
//!   deploy reaches that object. Fields added later carry `#[serde(default)]`.

use serde::{Deserialize, Serialize};

use crate::matchmaker::Search;
use crate::stats::{RelayStats, SessionCounts};

/// The version of these shapes. A receiver reads every version up to its own.
pub const CALLS_VERSION: u32 = 2;

/// A link between a master and a slave, named by the Matchmaker when it made
/// the match. Every message of the link carries it: a session that is not (or
/// no longer) that link's partner refuses the message.
pub type LinkId = u64;

/// Calls into a Session object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum SessionCall {
    /// Messages of a link from the partner session, in order.
    Link(LinkBatch),
    /// Steps of link announcements from the Matchmaker; answered with one
    /// [`StepAnswer`] per step, as a JSON array.
    Steps {
        #[serde(default)]
        v: u32,
        steps: Vec<Step>,
    },
}

/// A batch of a link's messages: everything the sender had queued for this
/// partner when the call left. `base` is the lowest sequence number the
/// sender still holds: anything below it that the receiver has not applied
/// was lost with the sender's memory in a reset (its sockets were closed by
/// that reset, which is their senders' notice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkBatch {
    #[serde(default)]
    pub v: u32,
    pub from: String,
    pub link: LinkId,
    pub base: u64,
    pub entries: Vec<LinkEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEntry {
    pub seq: u64,
    pub msg: LinkMsg,
}

/// One message of a link. Ids are in the master's id space except `rank`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m")]
pub enum LinkMsg {
    /// Master → slave, first of the link: the master took the slave; the
    /// slave's host may now hear `!set-master:`.
    Welcome,
    /// Slave → master: a client of the slave connected (`connected: <id>`).
    Connected { id: u32 },
    /// Slave → master: a client of the slave left (`disconnected: <id>`).
    Disconnected { id: u32 },
    /// Slave → master: a client's message (`<id>: <text>`).
    Message { id: u32, text: String },
    /// Master → slave: the master's host wrote to the slave's client at `rank`
    /// (1-based in the slave's frozen roster); `digits` as the host wrote them.
    ToClient { rank: u32, digits: String, text: String },
    /// Slave → master: a `ToClient` found no such client (`unknown: <digits>`).
    Unknown { digits: String },
    /// Either way: a `0: <text>` line for the other hosts of the group.
    Broadcast { text: String },
    /// Either way, last of the link: the sender ended it (`!slave-left:` or
    /// `!master-left` at the other side).
    Left,
}

impl LinkMsg {
    /// Messages that change link state survive a reset of their sender (they
    /// are stored until acknowledged); the rest live in memory only.
    pub fn is_durable(&self) -> bool {
        matches!(self, LinkMsg::Welcome | LinkMsg::Connected { .. } | LinkMsg::Disconnected { .. } | LinkMsg::Left)
    }

    /// What the message weighs against a link's bound.
    pub fn bytes(&self) -> usize {
        let text = match self {
            LinkMsg::Message { text, .. } | LinkMsg::Broadcast { text } => text.len(),
            LinkMsg::ToClient { text, digits, .. } => text.len() + digits.len(),
            LinkMsg::Unknown { digits } => digits.len(),
            _ => 0,
        };
        // What a message costs beyond its text, in memory and on the wire.
        text + 16
    }
}

/// The answer to a [`LinkBatch`] the receiver could read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkAck {
    /// Every message up to this sequence number is applied.
    pub ack: u64,
}

/// A step of announcing a link, from the Matchmaker to one of its sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step")]
pub enum Step {
    /// To the slave: the Matchmaker matched its search `epoch` with `master`.
    /// The slave holds the link as pending and answers with its clients.
    Offer { link: LinkId, master: String, offset: u32, epoch: u64 },
    /// To the master: take `slave`, whose clients are `clients` (master ids,
    /// ascending). `fills`: this link fills the master; it stops searching.
    Lead { link: LinkId, slave: String, offset: u32, span: u32, clients: Vec<u32>, fills: bool },
    /// To the slave: the master did not take the link; forget it.
    Undo { link: LinkId },
}

/// A session's answer to one [`Step`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer")]
pub enum StepAnswer {
    /// `Offer` taken (the slave's clients, in master ids) or `Lead` taken.
    Accepted {
        #[serde(default)]
        clients: Vec<u32>,
    },
    /// The session cannot take this step (it stopped searching, linked
    /// elsewhere, is full, or does not exist).
    Refused,
    /// `Undo` done; `searching`: the epoch of the search the session is still
    /// in, so the Matchmaker can put it back in the pool.
    Undone {
        #[serde(default)]
        searching: Option<u64>,
    },
}

/// Calls into the Matchmaker. Only matchmaking reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum MatchmakerCall {
    /// A session's whole matchmaking state: `search` while it searches (sent
    /// again now and then to renew its lease), `None` once it stopped.
    /// `epoch` counts the session's `/join-session`s: an older state than the
    /// one the Matchmaker holds changes nothing.
    Search {
        #[serde(default)]
        v: u32,
        sid: String,
        epoch: u64,
        search: Option<Search>,
    },
}

/// Calls into an aggregator of the relay-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call")]
pub enum AggregatorCall {
    /// Session → its leaf: the session's counts now (absolute), `at` the
    /// session's clock when it counted; older reports change nothing.
    Report {
        #[serde(default)]
        v: u32,
        sid: String,
        counts: SessionCounts,
        at: f64,
    },
    /// Leaf → root: the leaf's totals; Matchmaker → root: the searches.
    Totals {
        #[serde(default)]
        v: u32,
        from: String,
        totals: Totals,
        at: f64,
    },
    /// → root: the relay-wide figures, answered as the `/stats` JSON.
    Stats,
}

/// Sums of figures, as one aggregator passes them up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub hosts: u64,
    pub clients: u64,
    pub players: u64,
    #[serde(default)]
    pub searching: u64,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.hosts += other.hosts;
        self.clients += other.clients;
        self.players += other.players;
        self.searching += other.searching;
    }

    /// The inverse of `add` (an entry replaced or forgotten).
    pub fn sub(&mut self, other: &Totals) {
        self.hosts -= other.hosts;
        self.clients -= other.clients;
        self.players -= other.players;
        self.searching -= other.searching;
    }

    pub fn of(counts: &SessionCounts) -> Totals {
        Totals {
            hosts: counts.hosts as u64,
            clients: counts.clients as u64,
            players: counts.players as u64,
            searching: 0,
        }
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats {
            num_hosts_online: self.hosts,
            num_hosts_looking_for_session: self.searching,
            num_clients_online: self.clients,
            num_players: self.players,
        }
    }
}

/// How a call to another object ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Status(u16, String),
    /// The call never got an answer (transport error, reset, timeout).
    Failed(String),
}

impl Outcome {
    /// An answer worth sending again later: no answer, the receiver's
    /// storage failed, or it runs older code for now.
    pub fn is_transient(&self) -> bool {
        match self {
            Outcome::Failed(_) => true,
            Outcome::Status(status, _) => *status >= 500 || *status == UPGRADING_STATUS || *status == 429,
        }
    }

    pub fn ok_body(&self) -> Option<&str> {
        match self {
            Outcome::Status(OK_STATUS, body) => Some(body),
            _ => None,
        }
    }
}

pub const OK_STATUS: u16 = 200;
/// Status of a call naming a link (or a session) the receiver does not hold.
pub const STALE_STATUS: u16 = 409;
/// Status of any call to a session that does not exist (any more).
pub const GONE_STATUS: u16 = 410;
/// The receiver cannot read this call's version yet (a deploy is under way).
pub const UPGRADING_STATUS: u16 = 426;
/// Status of a search the Matchmaker refused because its list is full.
pub const POOL_FULL_STATUS: u16 = 507;
/// The receiver's storage could not be read: try again.
pub const UNAVAILABLE_STATUS: u16 = 503;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_as_json() {
        let batch = SessionCall::Link(LinkBatch {
            v: CALLS_VERSION,
            from: "s".into(),
            link: 7,
            base: 3,
            entries: vec![
                LinkEntry { seq: 3, msg: LinkMsg::Message { id: 4, text: "a\nb".into() } },
                LinkEntry { seq: 4, msg: LinkMsg::Left },
            ],
        });
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(
            json,
            r#"{"call":"Link","v":2,"from":"s","link":7,"base":3,"entries":[{"seq":3,"msg":{"m":"Message","id":4,"text":"a\nb"}},{"seq":4,"msg":{"m":"Left"}}]}"#
        );
        assert_eq!(serde_json::from_str::<SessionCall>(&json).unwrap(), batch);
        let steps = SessionCall::Steps { v: CALLS_VERSION, steps: vec![Step::Undo { link: 1 }] };
        let json = serde_json::to_string(&steps).unwrap();
        assert_eq!(serde_json::from_str::<SessionCall>(&json).unwrap(), steps);
        let answer: StepAnswer = serde_json::from_str(r#"{"answer":"Undone"}"#).unwrap();
        assert_eq!(answer, StepAnswer::Undone { searching: None });
        let stats: AggregatorCall = serde_json::from_str(r#"{"call":"Stats"}"#).unwrap();
        assert_eq!(stats, AggregatorCall::Stats);
    }

    #[test]
    fn only_link_state_is_durable() {
        assert!(LinkMsg::Left.is_durable() && LinkMsg::Connected { id: 1 }.is_durable());
        assert!(!LinkMsg::Message { id: 1, text: String::new() }.is_durable());
        assert!(!LinkMsg::Broadcast { text: String::new() }.is_durable());
    }

    #[test]
    fn transient_outcomes_are_retried() {
        assert!(Outcome::Failed("reset".into()).is_transient());
        assert!(Outcome::Status(503, String::new()).is_transient());
        assert!(Outcome::Status(UPGRADING_STATUS, String::new()).is_transient());
        assert!(!Outcome::Status(STALE_STATUS, String::new()).is_transient());
        assert!(!Outcome::Status(GONE_STATUS, String::new()).is_transient());
    }
}
