//! The shapes a session keeps across hibernation, and the rules that read
//! them: `SessionRecord` (one per session, in the object's SQLite storage) and
//! `SocketInfo` (one per socket, in its attachment).
//!
//! Every stored shape must stay readable by the next version: fields added
//! after the first format carry `#[serde(default)]`, and `tests` read the
//! first format's JSON as it was written.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::group::{ClosingLink, Group};
use crate::secrets::secrets_match;
use crate::settings::Settings;
use crate::stats::SessionCounts;
use crate::wire::{MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES};

/// The stored format this version writes. Format 1 had no `format` field;
/// format 3 added link ids, unacknowledged link messages and sync states.
pub const RECORD_FORMAT: u32 = 3;

/// What the session keeps in storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    #[serde(default = "first_format")]
    pub format: u32,
    pub id: String,
    pub secret: String,
    /// Whether the session waits for its host when the host's socket closes.
    #[serde(default = "yes")]
    pub reconnect: bool,
    /// Bumped at each host connect, so a replaced host socket is recognised.
    #[serde(default)]
    pub host_generation: u32,
    /// Set while no host is connected: when the session ends (epoch ms).
    #[serde(default)]
    pub host_away_until: Option<f64>,
    /// Client uuid → the client id it keeps for the session's life.
    #[serde(default)]
    pub reserved: BTreeMap<String, u32>,
    /// Bytes of client messages queued for the absent host (the messages
    /// themselves, without the relay's `<n>: ` prefixes).
    #[serde(default)]
    pub queued_bytes: usize,
    /// Messages in the queue that count against its bound (an empty message
    /// is one of no bytes). Link lines are kept outside the bound.
    #[serde(default)]
    pub queued_lines: usize,
    /// Link lines in the queue (outside the bound: a few per link).
    #[serde(default)]
    pub queued_notices: usize,
    /// Queue rows up to this number were delivered, though deleting them
    /// failed: they are never delivered again.
    #[serde(default)]
    pub queue_delivered_through: u64,
    /// Ids the absent host is yet to hear are gone: a link ended while it was
    /// away, and its `disconnected:` lines wait in the queue. They are not
    /// free until the take-over delivers those lines, so that no client is
    /// given an id whose `disconnected:` the host would hear after its
    /// `connected:` (the simulator, seed 40888).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unheard_gone: BTreeSet<u32>,
    /// Format 1 counted socket tokens here; tokens now need no storage. Still
    /// written (as 0), because 1.0.0 cannot read a record without it: a
    /// rollback must find every session.
    #[serde(default)]
    next_socket_token: u64,
    /// Matchmaking: search, links, frozen roster.
    #[serde(default)]
    pub group: Group,
    /// Format 1 kept the next stats report time here; it is memory now.
    #[serde(default, skip_serializing)]
    stats_due: Option<f64>,
    /// What the figures' aggregator last acknowledged, so unchanged figures
    /// are not sent again ...
    #[serde(default)]
    pub stats_reported: SessionCounts,
    /// ... when (epoch ms; the report is renewed before its lease ends) ...
    #[serde(default)]
    pub stats_reported_at: f64,
    /// ... and to which aggregator (a new `AGGREGATOR_LEAVES` count moves it).
    #[serde(default)]
    pub stats_leaf: Option<u32>,
}

fn first_format() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl SessionRecord {
    pub fn new(id: String, secret: String, reconnect: bool) -> Self {
        SessionRecord {
            format: RECORD_FORMAT,
            id,
            secret,
            reconnect,
            host_generation: 0,
            host_away_until: None,
            reserved: BTreeMap::new(),
            queued_bytes: 0,
            queued_lines: 0,
            queued_notices: 0,
            queue_delivered_through: 0,
            unheard_gone: BTreeSet::new(),
            next_socket_token: 0,
            group: Group::default(),
            stats_due: None,
            stats_reported: SessionCounts::default(),
            stats_reported_at: 0.0,
            stats_leaf: None,
        }
    }

    /// Reads a stored record of any format this version knows.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let mut record: SessionRecord = serde_json::from_str(json)?;
        if record.format < 2 && record.queued_bytes > 0 {
            // Format 1 did not count lines; any bytes mean at least one.
            record.queued_lines = record.queued_lines.max(1);
        }
        record.group.upgrade();
        // Fields of format 1 that are no longer stored.
        record.next_socket_token = 0;
        record.stats_due = None;
        record.format = RECORD_FORMAT;
        Ok(record)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record always serialises")
    }

    /// True once the reconnect window has run out.
    pub fn expired(&self, now: f64) -> bool {
        self.host_away_until.is_some_and(|deadline| deadline <= now)
    }
}

