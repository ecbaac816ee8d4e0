//! The session state machine, without any runtime types: who may connect as
//! host or client, which client id they get, what is kept while the host is
//! away and when the object must wake up next.
//!
//! Two kinds of state exist, because a hibernated Durable Object loses its
//! memory: `SessionRecord` (one per session, in Durable Object storage) and
//! `SocketInfo` (one per socket, in the socket's attachment).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::matchmaking::Group;
use crate::protocol::MAX_QUEUED_BYTES;
use crate::secrets::secrets_match;
use crate::stats::SessionCounts;

/// What the session keeps in storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub secret: String,
    /// Whether the session waits for its host when the host's socket closes.
    pub reconnect: bool,
    /// Bumped at each host connect, so the close of a replaced host socket is
    /// recognised as stale and ignored.
    pub host_generation: u32,
    /// Set while no host is connected: when the session ends (epoch ms).
    pub host_away_until: Option<f64>,
    /// Client uuid → the client id it keeps for the session's life.
    pub reserved: BTreeMap<String, u32>,
    /// Bytes of client messages queued for the absent host.
    pub queued_bytes: usize,
    /// Source of socket tokens, unique within the session.
    pub next_socket_token: u64,
    /// Matchmaking: search, links, frozen capacity.
    #[serde(default)]
    pub group: Group,
    /// When the figures for `/stats` are next reported (epoch ms), if they changed.
    #[serde(default)]
    pub stats_due: Option<f64>,
    /// What was last reported, so unchanged figures are not sent again.
    #[serde(default)]
    pub stats_reported: SessionCounts,
}

impl SessionRecord {
    pub fn new(id: String, secret: String, reconnect: bool) -> Self {
        SessionRecord {
            id,
            secret,
            reconnect,
            host_generation: 0,
            host_away_until: None,
            reserved: BTreeMap::new(),
            queued_bytes: 0,
            next_socket_token: 0,
            group: Group::default(),
            stats_due: None,
            stats_reported: SessionCounts::default(),
        }
    }

    pub fn next_token(&mut self) -> u64 {
        self.next_socket_token += 1;
        self.next_socket_token
    }

    /// True once the reconnect window has run out.
    pub fn expired(&self, now: f64) -> bool {
        self.host_away_until.is_some_and(|deadline| deadline <= now)
    }
}

/// Who a socket is. Stored in the socket's attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub role: Role,
    /// Unique within the session; tells sockets apart when one is closing.
    pub token: u64,
    pub keep_alive: Option<String>,
    /// When the next keep-alive is due (epoch ms); 0 when there is none.
    pub keep_alive_due: f64,
    /// Set when the relay has already closed the socket and accounted for it,
    /// so the runtime's later close event changes nothing.
    pub closed: bool,
    pub bucket: TokenBucket,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Role {
    Host { generation: u32 },
    Client { id: u32, uuid: Option<String> },
}

impl SocketInfo {
    pub fn new(
        role: Role,
        token: u64,
        keep_alive: Option<String>,
        now: f64,
        settings: &crate::settings::Settings,
    ) -> Self {
        let keep_alive_due = if keep_alive.is_some() { now + settings.keep_alive_ms } else { 0.0 };
        SocketInfo {
            role,
            token,
            keep_alive,
            keep_alive_due,
            closed: false,
            bucket: TokenBucket::full(settings.rate_burst, now),
        }
    }

