//! The session protocol (PROTOCOL.md sections 2–6) as a pure state machine.
//!
//! [`SessionCore::handle`] takes one [`Input`] (a connect, a frame, a close,
//! the alarm, a call from another object, the answer to a call, a storage
//! failure) at a given time and returns the ordered [`Effect`]s the Durable
//! Object must carry out. No I/O, clock or randomness happens here: the time
//! and fresh secrets come in with the inputs, so every behaviour is tested
//! natively, on the simulator (`askutron-sim`).
//!
//! Effect order is the contract: e.g. a host connect yields `Accept`, then
//! `session:`, `secret:`, the link lines, the `connected:` lines, the queue
//! replay, and last the HTTP answer. Memory here is only what hibernation may
//! lose: the record is persisted (`Effect::Persist`) whenever it changes, and
//! each socket's facts travel in its attachment (`Effect::Attach`).
//!
//! One file per concern: `hosting` (section 2), `clients` (3), `relay` and
//! `queue` (2, 3, 5), `commands` and `links` (4), `channels` (the calls that
//! carry a link), `search` and `figures` (what the Matchmaker and the
//! aggregators must know), `timers` (6), `faults` (storage failures),
//! `sockets` (bookkeeping), `calls` (what comes in from other objects).

mod calls;
mod channels;
mod clients;
mod commands;
mod effects;
mod faults;
mod figures;
mod hosting;
mod inputs;
mod limits;
mod link_messages;
mod links;
mod queue;
mod relay;
mod resume;
pub mod search;
mod sockets;
mod timers;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

pub use effects::{Answer, CallBody, Effect, Peer};
pub use hosting::EndReason;
pub use inputs::{Frame, Input, QueueSource, StorageFailure};

use crate::calls::LinkId;
use crate::channel::Outbound;
use crate::journal::Event;
use crate::record::{Obligations, Role, SessionRecord, SocketInfo, Stored};
use crate::retry::Backoff;
use crate::settings::Settings;
use crate::stream::Stream;
use effects::Out;

/// Names a socket within its session (its attachment's `token`).
pub type Token = u64;
/// The token of a socket that is refused right after its upgrade (4003): it
/// is never hibernated or counted. Real tokens start at 1.
pub const EPHEMERAL: Token = 0;
/// Names a call this session made, so its answer finds its way back.
pub type CallId = u64;

/// What a call in flight was for.
#[derive(Debug, Clone, PartialEq)]
enum InFlight {
    /// A batch of a link's messages.
    Link(LinkId),
    /// The search state `(epoch, searching)` to the Matchmaker.
    Search(u64, bool),
    /// A search the ended session owed a cancel for.
    Cancel(u64),
    /// The figures to the session's aggregator, as counted at `at`.
    Report(crate::stats::SessionCounts, u32, f64),
    /// Zero figures to an aggregator that no longer should count the session.
    Unreport(u32),
    /// `/stats` for the host.
    StatsQuery,
}

/// One session's state machine.
#[derive(Debug, Clone)]
pub struct SessionCore {
    settings: Settings,
    /// The live session, if there is one.
    record: Option<SessionRecord>,
    /// What is owed to other objects, with or without a live session.
    owed: Obligations,
    /// Set when the stored state could not be read: nothing is decided until
    /// it can be (the executor reads again at the next event).
    unreadable: Option<String>,
    /// Live sockets (not closed by the relay, not closed by their peer).
    sockets: BTreeMap<Token, SocketInfo>,
    host: Option<Token>,
    clients: BTreeMap<u32, Token>,
    /// The alarm as this incarnation last set it; `None` = not known (after a
    /// wake-up the stored alarm is whatever the last incarnation set).
    alarm: Option<Option<f64>>,
    /// Something a deadline depends on changed since the alarm was computed.
    timers_dirty: bool,
    /// The record has been squared with the sockets that really exist, and
    /// the links' senders rebuilt.
    reconciled: bool,
    /// The highest token handed out or seen in an attachment.
    last_token: Token,
    /// When the figures are next reported, if they changed.
    stats_due: Option<f64>,
    /// Senders of this session's links, and of links that ended here whose
    /// last message is not yet acknowledged, by link.
    channels: BTreeMap<LinkId, Outbound>,
    calls: BTreeMap<CallId, InFlight>,
    next_call: CallId,
    search_retry: Backoff,
    report_retry: Backoff,
    cancel_retry: Backoff,
    unreport_retry: Backoff,
    /// A write failed: the next event writes again, and an alarm brings that
    /// event soon if nothing else does.
    persist_again: Option<f64>,
    /// Stored work is under way (messages that change link state, the
    /// search's state, what is owed): the object checks on it at this time
    /// even if no answer comes (a reset drops answers with its memory).
    checkup_at: Option<f64>,
    /// Resume streams (section 7) by key, the ones changed since they were
    /// stored, and when they are next stored.
    streams: BTreeMap<String, Stream>,
    streams_dirty: BTreeSet<String>,
    streams_due: Option<f64>,
    /// The input being handled is a call (or a storage failure during one):
    /// its answer may still change.
    answering_call: bool,
}