/// What a session still owes other objects, stored beside its record until
/// delivered. It outlives the session: a session that ends still has to tell
/// its partners its links ended, the Matchmaker its search ended, and its
/// aggregator its figures are zero; the id is free again meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Obligations {
    /// The session's id (the calls name it).
    #[serde(default)]
    pub sid: String,
    /// Links that ended here whose partner must still hear `Left`.
    #[serde(default)]
    pub closing: Vec<ClosingLink>,
    /// The epoch of a search the Matchmaker may still hold, to cancel.
    #[serde(default)]
    pub cancel: Option<u64>,
    /// An aggregator that may still count this session, and when it ended:
    /// it must hear zero figures.
    #[serde(default)]
    pub unreport: Option<(u32, f64)>,
}

impl Obligations {
    pub fn is_empty(&self) -> bool {
        self.closing.is_empty() && self.cancel.is_none() && self.unreport.is_none()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("obligations always serialise")
    }
}

/// The key of a session's host stream (section 7); a client's is `c:<uuid>`.
pub const HOST_STREAM: &str = "host";

/// Everything a session object stores, as it reads it back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub record: Option<SessionRecord>,
    pub owed: Obligations,
    /// Resume streams by key (section 7).
    pub streams: Vec<(String, crate::stream::Stream)>,
}

/// Who a socket is. Stored in the socket's attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub role: Role,
    /// Unique within the session; names the socket in the core's effects.
    pub token: u64,
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// When the next keep-alive is due (epoch ms); 0 when there is none.
    #[serde(default)]
    pub keep_alive_due: f64,
    /// Set when the relay has already closed the socket and accounted for it,
    /// so the runtime's later events for it change nothing.
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub bucket: TokenBucket,
    /// The byte rate limit's bucket (format 1 had none: it starts empty and
    /// refills at once, its `updated` being 0).
    #[serde(default)]
    pub byte_bucket: TokenBucket,
    /// The socket opted in to acknowledged resume (section 7) ...
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    /// ... and connected at this time (epoch ms).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: f64,
    /// The last heartbeat the runtime answered for it, as the executor read
    /// it when the object woke (never stored: the runtime keeps it).
    #[serde(skip)]
    pub heartbeat: Option<f64>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Role {
    Host { generation: u32 },
    Client { id: u32, uuid: Option<String> },
}

impl SocketInfo {
    pub fn new(role: Role, token: u64, keep_alive: Option<String>, now: f64, settings: &Settings) -> Self {
        let keep_alive_due = if keep_alive.is_some() { now + settings.keep_alive_ms } else { 0.0 };
        let limits = settings.limits(matches!(role, Role::Host { .. }));
        SocketInfo {
            role,
            token,
            keep_alive,
            keep_alive_due,
            closed: false,
            bucket: TokenBucket::full(limits.burst, now),
            byte_bucket: TokenBucket::full(limits.bytes_burst, now),
            resume: false,
            since: now,
            heartbeat: None,
        }
    }

    /// The resume stream this socket belongs to, if it opted in: its
    /// session's host stream, or its client uuid's.
    pub fn stream_key(&self) -> Option<String> {
        if !self.resume {
            return None;
        }
        match &self.role {
            Role::Host { .. } => Some(HOST_STREAM.to_string()),
            Role::Client { uuid, .. } => uuid.as_ref().map(|u| format!("c:{u}")),
        }
    }

    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn client_id(&self) -> Option<u32> {
        match self.role {
            Role::Client { id, .. } => Some(id),
            Role::Host { .. } => None,
        }
    }

    pub fn is_host(&self) -> bool {
        matches!(self.role, Role::Host { .. })
    }
}

/// How a host's request to connect is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAdmission {
    /// No such session: a new one is made.
    Create,
    /// The session exists and the secret is right.
    TakeOver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRejection {
    /// An id without a secret names a session that exists (409).
    AlreadyExists,
    /// A secret for a session that does not exist, or the wrong one (404).
    NotFoundOrBadSecret,
}