    pub fn client_id(&self) -> Option<u32> {
        match self.role {
            Role::Client { id, .. } => Some(id),
            Role::Host { .. } => None,
        }
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
/// back; any other client the smallest id that is neither connected nor kept
/// for a uuid. While the session's capacity is frozen (matchmaking), only a
/// known uuid may come back, and only into the frozen range.
pub fn admit_client(
    record: &SessionRecord,
    connected: &BTreeSet<u32>,
    uuid: Option<&str>,
    max_clients: u32,
) -> Result<ClientAdmission, SessionFull> {
    if let Some(id) = uuid.and_then(|u| record.reserved.get(u)).copied() {
        if record.group.frozen_span.is_some_and(|span| id > span) {
            return Err(SessionFull);
        }
        return Ok(ClientAdmission { id, replaces: connected.contains(&id), reserve: None });
    }
    if record.group.frozen_span.is_some() {
        return Err(SessionFull);
    }
    let kept: BTreeSet<u32> = record.reserved.values().copied().collect();
    let id = (1..=max_clients).find(|id| !connected.contains(id) && !kept.contains(id)).ok_or(SessionFull)?;
    Ok(ClientAdmission { id, replaces: false, reserve: uuid.map(str::to_string) })
}

/// Whether one more queued line of `len` bytes fits the per-session bound.
pub fn queue_admits(queued_bytes: usize, len: usize) -> bool {
    queued_bytes.saturating_add(len) <= MAX_QUEUED_BYTES
}

/// The single alarm time: the earliest of all deadlines, if any.
pub fn next_alarm(deadlines: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    deadlines.into_iter().flatten().fold(None, |earliest: Option<f64>, t| Some(earliest.map_or(t, |e| e.min(t))))
}

/// Per-socket message rate limit; lives in the attachment so hibernation does
/// not reset it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
        let elapsed = (now - self.updated).max(0.0) / 1000.0;
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
        // u is away: its id stays out of reach.
        assert_eq!(admit_client(&r, &set(&[]), None, 8).unwrap().id, 2);
        // u comes back while away, and while still connected.
        assert_eq!(
            admit_client(&r, &set(&[2]), Some("u"), 8).unwrap(),
            ClientAdmission { id: 1, replaces: false, reserve: None }
        );
        assert!(admit_client(&r, &set(&[1, 2]), Some("u"), 8).unwrap().replaces);
        // A returning uuid is let in even when every other id is taken.
        assert_eq!(admit_client(&r, &set(&[2, 3]), Some("u"), 3).unwrap().id, 1);
        assert_eq!(admit_client(&r, &set(&[2]), None, 2), Err(SessionFull));
    }

    #[test]
    fn frozen_capacity_admits_only_known_uuids_in_range() {
        let mut r = record();
        r.reserved.insert("a".into(), 1);
        r.reserved.insert("c".into(), 3);
        r.group.frozen_span = Some(2);
        assert_eq!(admit_client(&r, &set(&[2]), None, 8), Err(SessionFull));
        assert_eq!(admit_client(&r, &set(&[2]), Some("new"), 8), Err(SessionFull));
        assert_eq!(admit_client(&r, &set(&[2]), Some("a"), 8).unwrap().id, 1);
        assert_eq!(admit_client(&r, &set(&[2]), Some("c"), 8), Err(SessionFull));
    }

    #[test]
    fn queue_bound_is_inclusive() {
        assert!(queue_admits(0, MAX_QUEUED_BYTES));
        assert!(!queue_admits(1, MAX_QUEUED_BYTES));
        assert!(!queue_admits(usize::MAX, 1));
    }

    #[test]
    fn alarm_is_the_earliest_deadline() {
        assert_eq!(next_alarm([None, None]), None);
        assert_eq!(next_alarm([Some(5.0), None, Some(3.0)]), Some(3.0));
    }

    #[test]
    fn expiry() {
        let mut r = record();
        assert!(!r.expired(1e15));
        r.host_away_until = Some(100.0);
        assert!(!r.expired(99.0));
        assert!(r.expired(100.0));
    }

    #[test]
    fn token_bucket_refills_at_the_rate() {
        let mut b = TokenBucket::full(2.0, 0.0);
        assert!(b.take(0.0, 10.0, 2.0));
        assert!(b.take(0.0, 10.0, 2.0));
        assert!(!b.take(0.0, 10.0, 2.0));
        assert!(b.take(100.0, 10.0, 2.0)); // 0.1 s at 10/s = 1 token
        assert!(!b.take(100.0, 10.0, 2.0));
    }
}