impl SessionCore {
    /// A core for an object that is (re)constructed: what storage held (or
    /// why it could not be read), and the attachments of the sockets the
    /// runtime still holds.
    pub fn restore(settings: Settings, stored: Result<Stored, String>, sockets: Vec<SocketInfo>) -> Self {
        let (record, owed, streams, unreadable) = match stored {
            Ok(s) => (s.record, s.owed, s.streams, None),
            Err(error) => (None, Obligations::default(), Vec::new(), Some(error)),
        };
        let mut core = SessionCore {
            settings,
            record,
            owed,
            unreadable,
            sockets: BTreeMap::new(),
            host: None,
            clients: BTreeMap::new(),
            alarm: None,
            timers_dirty: true,
            reconciled: false,
            last_token: 0,
            stats_due: None,
            channels: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            search_retry: search::backoff(),
            report_retry: figures::backoff(),
            cancel_retry: search::backoff(),
            unreport_retry: figures::backoff(),
            persist_again: None,
            answering_call: false,
            checkup_at: None,
            streams: BTreeMap::new(),
            streams_dirty: BTreeSet::new(),
            streams_due: None,
        };
        // The host is the socket of the record's generation; with the record
        // unreadable, the newest host socket still open.
        let newest_host =
            sockets.iter().filter(|i| !i.closed && i.is_host()).map(|i| i.role.clone()).max_by_key(|r| match r {
                Role::Host { generation } => *generation,
                _ => 0,
            });
        let generation = match (&core.record, &core.unreadable, newest_host) {
            (Some(r), _, _) => Some(r.host_generation),
            (None, Some(_), Some(Role::Host { generation })) => Some(generation),
            _ => None,
        };
        core.last_token = sockets.iter().map(|i| i.token).max().unwrap_or(0);
        for info in sockets.into_iter().filter(|i| !i.closed) {
            match info.role {
                Role::Host { generation: g } if Some(g) == generation => core.host = Some(info.token),
                Role::Host { .. } => continue,
                Role::Client { id, .. } => {
                    let newer = core.clients.get(&id).is_none_or(|&t| t < info.token);
                    if newer {
                        core.clients.insert(id, info.token);
                    }
                }
            }
            core.sockets.insert(info.token, info);
        }
        // A stream whose socket is still connected was only hibernated;
        // one whose socket vanished unseen may have lost its last second.
        for (key, stream) in streams {
            let alive = core.sockets.values().any(|i| i.stream_key().as_deref() == Some(key.as_str()));
            let stream = stream.restored(alive);
            // Numbering went on past the stored reservation: until a new
            // one is stored, another reset would restore the old one and
            // number again what this incarnation sent. Stored with the first
            // event, before any frame of it can leave.
            if stream.unaccounted.is_some() {
                core.streams_dirty.insert(key.clone());
                core.streams_due = Some(f64::MIN);
            }
            core.streams.insert(key, stream);
        }
        core
    }

    /// A core for an object that never stored anything.
    pub fn empty(settings: Settings) -> Self {
        SessionCore::restore(settings, Ok(Stored::default()), Vec::new())
    }

    pub fn record(&self) -> Option<&SessionRecord> {
        self.record.as_ref()
    }

    /// What the session still owes other objects.
    pub fn obligations(&self) -> &Obligations {
        &self.owed
    }