/// Decides a host connect. `existing` must already be rid of an expired session.
pub fn admit_host(existing: Option<&SessionRecord>, secret: Option<&str>) -> Result<HostAdmission, HostRejection> {
    match (existing, secret) {
        (None, None) => Ok(HostAdmission::Create),
        (None, Some(_)) => Err(HostRejection::NotFoundOrBadSecret),
        (Some(_), None) => Err(HostRejection::AlreadyExists),
        (Some(record), Some(secret)) if secrets_match(secret, &record.secret) => Ok(HostAdmission::TakeOver),
        (Some(_), Some(_)) => Err(HostRejection::NotFoundOrBadSecret),
    }
}

/// The id a connecting client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAdmission {
    pub id: u32,
    /// A socket with the same uuid is still connected: it is replaced.
    pub replaces: bool,
    /// The uuid is new to the session and must be stored with its id.
    pub reserve: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFull;

/// Picks the client id for a new socket.
///
/// `connected` are the ids with a live socket. A uuid seen before gets its id
/// back; any other client the smallest id that is neither connected, nor kept
/// for a uuid, nor one whose `disconnected:` the absent host has yet to hear. While the session is frozen (matchmaking), only a known uuid
/// may come back, and only to an id of the frozen roster.
pub fn admit_client(
    record: &SessionRecord,
    connected: &BTreeSet<u32>,
    uuid: Option<&str>,
    max_clients: u32,
) -> Result<ClientAdmission, SessionFull> {
    if let Some(id) = uuid.and_then(|u| record.reserved.get(u)).copied() {
        if !record.group.admits(id) {
            return Err(SessionFull);
        }
        return Ok(ClientAdmission { id, replaces: connected.contains(&id), reserve: None });
    }
    if record.group.is_frozen() {
        return Err(SessionFull);
    }
    let kept: BTreeSet<u32> = record.reserved.values().chain(&record.unheard_gone).copied().collect();
    let id = (1..=max_clients).find(|id| !connected.contains(id) && !kept.contains(id)).ok_or(SessionFull)?;
    Ok(ClientAdmission { id, replaces: false, reserve: uuid.map(str::to_string) })
}

/// Whether one more queued message of `len` bytes fits the per-session
/// bound: 256 KiB and 4,096 messages (PROTOCOL.md section 5).
pub fn queue_admits(queued_bytes: usize, queued_lines: usize, len: usize) -> bool {
    queued_bytes.saturating_add(len) <= MAX_QUEUED_BYTES && queued_lines < MAX_QUEUED_MESSAGES
}

/// Per-socket frame rate limit; lives in the attachment so hibernation does
/// not reset it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenBucket {
    pub tokens: f64,
    pub updated: f64,
}

impl TokenBucket {
    pub fn full(burst: f64, now: f64) -> Self {
        TokenBucket { tokens: burst, updated: now }
    }

    /// Takes one token; false when the socket is over its rate.
    pub fn take(&mut self, now: f64, per_second: f64, burst: f64) -> bool {
        self.take_n(now, 1.0, per_second, burst)
    }

    /// Takes `n` tokens; false (taking none) when there are fewer.
    pub fn take_n(&mut self, now: f64, n: f64, per_second: f64, burst: f64) -> bool {
        let elapsed = (now - self.updated).max(0.0) / 1000.0;
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.updated = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord::new("s".into(), "secret".into(), true)
    }

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    /// A record exactly as version 1.0.0 wrote it.
    const FORMAT_1_RECORD: &str = r#"{"id":"abc","secret":"s3","reconnect":true,"host_generation":2,"host_away_until":1000.0,"reserved":{"u1":1},"queued_bytes":5,"next_socket_token":7,"group":{"frozen_span":2,"search":null,"master":{"sid":"m","offset":3},"slaves":[]},"stats_due":null,"stats_reported":{"hosts":1,"clients":2,"players":2}}"#;
    const FORMAT_1_ATTACHMENT: &str = r#"{"role":{"Client":{"id":2,"uuid":null}},"token":4,"keep_alive":"ka","keep_alive_due":30000.0,"closed":false,"bucket":{"tokens":9999.0,"updated":12.0}}"#;

