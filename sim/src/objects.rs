//! The simulated Durable Objects: each holds its core (or not: memory is lost
//! on eviction and reset), what its storage holds, its alarm, and for a
//! session its sockets. The storage survives everything but its own faults.

use std::collections::BTreeMap;

use askutron_core::aggregator::{AggregatorCore, Entry, Role};
use askutron_core::calls::LinkId;
use askutron_core::matchmaker::{Job, MatchmakerCore, Search};
use askutron_core::record::{Obligations, SessionRecord, Stored};
use askutron_core::session::{SessionCore, Token};
use askutron_core::settings::Settings;

use crate::sockets::SockState;

/// What every simulated object has.
#[derive(Debug, Clone, Default)]
pub struct Life {
    /// Bumped at each reset: answers to an earlier incarnation's calls are dropped.
    pub incarnation: u64,
    /// Code version it runs (a deploy raises the relay's; a reset brings it up to date).
    pub version: u32,
    /// When it was last reset: calls in flight to it then fail.
    pub reset_at: f64,
    /// The one alarm, as stored.
    pub alarm: Option<f64>,
}

/// One row of a session's queue for its absent host.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    pub seq: u64,
    pub line: String,
    /// Counts against the bound (a message), or not (a link line).
    pub counted: bool,
    pub bytes: usize,
}

/// A storage operation a test makes fail once, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Reading the record when the object wakes.
    Read,
    Persist,
    Enqueue,
    /// Reading the queue for a take-over.
    ReplayRead,
    /// Deleting the queue after it was sent.
    ReplayDelete,
    Alarm,
}

#[derive(Debug, Clone)]
pub struct SessionObject {
    pub sid: String,
    /// Operations that fail the next time they run.
    pub fail: std::collections::BTreeSet<Op>,
    pub core: Option<SessionCore>,
    pub record: Option<String>,
    pub owed: Option<String>,
    /// Resume streams as stored (section 7), by key.
    pub streams: BTreeMap<String, String>,
    pub queue: Vec<QueueRow>,
    pub next_row: u64,
    pub sockets: BTreeMap<Token, SockState>,
    pub life: Life,
}

impl SessionObject {
    pub fn new(sid: &str, version: u32) -> Self {
        SessionObject {
            sid: sid.to_string(),
            fail: Default::default(),
            core: None,
            record: None,
            owed: None,
            streams: BTreeMap::new(),
            queue: Vec::new(),
            next_row: 1,
            sockets: BTreeMap::new(),
            life: Life { version, ..Life::default() },
        }
    }

    /// What storage holds, read back (a stored shape that does not read is a bug).
    pub fn read(&self) -> (Option<SessionRecord>, Obligations) {
        let record = self.record.as_deref().map(|json| SessionRecord::from_json(json).expect("stored record reads"));
        let owed = self.owed.as_deref().map(|json| serde_json::from_str(json).expect("stored obligations read"));
        (record, owed.unwrap_or_default())
    }

    /// Everything storage holds, as the executor reads it back.
    pub fn read_all(&self) -> Stored {
        let (record, owed) = self.read();
        let streams = self
            .streams
            .iter()
            .map(|(k, json)| (k.clone(), serde_json::from_str(json).expect("stream reads")))
            .collect();
        Stored { record, owed, streams }
    }

    /// Rebuilds the core from storage and the live sockets' attachments
    /// (with the last heartbeat the runtime answered for each).
    pub fn restore(&mut self, settings: Settings, readable: bool) {
        let sockets = self
            .sockets
            .values()
            .filter(|s| s.is_open())
            .filter_map(|s| {
                s.attachment.clone().map(|mut info| {
                    info.heartbeat = s.last_ping;
                    info
                })
            })
            .collect();
        let stored = if readable { Ok(self.read_all()) } else { Err("storage read failed".to_string()) };
        self.core = Some(SessionCore::restore(settings, stored, sockets));
    }

    /// The live session, from memory if the core is there, else from storage.
    pub fn session(&self) -> Option<SessionRecord> {
        match &self.core {
            Some(core) if !core.is_unreadable() => core.record().cloned(),
            _ => self.read().0,
        }
    }

    /// Calls under way, links to deliver, a search or obligations to settle.
    /// An object whose memory is gone is busy if what it stored says so.
    pub fn busy(&self) -> bool {
        match &self.core {
            Some(core) => core.busy(),
            None => {
                let (record, owed) = self.read();
                let links = record.is_some_and(|r| {
                    r.group.master.as_ref().is_some_and(|m| !m.confirmed || !m.outbox.is_empty())
                        || r.group.slaves.iter().any(|s| !s.outbox.is_empty())
                });
                links || !owed.closing.is_empty() || owed.cancel.is_some()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct MatchmakerObject {
    pub core: Option<MatchmakerCore>,
    pub searches: BTreeMap<String, String>,
    pub jobs: BTreeMap<LinkId, String>,
    pub next_seq: u64,
    pub next_link: LinkId,
    pub life: Life,
}

impl MatchmakerObject {
    pub fn new() -> Self {
        MatchmakerObject {
            core: None,
            searches: BTreeMap::new(),
            jobs: BTreeMap::new(),
            next_seq: 0,
            next_link: 0,
            life: Life::default(),
        }
    }

    pub fn restore(&mut self, settings: Settings, has_steam_key: bool) {
        let searches: Vec<Search> =
            self.searches.values().map(|j| serde_json::from_str(j).expect("search reads")).collect();
        let jobs: Vec<Job> = self.jobs.values().map(|j| serde_json::from_str(j).expect("job reads")).collect();
        self.core =
            Some(MatchmakerCore::restore(settings, has_steam_key, searches, jobs, self.next_seq, self.next_link));
    }

    /// Links being announced: in memory, or stored and not so old that the
    /// Matchmaker gives them up as it wakes (a row whose deletion failed).
    pub fn announcing(&self, now: f64) -> usize {
        match &self.core {
            Some(core) => core.jobs().len(),
            None => self
                .jobs
                .values()
                .filter_map(|json| serde_json::from_str::<Job>(json).ok())
                .filter(|j| now - j.since < askutron_core::matchmaker::UNDO_TIMEOUT_MS)
                .count(),
        }
    }

    pub fn busy(&self, now: f64) -> bool {
        self.announcing(now) > 0
    }
}

impl Default for MatchmakerObject {
    fn default() -> Self {
        MatchmakerObject::new()
    }
}

#[derive(Debug, Clone)]
pub struct AggregatorObject {
    pub role: Role,
    pub core: Option<AggregatorCore>,
    pub entries: BTreeMap<String, Entry>,
    pub life: Life,
}

impl AggregatorObject {
    pub fn new(role: Role) -> Self {
        AggregatorObject { role, core: None, entries: BTreeMap::new(), life: Life::default() }
    }

    pub fn restore(&mut self) {
        self.core = Some(AggregatorCore::restore(self.role, self.entries.clone().into_iter().collect()));
    }
}