    /// The stored state could not be read; the executor should read again.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable.is_some()
    }

    pub fn socket(&self, token: Token) -> Option<&SocketInfo> {
        self.sockets.get(&token)
    }

    pub fn host_token(&self) -> Option<Token> {
        self.host
    }

    /// Client ids with a live socket, ascending.
    pub fn connected_ids(&self) -> BTreeSet<u32> {
        self.clients.keys().copied().collect()
    }

    /// The senders of this session's links, by link (for tests and figures).
    pub fn channels(&self) -> &BTreeMap<LinkId, Outbound> {
        &self.channels
    }

    /// Calls this session has in flight.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Work that finishes by itself given time: calls under way, link
    /// messages not yet acknowledged, a link not yet confirmed, a search
    /// state the Matchmaker has not acknowledged, obligations to deliver.
    /// (Figures are not counted: they are reported on a timer.)
    pub fn busy(&self) -> bool {
        !self.calls.is_empty()
            || self.channels.values().any(|c| !c.is_idle() && !c.is_paused())
            || self.record.as_ref().is_some_and(|r| r.group.master.as_ref().is_some_and(|m| !m.confirmed))
            || self.search_unsynced()
            || !self.owed.closing.is_empty()
            || self.owed.cancel.is_some()
    }

    pub fn handle<'a>(&mut self, now: f64, input: Input<'a>) -> Vec<Effect<'a>> {
        let mut out = Vec::new();
        if let Some(error) = self.unreadable.clone() {
            self.while_unreadable(now, &error, input, &mut out);
            return out;
        }
        if !self.reconciled {
            self.reconciled = true;
            self.reconcile(now, &mut out);
        }
        match &input {
            Input::Call(_) => self.answering_call = true,
            Input::StorageFailed(_) => {}
            _ => self.answering_call = false,
        }
        match input {
            Input::HostConnect { params, fresh_secret } => self.host_connect(now, params, fresh_secret, &mut out),
            Input::ClientConnect { params } => self.client_connect(now, params, &mut out),
            Input::Frame { socket, frame } => self.frame(now, socket, frame, &mut out),
            Input::Closed { socket, code } => self.peer_closed(now, socket, code, &mut out),
            Input::Errored { socket } => self.peer_errored(now, socket, &mut out),
            Input::Alarm => self.alarm_fired(now, &mut out),
            Input::Call(call) => self.on_call(now, call, &mut out),
            Input::Answer { id, outcome } => self.on_answer(now, id, outcome, &mut out),
            Input::StorageFailed(failure) => self.storage_failed(now, failure, &mut out),
            Input::Replayed { host, lines } => self.replayed(now, host, lines),
        }
        self.count_sent(now, &out);
        self.flush_calls(now, &mut out);
        self.store_streams(now, &mut out);
        if self.persist_again.take().is_some() {
            self.persist(&mut out);
        }
        self.schedule(now, &mut out);
        out
    }

    // ---- helpers shared by the concerns -------------------------------------------

    fn sid(&self) -> &str {
        self.record.as_ref().map_or(self.owed.sid.as_str(), |r| r.id.as_str())
    }

    fn send<'a>(out: &mut Out<'a>, to: Token, text: impl Into<Cow<'a, str>>) {
        out.push(Effect::Send { to, text: text.into() });
    }

    /// Sends a line to the host if one is connected; true if it was sent.
    fn tell_host<'a>(&self, out: &mut Out<'a>, text: impl Into<Cow<'a, str>>) -> bool {
        match self.host {
            Some(host) => {
                Self::send(out, host, text);
                true
            }
            None => false,
        }
    }

    /// Stores the record and obligations, with each link's unacknowledged
    /// durable messages copied in from its sender.
    fn persist(&mut self, out: &mut Out<'_>) {
        self.timers_dirty = true;
        if let Some(record) = self.record.as_mut() {
            if let Some(master) = record.group.master.as_mut() {
                master.outbox = self.channels.get(&master.link).map(Outbound::durable).unwrap_or_default();
            }
            for slave in record.group.slaves.iter_mut() {
                slave.outbox = self.channels.get(&slave.link).map(Outbound::durable).unwrap_or_default();
            }
        }
        for closing in self.owed.closing.iter_mut() {
            closing.outbox = self.channels.get(&closing.link).map(Outbound::durable).unwrap_or_default();
        }
        if !self.owed.is_empty() && self.owed.sid.is_empty() {
            self.owed.sid = self.sid().to_string();
        }
        out.push(Effect::Persist);
    }

    /// What storage should hold now: the record and the obligations.
    pub fn stored(&self) -> (Option<&SessionRecord>, &Obligations) {
        (self.record.as_ref(), &self.owed)
    }

    fn call(&mut self, to: Peer, body: CallBody, purpose: InFlight, out: &mut Out<'_>) {
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(id, purpose);
        self.timers_dirty = true;
        out.push(Effect::Call { id, to, body });
    }
}

/// A socket token no socket of this object has had: past every token still
/// known (closed sockets the runtime holds until their TCP is down included),
/// and from the clock (1,000 a millisecond, far below 2^53), so a session made
/// after a wake-up never reuses one either. Nothing needs storing for it.
fn new_token(last: &mut Token, now: f64) -> Token {
    let token = (*last + 1).max((now.max(0.0) as u64).saturating_mul(1000));
    *last = token;
    token
}

fn respond(out: &mut Out<'_>, status: u16, body: &str) {
    out.push(Effect::Respond(Answer::Text { status, body: body.to_string() }));
}

/// An HTTP refusal of a connect, logged with its reason.
fn refuse_http(out: &mut Out<'_>, status: u16, body: &str) {
    out.push(Effect::Log(Event::info("request_refused").with("status", status).with("reason", body)));
    respond(out, status, body);
}