    #[test]
    fn the_first_formats_are_read() {
        let r = SessionRecord::from_json(FORMAT_1_RECORD).unwrap();
        assert_eq!((r.id.as_str(), r.host_generation, r.queued_bytes, r.queued_lines), ("abc", 2, 5, 1));
        assert_eq!(r.group.frozen, Some(vec![1, 2]));
        assert_eq!(r.format, RECORD_FORMAT);
        let again = SessionRecord::from_json(&r.to_json()).unwrap();
        assert_eq!(again, r);
        // What 1.0.0 required is still written, so a rollback reads it.
        let written: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for field in [
            "id",
            "secret",
            "reconnect",
            "host_generation",
            "host_away_until",
            "reserved",
            "queued_bytes",
            "next_socket_token",
        ] {
            assert!(written.get(field).is_some(), "{field} is written");
        }
        assert!(written["group"].get("slaves").is_some());
        let info = SocketInfo::from_json(FORMAT_1_ATTACHMENT).unwrap();
        assert_eq!((info.client_id(), info.token), (Some(2), 4));
        // A minimal record (fields added later all missing) still reads.
        let minimal = SessionRecord::from_json(r#"{"id":"x","secret":"y"}"#).unwrap();
        assert!(minimal.reconnect && minimal.group == Group::default());
        let minimal = SocketInfo::from_json(r#"{"role":{"Host":{"generation":1}},"token":1}"#).unwrap();
        assert!(minimal.is_host() && !minimal.closed);
    }

    #[test]
    fn host_admission_table() {
        let r = record();
        assert_eq!(admit_host(None, None), Ok(HostAdmission::Create));
        assert_eq!(admit_host(None, Some("x")), Err(HostRejection::NotFoundOrBadSecret));
        assert_eq!(admit_host(Some(&r), None), Err(HostRejection::AlreadyExists));
        assert_eq!(admit_host(Some(&r), Some("wrong")), Err(HostRejection::NotFoundOrBadSecret));
        assert_eq!(admit_host(Some(&r), Some("secret")), Ok(HostAdmission::TakeOver));
    }

    #[test]
    fn smallest_free_id() {
        let r = record();
        assert_eq!(admit_client(&r, &set(&[]), None, 8).unwrap().id, 1);
        assert_eq!(admit_client(&r, &set(&[1, 2, 4]), None, 8).unwrap().id, 3);
        assert_eq!(admit_client(&r, &set(&[1, 2, 3]), None, 3), Err(SessionFull));
    }

    #[test]
    fn uuids_keep_their_id_and_keep_it_from_others() {
        let mut r = record();
        let first = admit_client(&r, &set(&[]), Some("u"), 8).unwrap();
        assert_eq!(first, ClientAdmission { id: 1, replaces: false, reserve: Some("u".into()) });
        r.reserved.insert("u".into(), 1);
        assert_eq!(admit_client(&r, &set(&[]), None, 8).unwrap().id, 2);
        assert_eq!(
            admit_client(&r, &set(&[2]), Some("u"), 8).unwrap(),
            ClientAdmission { id: 1, replaces: false, reserve: None }
        );
        assert!(admit_client(&r, &set(&[1, 2]), Some("u"), 8).unwrap().replaces);
        assert_eq!(admit_client(&r, &set(&[2, 3]), Some("u"), 3).unwrap().id, 1);
        assert_eq!(admit_client(&r, &set(&[2]), None, 2), Err(SessionFull));
    }

    #[test]
    fn frozen_roster_admits_only_its_known_uuids() {
        let mut r = record();
        r.reserved.insert("a".into(), 1);
        r.reserved.insert("c".into(), 3);
        r.group.frozen = Some(vec![1, 2]);
        assert_eq!(admit_client(&r, &set(&[2]), None, 8), Err(SessionFull));
        assert_eq!(admit_client(&r, &set(&[2]), Some("new"), 8), Err(SessionFull));
        assert_eq!(admit_client(&r, &set(&[2]), Some("a"), 8).unwrap().id, 1);
        assert_eq!(admit_client(&r, &set(&[2]), Some("c"), 8), Err(SessionFull));
    }

    #[test]
    fn queue_bound_is_inclusive() {
        assert!(queue_admits(0, 0, MAX_QUEUED_BYTES));
        assert!(!queue_admits(1, 0, MAX_QUEUED_BYTES));
        assert!(!queue_admits(usize::MAX, 0, 1));
        assert!(queue_admits(0, MAX_QUEUED_MESSAGES - 1, 0));
        assert!(!queue_admits(0, MAX_QUEUED_MESSAGES, 0), "4,096 empty messages fill it too");
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let mut b = TokenBucket::full(2.0, 0.0);
        assert!(b.take(0.0, 10.0, 2.0));
        assert!(b.take(0.0, 10.0, 2.0));
        assert!(!b.take(0.0, 10.0, 2.0));
        assert!(b.take(100.0, 10.0, 2.0));
        assert!(!b.take(100.0, 10.0, 2.0));
    }
}
