//! The session protocol (PROTOCOL.md sections 2–6) as a pure state machine.
//!
//! [`SessionCore::handle`] takes one [`Input`] (a connect, a frame, a close,
//! the alarm, a call from another object, the answer to a call, a storage
//! failure) at a given time and returns the ordered [`Effect`]s the Durable
//! Object must carry out. No I/O, clock or randomness happens here: the time
//! and fresh secrets come in with the inputs, so every behaviour is tested
//! natively (`crate::scenarios`).
//!
//! Effect order is the contract: e.g. a host connect yields `Accept`, then
//! `session:`, `secret:`, the `connected:` replay, the queue replay, and last
//! the HTTP answer. Memory here is only what hibernation may lose: the record
//! is persisted (`Effect::Persist`) whenever it changes, and each socket's
//! facts travel in its attachment (`Effect::Attach`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::calls::{
    MatchmakerCall, Outcome, SessionCall, SlaveEvent, CLIENT_UNKNOWN, CONFLICT_STATUS, GONE_STATUS, NOT_LINKED_YET,
    OK_STATUS, POOL_FULL_STATUS, QUEUE_FULL_STATUS,
};
use crate::journal::Event;
use crate::links::{MasterLink, SlaveLink};
use crate::matchmaking::Search;
use crate::protocol::{
    client_number, http, parse_host_frame, say, ClientParams, Close, HostCommand, HostFrame, HostParams, ParamError,
    CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED, CLOSE_REPLACED, CLOSE_REPLAY_FAILED,
    CLOSE_SESSION_CLOSED, CLOSE_SESSION_FULL, CLOSE_STORAGE_FAILED, CLOSE_TAKEN_OVER, CLOSE_TOO_BIG,
};
use crate::record::{
    admit_client, admit_host, queue_admits, HostAdmission, HostRejection, Role, SessionRecord, SocketInfo,
};
use crate::settings::Settings;
use crate::stats::SessionCounts;

/// Names a socket within its session (its attachment's `token`).
pub type Token = u64;
/// The token of a socket that is refused right after its upgrade (4003): it
/// is never hibernated or counted. Real tokens start at 1.
pub const EPHEMERAL: Token = 0;

/// Figures reach the Matchmaker at most this long after they change.
pub const STATS_DELAY_MS: f64 = 1_000.0;
/// A keep-alive due within this much of an alarm is sent by that alarm, so one
/// wake-up serves sockets whose periods started close together.
const KEEP_ALIVE_SLACK_MS: f64 = 5.0;
/// A slave's call that reached its master before the master heard of the link
/// (`NOT_LINKED_YET`) is sent again after this long, up to `LINK_RETRIES` times.
pub const LINK_RETRY_MS: f64 = 25.0;
pub const LINK_RETRIES: u32 = 80;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary,
    TooBig,
}

/// Everything that can happen to a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// `GET /session?...` with an upgrade. `fresh_secret` is used if the
    /// session is created (randomness comes from outside).
    HostConnect {
        params: HostParams,
        fresh_secret: String,
    },
    /// `GET /session/<sid>?...` with an upgrade.
    ClientConnect {
        params: ClientParams,
    },
    Frame {
        socket: Token,
        frame: Frame<'a>,
    },
    /// The peer closed the socket (`code` as it sent it).
    Closed {
        socket: Token,
        code: u16,
    },
    Errored {
        socket: Token,
    },
    Alarm,
    /// A call from another object; answered with `Effect::Respond`.
    Call(SessionCall),
    /// The answer to a call this session made.
    Answer {
        call: OutgoingCall,
        outcome: Outcome,
    },
    /// An effect's storage operation failed.
    StorageFailed(StorageFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StorageFailure {
    Persist(String),
    /// A message could not be queued; `bytes` were counted for it.
    Enqueue {
        sender: Option<Token>,
        bytes: usize,
        error: String,
    },
    /// The queue could not be read for the host that took over; nothing was
    /// deleted. `bytes`/`lines` are what the queue held.
    Replay {
        host: Token,
        bytes: usize,
        lines: usize,
        error: String,
    },
    Alarm(String),
}

/// Who a call goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Peer {
    Session(String),
    Matchmaker,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallBody {
    Session(SessionCall),
    Matchmaker(MatchmakerCall),
}

/// Why a call was made: decides what its answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// Nothing to do with the answer beyond logging a failure.
    Notice,
    /// `/join-session`: a refusal ends the search.
    Search,
    /// `/stats`: the answer is for the host.
    Stats,
    /// A call to a linked session: if it is gone, the link ends.
    Linked,
    /// A master's host wrote to a slave's client (`digits` as it wrote them).
    ToSlaveClient { digits: String },
    /// A slave client's message forwarded to the master; `sender` is closed
    /// with 1013 if the master's queue is full.
    Forwarded { sender: Token },
}

/// A call to another object, as the executor sends it and hands it back.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingCall {
    pub to: Peer,
    pub body: CallBody,
    pub purpose: Purpose,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// For a retry: not before this time (epoch ms), and ahead of any call
    /// made since, so a link's calls stay in order.
    pub retry_at: Option<f64>,
}

/// The answer to an HTTP request (a connect or a call).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Complete the upgrade with the socket accepted as `socket`.
    Upgrade {
        socket: Token,
    },
    Text {
        status: u16,
        body: String,
    },
}

impl Answer {
    /// The answer as the calling object sees it.
    pub fn outcome(self) -> Outcome {
        match self {
            Answer::Upgrade { .. } => Outcome::Status(101, String::new()),
            Answer::Text { status, body } => Outcome::Status(status, body),
        }
    }
}

/// What the Durable Object must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<'a> {
    /// Accept the new socket of this request as `socket`: with its attachment
    /// through the hibernation API, or plainly when `info` is `None` (a socket
    /// that is refused at once).
    Accept {
        socket: Token,
        info: Option<SocketInfo>,
    },
    Send {
        to: Token,
        text: Cow<'a, str>,
    },
    /// Send `<client>: <message>` (`say::from_client`): the relay path, kept
    /// apart so an executor can build the line without copying the message.
    SendFromClient {
        to: Token,
        client: u32,
        message: &'a str,
    },
    Close {
        to: Token,
        close: Close,
    },
    /// Store the socket's facts in its attachment.
    Attach {
        socket: Token,
        info: SocketInfo,
    },
    /// Store the record (`SessionCore::record`).
    Persist,
    /// Forget the session: record and queue.
    Erase,
    /// Add a line to the queue for the absent host.
    Enqueue {
        line: String,
        sender: Option<Token>,
        bytes: usize,
    },
    /// Send the whole queue to `to` in order, then clear it.
    Replay {
        to: Token,
        bytes: usize,
        lines: usize,
    },
    Call(OutgoingCall),
    SetAlarm(Option<f64>),
    Respond(Answer),
    Log(Event),
}

type Out<'a> = Vec<Effect<'a>>;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    HostLeftWithoutReconnect,
    ReconnectWindowExpired,
    NeverUsed,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::HostLeftWithoutReconnect => "host left (reconnect=false)",
            EndReason::ReconnectWindowExpired => "reconnect window expired",
            EndReason::NeverUsed => "host gone before using it; id claimed again",
        }
    }
}

/// One session's state machine.
#[derive(Debug, Clone)]
pub struct SessionCore {
    settings: Settings,
    record: Option<SessionRecord>,
    /// Live sockets (not closed by the relay, not closed by their peer).
    sockets: BTreeMap<Token, SocketInfo>,
    host: Option<Token>,
    clients: BTreeMap<u32, Token>,
    /// The alarm as this incarnation last set it; `None` = not known (after a
    /// wake-up the stored alarm is whatever the last incarnation set).
    alarm: Option<Option<f64>>,
    /// Something a deadline depends on changed since the alarm was computed.
    timers_dirty: bool,
    /// The record has been squared with the sockets that really exist.
    reconciled: bool,
    /// The highest token handed out or seen in an attachment.
    last_token: Token,
    /// When the figures for `/stats` are next reported, if they changed.
    stats_due: Option<f64>,
}

impl SessionCore {
    /// A core for an object that is (re)constructed: the stored record, if
    /// any, and the attachments of the sockets the runtime still holds.
    pub fn restore(settings: Settings, record: Option<SessionRecord>, sockets: Vec<SocketInfo>) -> Self {
        let mut core = SessionCore {
            settings,
            record,
            sockets: BTreeMap::new(),
            host: None,
            clients: BTreeMap::new(),
            alarm: None,
            timers_dirty: false,
            reconciled: false,
            last_token: 0,
            stats_due: None,
        };
        let generation = core.record.as_ref().map(|r| r.host_generation);
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
        core
    }

    pub fn record(&self) -> Option<&SessionRecord> {
        self.record.as_ref()
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

    pub fn handle<'a>(&mut self, now: f64, input: Input<'a>) -> Vec<Effect<'a>> {
        let mut out = Vec::new();
        if !self.reconciled {
            self.reconciled = true;
            self.reconcile(now, &mut out);
        }
        match input {
            Input::HostConnect { params, fresh_secret } => self.host_connect(now, params, fresh_secret, &mut out),
            Input::ClientConnect { params } => self.client_connect(now, params, &mut out),
            Input::Frame { socket, frame } => self.frame(now, socket, frame, &mut out),
            Input::Closed { socket, code } => {
                if self.sockets.contains_key(&socket) {
                    self.mark_closed(socket, &mut out);
                    // Complete the handshake the peer started; 1005/1006 may not be sent.
                    let code = if code == 1005 || code == 1006 { 1000 } else { code };
                    out.push(Effect::Close { to: socket, close: Close { code, reason: "bye" } });
                    self.depart(now, socket, &mut out);
                }
            }
            Input::Errored { socket } => {
                if self.sockets.contains_key(&socket) {
                    self.mark_closed(socket, &mut out);
                    out.push(Effect::Close { to: socket, close: Close { code: 1011, reason: "socket error" } });
                    self.depart(now, socket, &mut out);
                }
            }
            Input::Alarm => self.alarm_fired(now, &mut out),
            Input::Call(call) => self.call(call, &mut out),
            Input::Answer { call, outcome } => self.answer(now, call, outcome, &mut out),
            Input::StorageFailed(failure) => self.storage_failed(now, failure, &mut out),
        }
        self.schedule(&mut out);
        out
    }

    // ---- helpers -----------------------------------------------------------

    fn sid(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.id.as_str())
    }

    fn send<'a>(out: &mut Out<'a>, to: Token, text: impl Into<Cow<'a, str>>) {
        out.push(Effect::Send { to, text: text.into() });
    }

    fn tell_host<'a>(&self, out: &mut Out<'a>, text: impl Into<Cow<'a, str>>) -> bool {
        match self.host {
            Some(host) => {
                Self::send(out, host, text);
                true
            }
            None => false,
        }
    }

    fn call(&mut self, call: SessionCall, out: &mut Out<'_>) {
        if self.record.is_none() {
            return respond(out, GONE_STATUS, http::SESSION_NOT_FOUND);
        }
        self.on_call(call, out);
    }

    fn call_peer(out: &mut Out<'_>, sid: &str, call: SessionCall, purpose: Purpose) {
        out.push(Effect::Call(OutgoingCall {
            to: Peer::Session(sid.to_string()),
            body: CallBody::Session(call),
            purpose,
            attempt: 0,
            retry_at: None,
        }));
    }

    fn call_matchmaker(out: &mut Out<'_>, call: MatchmakerCall, purpose: Purpose) {
        out.push(Effect::Call(OutgoingCall {
            to: Peer::Matchmaker,
            body: CallBody::Matchmaker(call),
            purpose,
            attempt: 0,
            retry_at: None,
        }));
    }

    fn persist(&mut self, out: &mut Out<'_>) {
        self.timers_dirty = true;
        out.push(Effect::Persist);
    }

    /// Marks a socket its peer closed, so that if the runtime still lists it
    /// after a wake-up it is not counted again.
    fn mark_closed(&self, socket: Token, out: &mut Out<'_>) {
        if let Some(info) = self.sockets.get(&socket) {
            out.push(Effect::Attach { socket, info: SocketInfo { closed: true, ..info.clone() } });
        }
    }

    /// Drops a socket from the live set. `current`: it was the session's host,
    /// or the socket its client id belongs to (not one already replaced).
    fn forget(&mut self, token: Token) -> Option<(SocketInfo, bool)> {
        let info = self.sockets.remove(&token)?;
        if info.keep_alive.is_some() {
            self.timers_dirty = true;
        }
        let current = match info.role {
            Role::Host { .. } => self.host.take_if(|h| *h == token).is_some(),
            Role::Client { id, .. } => {
                let current = self.clients.get(&id) == Some(&token);
                if current {
                    self.clients.remove(&id);
                }
                current
            }
        };
        Some((info, current))
    }

    /// Closes a socket the relay is done with, marking its attachment first so
    /// the runtime's later events for it are ignored, even after a wake-up.
    fn close_socket(&mut self, token: Token, close: Close, out: &mut Out<'_>) -> Option<(SocketInfo, bool)> {
        let (mut info, current) = self.forget(token)?;
        info.closed = true;
        out.push(Effect::Attach { socket: token, info: info.clone() });
        out.push(Effect::Close { to: token, close });
        Some((info, current))
    }

    /// Closes a socket and accounts for its leaving (its host hears of a
    /// client, a host's session waits); the others carry on. The socket's
    /// role, if it was live.
    fn close_and_depart(&mut self, now: f64, token: Token, close: Close, out: &mut Out<'_>) -> Option<&'static str> {
        let (info, current) = self.close_socket(token, close, out)?;
        self.departed(now, &info, current, out);
        Some(if info.is_host() { "host" } else { "client" })
    }

    /// Closes a socket for what it sent, and logs why.
    fn refuse(&mut self, now: f64, token: Token, close: Close, out: &mut Out<'_>) {
        let Some(role) = self.close_and_depart(now, token, close, out) else { return };
        out.push(Effect::Log(
            Event::warn("socket_refused")
                .with("sid", self.sid())
                .with("role", role)
                .with("code", close.code)
                .with("reason", close.reason),
        ));
    }

    // ---- connecting ----------------------------------------------------------

    /// The record, after ending it if its reconnect window has run out.
    fn live_record(&mut self, now: f64, out: &mut Out<'_>) -> bool {
        if self.record.as_ref().is_some_and(|r| r.expired(now)) {
            self.end_session(EndReason::ReconnectWindowExpired, out);
        }
        self.record.is_some()
    }

    fn host_connect(&mut self, now: f64, params: HostParams, fresh_secret: String, out: &mut Out<'_>) {
        // The router always names the session; without it there is nothing to open.
        let Some(sid) = params.id.clone() else {
            return refuse_http(out, 400, &ParamError::SessionId { in_path: false }.to_string());
        };
        self.live_record(now, out);
        let abandoned = self.host.is_none() && self.record.as_ref().is_some_and(|r| !r.used);
        if abandoned && params.secret.is_none() {
            // Nobody ever used it and its host is gone: the id is free.
            self.end_session(EndReason::NeverUsed, out);
        }
        let admission = match admit_host(self.record.as_ref(), params.secret.as_deref()) {
            Ok(a) => a,
            Err(HostRejection::AlreadyExists) => return refuse_http(out, 409, http::SESSION_EXISTS),
            Err(HostRejection::NotFoundOrBadSecret) => return refuse_http(out, 404, http::COULD_NOT_CONNECT),
        };
        if admission == HostAdmission::TakeOver {
            if let Some(old) = self.host {
                self.close_socket(old, CLOSE_TAKEN_OVER, out);
            }
            out.push(Effect::Log(Event::info("host_took_over").with("sid", sid.as_str())));
        } else {
            let record = SessionRecord::new(sid.clone(), fresh_secret, params.reconnect);
            self.record = Some(record);
            out.push(Effect::Log(Event::info("session_created").with("sid", sid.as_str())));
        }
        let record = self.record.as_mut().expect("admitted or created above");
        if admission == HostAdmission::TakeOver {
            record.host_generation += 1;
            record.used = true;
        }
        record.reconnect = params.reconnect;
        record.host_away_until = None;
        let token = new_token(&mut self.last_token, now);
        let info = SocketInfo::new(
            Role::Host { generation: record.host_generation },
            token,
            params.keep_alive,
            now,
            &self.settings,
        );
        let (session_line, secret_line) = (say::session(&record.id), say::secret(&record.secret));
        let (queued_bytes, queued_lines) = (record.queued_bytes, record.queued_lines);
        out.push(Effect::Accept { socket: token, info: Some(info.clone()) });
        self.sockets.insert(token, info);
        self.host = Some(token);
        Self::send(out, token, session_line);
        Self::send(out, token, secret_line);
        if admission == HostAdmission::TakeOver {
            // Every client it can address: its own and its slaves'.
            let mut ids: BTreeSet<u32> = self.clients.keys().copied().collect();
            if let Some(record) = &self.record {
                ids.extend(record.group.slave_clients());
            }
            for id in ids {
                Self::send(out, token, say::connected(id));
            }
            if queued_lines > 0 {
                out.push(Effect::Replay { to: token, bytes: queued_bytes, lines: queued_lines });
                let record = self.record.as_mut().expect("exists");
                record.queued_bytes = 0;
                record.queued_lines = 0;
            }
        }
        self.persist(out);
        self.stats_changed(now);
        out.push(Effect::Respond(Answer::Upgrade { socket: token }));
    }

    fn client_connect(&mut self, now: f64, params: ClientParams, out: &mut Out<'_>) {
        if !self.live_record(now, out) {
            return refuse_http(out, 404, http::SESSION_NOT_FOUND);
        }
        let connected = self.connected_ids();
        let record = self.record.as_ref().expect("live");
        let admission = match admit_client(record, &connected, params.uuid.as_deref(), self.settings.max_clients) {
            Ok(a) => a,
            Err(_) => {
                // Told why, then closed; never hibernated, never counted.
                out.push(Effect::Accept { socket: EPHEMERAL, info: None });
                Self::send(out, EPHEMERAL, say::NO_SLOTS);
                out.push(Effect::Close { to: EPHEMERAL, close: CLOSE_SESSION_FULL });
                out.push(Effect::Log(
                    Event::info("socket_refused")
                        .with("sid", record.id.as_str())
                        .with("role", "client")
                        .with("code", CLOSE_SESSION_FULL.code)
                        .with("reason", CLOSE_SESSION_FULL.reason),
                ));
                out.push(Effect::Respond(Answer::Upgrade { socket: EPHEMERAL }));
                return;
            }
        };
        let id = admission.id;
        if admission.replaces {
            if let Some(&old) = self.clients.get(&id) {
                self.close_socket(old, CLOSE_REPLACED, out);
                self.announce(id, say::disconnected, SlaveEvent::Disconnected, out);
            }
        }
        let record = self.record.as_mut().expect("live");
        // Only a new uuid or a first client changes what is stored: a plain
        // connect costs no storage write.
        let changed = admission.reserve.is_some() || !record.used;
        record.used = true;
        if let Some(uuid) = admission.reserve {
            record.reserved.insert(uuid, id);
        }
        let token = new_token(&mut self.last_token, now);
        let info =
            SocketInfo::new(Role::Client { id, uuid: params.uuid }, token, params.keep_alive, now, &self.settings);
        out.push(Effect::Accept { socket: token, info: Some(info.clone()) });
        if info.keep_alive.is_some() {
            self.timers_dirty = true;
        }
        self.sockets.insert(token, info);
        self.clients.insert(id, token);
        if changed {
            self.persist(out);
        }
        self.announce(id, say::connected, SlaveEvent::Connected, out);
        self.stats_changed(now);
        out.push(Effect::Respond(Answer::Upgrade { socket: token }));
    }

    /// Tells this session's host about one of its clients, and the master's
    /// host too (with the id translated) when this session is a slave. Not
    /// queued: a host that takes over is told who is connected then.
    fn announce(&self, id: u32, line: fn(u32) -> String, event: fn(u32) -> SlaveEvent, out: &mut Out<'_>) {
        self.tell_host(out, line(id));
        if let Some((master, n)) = self.record.as_ref().and_then(|r| r.group.id_at_master(id)) {
            Self::call_peer(
                out,
                master,
                SessionCall::SlaveEvent { slave: self.sid().to_string(), event: event(n) },
                Purpose::Linked,
            );
        }
    }

    // ---- frames ------------------------------------------------------------

    fn frame<'a>(&mut self, now: f64, socket: Token, frame: Frame<'a>, out: &mut Out<'a>) {
        let Some(info) = self.sockets.get_mut(&socket) else { return };
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary => return self.refuse(now, socket, CLOSE_BINARY, out),
            Frame::TooBig => return self.refuse(now, socket, CLOSE_TOO_BIG, out),
        };
        let limits = self.settings.limits(info.is_host());
        let (frames_before, bytes_before) = (info.bucket.tokens, info.byte_bucket.tokens);
        // Frames and bytes are both limited: a flood of small frames costs
        // events, a stream of large ones costs memory in every receiver's
        // unsent backlog, which the runtime does not let the relay see.
        let within = info.bucket.take(now, limits.per_second, limits.burst)
            && info.byte_bucket.take_n(now, text.len() as f64, limits.bytes_per_second, limits.bytes_burst);
        if !within {
            return self.refuse(now, socket, CLOSE_RATE_LIMITED, out);
        }
        // The attachment's copy of the buckets only matters after hibernation,
        // and only once one runs low (an idle socket's buckets refill anyway),
        // so the relay path rarely rewrites it.
        let low = |before: f64, after: f64, burst: f64| after < burst / 2.0 && before >= burst / 2.0;
        if low(frames_before, info.bucket.tokens, limits.burst)
            || low(bytes_before, info.byte_bucket.tokens, limits.bytes_burst)
        {
            out.push(Effect::Attach { socket, info: info.clone() });
        }
        match info.role {
            Role::Host { .. } => self.host_frame(socket, text, out),
            Role::Client { id, .. } => self.client_frame(now, socket, id, text, out),
        }
    }

    fn client_frame<'a>(&mut self, now: f64, socket: Token, id: u32, text: &'a str, out: &mut Out<'a>) {
        if let Some(host) = self.host {
            out.push(Effect::SendFromClient { to: host, client: id, message: text });
        } else {
            let line = say::from_client(id, text);
            let record = self.record.as_mut().expect("a socket implies a session");
            // The bound counts what clients sent, not the relay's prefixes.
            if !queue_admits(record.queued_bytes, text.len()) {
                return self.refuse(now, socket, CLOSE_HOST_UNAVAILABLE, out);
            }
            record.queued_bytes += text.len();
            record.queued_lines += 1;
            out.push(Effect::Enqueue { line, sender: Some(socket), bytes: text.len() });
            self.persist(out);
        }
        if let Some((master, n)) = self.record.as_ref().and_then(|r| r.group.id_at_master(id)) {
            let event = SlaveEvent::Message(n, text.to_string());
            Self::call_peer(
                out,
                master,
                SessionCall::SlaveEvent { slave: self.sid().to_string(), event },
                Purpose::Forwarded { sender: socket },
            );
        }
    }

    fn host_frame<'a>(&mut self, socket: Token, text: &'a str, out: &mut Out<'a>) {
        if let Some(record) = self.record.as_mut().filter(|r| !r.used) {
            record.used = true;
            self.persist(out);
        }
        match parse_host_frame(text) {
            HostFrame::Invalid => Self::send(out, socket, say::INVALID),
            HostFrame::ToClient { client, message } => self.host_to_client(socket, client, message, out),
            HostFrame::ToLinkedHosts { message } => {
                let record = self.record.as_ref().expect("a socket implies a session");
                if let Some(master) = &record.group.master {
                    let call = SessionCall::Broadcast { from: record.id.clone(), message: message.to_string() };
                    Self::call_peer(out, &master.sid, call, Purpose::Linked);
                }
                self.broadcast_to_slaves(None, message, out);
            }
            HostFrame::Command(command) => self.command(socket, command, out),
        }
    }

    fn host_to_client<'a>(&self, socket: Token, digits: &'a str, message: &'a str, out: &mut Out<'a>) {
        let Some(n) = client_number(digits) else { return Self::send(out, socket, say::unknown(digits)) };
        let record = self.record.as_ref().expect("a socket implies a session");
        if let Some(slave) = record.group.slave_holding(n) {
            if !slave.clients.contains(&n) {
                return Self::send(out, socket, say::unknown(digits));
            }
            let call = SessionCall::ToClient { id: n - slave.offset, message: message.to_string() };
            return Self::call_peer(out, &slave.sid, call, Purpose::ToSlaveClient { digits: digits.to_string() });
        }
        match self.clients.get(&n) {
            Some(&client) => Self::send(out, client, message),
            None => Self::send(out, socket, say::unknown(digits)),
        }
    }

    fn broadcast_to_slaves(&self, except: Option<&str>, message: &str, out: &mut Out<'_>) {
        let record = self.record.as_ref().expect("a socket implies a session");
        for slave in record.group.slaves.iter().filter(|s| Some(s.sid.as_str()) != except) {
            let call = SessionCall::DeliverToHost { line: say::from_client(0, message), queue: true };
            Self::call_peer(out, &slave.sid, call, Purpose::Linked);
        }
    }

    fn command(&mut self, socket: Token, command: HostCommand, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match command {
            HostCommand::Version => Self::send(out, socket, say::version(crate::VERSION)),
            HostCommand::Stats => Self::call_matchmaker(out, MatchmakerCall::Stats, Purpose::Stats),
            HostCommand::JoinSession(options) => {
                let own: Vec<u32> = self.clients.keys().copied().collect();
                let record = self.record.as_mut().expect("a socket implies a session");
                // A session joins one master at most, and never itself.
                if record.group.master.is_some() || options.target.as_deref() == Some(sid.as_str()) {
                    return Self::send(out, socket, say::INVALID);
                }
                let frozen = record.group.frozen.get_or_insert(own).clone();
                let top = frozen.last().copied().unwrap_or(0);
                let used =
                    std::iter::once((0, top)).chain(record.group.slaves.iter().map(|s| (s.offset, s.span))).collect();
                let search = Search::new(&sid, &options, used, frozen.len() as u32);
                record.group.search = Some(options);
                self.persist(out);
                Self::call_matchmaker(out, MatchmakerCall::Search { search }, Purpose::Search);
            }
            HostCommand::CloseSession => {
                let record = self.record.as_mut().expect("a socket implies a session");
                if record.group.search.take().is_some() {
                    Self::call_matchmaker(out, MatchmakerCall::Cancel { sid }, Purpose::Notice);
                }
                record.group.thaw_if_idle();
                self.persist(out);
            }
            HostCommand::LeaveSession => {
                self.leave_links("left", out);
                self.persist(out);
            }
        }
    }

    /// `/leave-session`, also run when a session ends: every link ends, the
    /// search stops and the session admits clients again.
    fn leave_links(&mut self, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let sid = record.id.clone();
        let slaves = std::mem::take(&mut record.group.slaves);
        let master = record.group.master.take();
        let searching = record.group.search.take().is_some();
        record.group.frozen = None;
        // The master's host no longer reaches its slaves' clients.
        let gone: BTreeSet<u32> = slaves.iter().flat_map(|s| s.clients.iter().copied()).collect();
        for n in gone {
            self.tell_host(out, say::disconnected(n));
        }
        for slave in slaves {
            Self::call_peer(out, &slave.sid, SessionCall::MasterLeft { master: sid.clone() }, Purpose::Notice);
            out.push(Effect::Log(link_ended(&sid, &slave.sid, why)));
        }
        if let Some(master) = master {
            Self::call_peer(out, &master.sid, SessionCall::SlaveLeft { slave: sid.clone() }, Purpose::Notice);
            out.push(Effect::Log(link_ended(&master.sid, &sid, why)));
        }
        if searching {
            Self::call_matchmaker(out, MatchmakerCall::Cancel { sid }, Purpose::Notice);
        }
    }

    fn stop_searching(&mut self, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if record.group.search.take().is_some() {
            Self::call_matchmaker(out, MatchmakerCall::Cancel { sid: record.id.clone() }, Purpose::Notice);
        }
    }

    // ---- leaving -------------------------------------------------------------

    /// The peer's side of a socket is gone.
    fn depart(&mut self, now: f64, socket: Token, out: &mut Out<'_>) {
        if let Some((info, current)) = self.forget(socket) {
            self.departed(now, &info, current, out);
        }
    }

    /// A socket is gone (closed by either side): a client's host hears of it,
    /// a host's session waits for a take-over. A socket that was already
    /// replaced (by a take-over or its uuid) was accounted for then.
    fn departed(&mut self, now: f64, info: &SocketInfo, current: bool, out: &mut Out<'_>) {
        if !current {
            return;
        }
        match info.role {
            Role::Client { id, .. } => {
                self.announce(id, say::disconnected, SlaveEvent::Disconnected, out);
                self.stats_changed(now);
            }
            Role::Host { .. } => {
                if self.record.as_ref().is_some_and(|r| r.host_away_until.is_none()) {
                    self.host_left(now, out);
                }
            }
        }
    }

    fn host_left(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if !record.reconnect {
            return self.end_session(EndReason::HostLeftWithoutReconnect, out);
        }
        record.host_away_until = Some(now + self.settings.reconnect_ms);
        out.push(Effect::Log(
            Event::info("host_left")
                .with("sid", record.id.as_str())
                .with("reconnect_seconds", self.settings.reconnect_ms / 1000.0),
        ));
        // A search whose host has gone must not be matched.
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.stats_changed(now);
    }

    fn end_session(&mut self, why: EndReason, out: &mut Out<'_>) {
        let tokens: Vec<Token> = self.sockets.keys().copied().collect();
        for token in tokens {
            self.close_socket(token, CLOSE_SESSION_CLOSED, out);
        }
        self.leave_links("session ended", out);
        let Some(record) = self.record.take() else { return };
        if !record.stats_reported.is_zero() {
            let counts = SessionCounts::default();
            Self::call_matchmaker(out, MatchmakerCall::Report { sid: record.id.clone(), counts }, Purpose::Notice);
        }
        out.push(Effect::Erase);
        out.push(Effect::Log(
            Event::info("session_ended").with("sid", record.id.as_str()).with("reason", why.as_str()),
        ));
        self.timers_dirty = true;
    }

    /// After a restart, the record may say a host is connected although the
    /// runtime holds no host socket (its close was never delivered).
    fn reconcile(&mut self, now: f64, out: &mut Out<'_>) {
        let orphaned = self.host.is_none() && self.record.as_ref().is_some_and(|r| r.host_away_until.is_none());
        if orphaned {
            self.host_left(now, out);
        }
    }

    // ---- timers --------------------------------------------------------------

    fn alarm_fired(&mut self, now: f64, out: &mut Out<'_>) {
        // The alarm that fired is gone; whatever is due next is set again.
        self.alarm = Some(None);
        self.timers_dirty = true;
        if !self.live_record(now, out) {
            return;
        }
        let period = self.settings.keep_alive_ms;
        for (&token, info) in self.sockets.iter_mut() {
            let Some(text) = &info.keep_alive else { continue };
            if info.keep_alive_due <= now + KEEP_ALIVE_SLACK_MS {
                out.push(Effect::Send { to: token, text: Cow::Owned(text.clone()) });
                info.keep_alive_due = now + period;
                out.push(Effect::Attach { socket: token, info: info.clone() });
            }
        }
        self.flush_stats(now, out);
    }

    /// Figures changed: report them soon, batched. The due time is only
    /// memory: after a wake-up, the alarm it set reports whatever changed.
    fn stats_changed(&mut self, now: f64) {
        if self.record.is_some() && self.stats_due.is_none() {
            self.stats_due = Some(now + STATS_DELAY_MS);
            self.timers_dirty = true;
        }
    }

    fn flush_stats(&mut self, now: f64, out: &mut Out<'_>) {
        let counts = SessionCounts::new(self.host.is_some(), self.clients.len() as u32);
        if self.stats_due.is_some_and(|due| due > now) {
            return;
        }
        self.stats_due = None;
        let Some(record) = self.record.as_mut() else { return };
        if counts != record.stats_reported {
            record.stats_reported = counts;
            let call = MatchmakerCall::Report { sid: record.id.clone(), counts };
            Self::call_matchmaker(out, call, Purpose::Notice);
            self.persist(out);
        }
    }

    /// The earliest deadline: reconnect window, stats report, keep-alives.
    pub fn next_deadline(&self) -> Option<f64> {
        let record = self.record.as_ref()?;
        let keep_alives = self.sockets.values().filter(|i| i.keep_alive.is_some()).map(|i| i.keep_alive_due);
        [record.host_away_until, self.stats_due].into_iter().flatten().chain(keep_alives).reduce(f64::min)
    }

    /// Points the one alarm at the earliest deadline, when that may have changed.
    fn schedule(&mut self, out: &mut Out<'_>) {
        if !self.timers_dirty {
            return;
        }
        self.timers_dirty = false;
        let wanted = self.next_deadline();
        if self.alarm != Some(wanted) {
            self.alarm = Some(wanted);
            out.push(Effect::SetAlarm(wanted));
        }
    }

    fn storage_failed(&mut self, now: f64, failure: StorageFailure, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match failure {
            StorageFailure::Persist(error) => {
                out.push(Effect::Log(storage_error(&sid, "persist", error)));
            }
            StorageFailure::Alarm(error) => {
                // Not known any more: the next change sets it again.
                self.alarm = None;
                self.timers_dirty = true;
                out.push(Effect::Log(storage_error(&sid, "alarm", error)));
            }
            StorageFailure::Enqueue { sender, bytes, error } => {
                if let Some(record) = self.record.as_mut() {
                    record.queued_bytes = record.queued_bytes.saturating_sub(bytes);
                    record.queued_lines = record.queued_lines.saturating_sub(1);
                }
                out.push(Effect::Log(storage_error(&sid, "enqueue", error)));
                // The sender learns that its message was not kept.
                if let Some(sender) = sender {
                    self.close_and_depart(now, sender, CLOSE_STORAGE_FAILED, out);
                }
                self.persist(out);
            }
            StorageFailure::Replay { host, bytes, lines, error } => {
                // Nothing was deleted: the messages wait for the next take-over,
                // and the host is told to make one.
                if let Some(record) = self.record.as_mut() {
                    record.queued_bytes += bytes;
                    record.queued_lines += lines;
                }
                out.push(Effect::Log(storage_error(&sid, "replay", error)));
                self.persist(out);
                if self.host == Some(host) {
                    // As if it had left: the session waits for the next take-over.
                    self.close_and_depart(now, host, CLOSE_REPLAY_FAILED, out);
                }
            }
        }
    }

    // ---- calls from other objects ------------------------------------------------

    fn on_call(&mut self, call: SessionCall, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match call {
            SessionCall::DeliverToHost { line, queue } => {
                let status = self.deliver(line, queue, out);
                respond(out, status, "");
            }
            SessionCall::SlaveEvent { slave, event } => {
                let record = self.record.as_mut().expect("checked");
                let Some(link) = record.group.slave_mut(&slave) else {
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                };
                match event {
                    SlaveEvent::Connected(n) => {
                        if link.holds(n) && link.clients.insert(n) {
                            self.tell_host(out, say::connected(n));
                            self.persist(out);
                        }
                        respond(out, OK_STATUS, "ok");
                    }
                    SlaveEvent::Disconnected(n) => {
                        if link.clients.remove(&n) {
                            self.tell_host(out, say::disconnected(n));
                            self.persist(out);
                        }
                        respond(out, OK_STATUS, "ok");
                    }
                    SlaveEvent::Message(n, text) => {
                        let status = self.deliver(say::from_client(n, &text), true, out);
                        respond(out, status, "");
                    }
                }
            }
            SessionCall::ToClient { id, message } => {
                let client =
                    self.record.as_ref().and_then(|r| r.group.client_at_rank(id)).and_then(|c| self.clients.get(&c));
                match client {
                    Some(&token) => {
                        Self::send(out, token, message);
                        respond(out, OK_STATUS, "ok");
                    }
                    None => respond(out, OK_STATUS, CLIENT_UNKNOWN),
                }
            }
            SessionCall::Broadcast { from, message } => {
                let known = self.record.as_ref().is_some_and(|r| r.group.slaves.iter().any(|s| s.sid == from));
                if !known {
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                }
                self.deliver(say::from_client(0, &message), true, out);
                self.broadcast_to_slaves(Some(&from), &message, out);
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::LinkedAsSlave { master, offset } => {
                let record = self.record.as_mut().expect("checked");
                // It may have left its search, or linked otherwise, meanwhile.
                if record.group.search.is_none() || record.group.is_linked() {
                    return respond(out, CONFLICT_STATUS, "not searching");
                }
                record.group.search = None;
                record.group.master = Some(MasterLink { sid: master.clone(), offset });
                let clients: Vec<u32> =
                    self.clients.keys().filter_map(|&id| record.group.id_at_master(id).map(|(_, n)| n)).collect();
                self.persist(out);
                self.deliver(say::set_master(&master), true, out);
                out.push(Effect::Log(link_made(&master, &sid, offset)));
                respond(out, OK_STATUS, &serde_json::to_string(&clients).expect("numbers serialise"));
            }
            SessionCall::LinkedAsMaster { slave, offset, span, clients, searching } => {
                let own: Vec<u32> = self.clients.keys().copied().collect();
                let record = self.record.as_mut().expect("checked");
                if record.group.master.is_some()
                    || record.group.frozen.is_none()
                    || record.group.slaves.iter().any(|s| s.sid == slave)
                {
                    return respond(out, CONFLICT_STATUS, "cannot lead");
                }
                let clients: BTreeSet<u32> =
                    clients.into_iter().filter(|&n| n > offset && n <= offset + span).collect();
                record.group.slaves.push(SlaveLink { sid: slave.clone(), offset, span, clients: clients.clone() });
                if !searching {
                    record.group.search = None;
                }
                record.group.frozen.get_or_insert(own);
                self.persist(out);
                self.deliver(say::added_slave(&slave), true, out);
                for n in clients {
                    self.tell_host(out, say::connected(n));
                }
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::MasterLeft { master } => {
                self.master_gone(&master, "master left", out);
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::SlaveLeft { slave } => {
                let known = self.record.as_ref().is_some_and(|r| r.group.slaves.iter().any(|s| s.sid == slave));
                if !known {
                    // Its link may still be on its way here: the slave asks again.
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                }
                self.slave_gone(&slave, "slave left", out);
                respond(out, OK_STATUS, "ok");
            }
        }
    }

    /// This slave's master is gone: the link ends here.
    fn master_gone(&mut self, master: &str, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if record.group.master.as_ref().is_none_or(|m| m.sid != master) {
            return;
        }
        record.group.master = None;
        let sid = record.id.clone();
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.deliver(say::MASTER_LEFT.to_string(), true, out);
        out.push(Effect::Log(link_ended(master, &sid, why)));
    }

    /// One of this master's slaves is gone: its clients first, then the notice.
    fn slave_gone(&mut self, slave: &str, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let Some(pos) = record.group.slaves.iter().position(|s| s.sid == slave) else { return };
        let link = record.group.slaves.remove(pos);
        let sid = record.id.clone();
        for n in &link.clients {
            self.tell_host(out, say::disconnected(*n));
        }
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.deliver(say::slave_left(slave), true, out);
        out.push(Effect::Log(link_ended(&sid, slave, why)));
    }

    /// A line for the host: sent now, or kept for the take-over. Returns the
    /// status for the caller.
    fn deliver(&mut self, line: String, queue: bool, out: &mut Out<'_>) -> u16 {
        if self.host.is_some() {
            self.tell_host(out, line);
            return OK_STATUS;
        }
        if !queue {
            return OK_STATUS;
        }
        let Some(record) = self.record.as_mut() else { return GONE_STATUS };
        if !queue_admits(record.queued_bytes, line.len()) {
            out.push(Effect::Log(Event::warn("queue_full").with("sid", record.id.as_str()).with("bytes", line.len())));
            return QUEUE_FULL_STATUS;
        }
        record.queued_bytes += line.len();
        record.queued_lines += 1;
        let bytes = line.len();
        out.push(Effect::Enqueue { line, sender: None, bytes });
        self.persist(out);
        OK_STATUS
    }

    // ---- answers to this session's calls ---------------------------------------------

    fn answer(&mut self, now: f64, call: OutgoingCall, outcome: Outcome, out: &mut Out<'_>) {
        if self.record.is_none() {
            return;
        }
        let peer = match &call.to {
            Peer::Session(sid) => Some(sid.clone()),
            Peer::Matchmaker => None,
        };
        let status = match &outcome {
            Outcome::Status(status, _) => Some(*status),
            Outcome::Failed(_) => None,
        };
        if let Outcome::Failed(error) = &outcome {
            out.push(Effect::Log(
                Event::error("call_failed")
                    .with("sid", self.sid())
                    .with("to", peer.clone().unwrap_or_else(|| "matchmaker".into()))
                    .with("error", error.as_str()),
            ));
        }
        // A slave's call got to its master before the link did: again, in order.
        if status == Some(NOT_LINKED_YET) {
            if call.attempt < LINK_RETRIES {
                let retry = OutgoingCall { attempt: call.attempt + 1, retry_at: Some(now + LINK_RETRY_MS), ..call };
                out.push(Effect::Call(retry));
            } else if let Some(master) = peer {
                // The master never heard of the link: it is not a link.
                out.push(Effect::Log(
                    Event::warn("link_unconfirmed").with("sid", self.sid()).with("master", master.as_str()),
                ));
                self.master_gone(&master, "link never confirmed", out);
            }
            return;
        }
        if status == Some(GONE_STATUS) {
            if let Some(peer) = &peer {
                self.peer_gone(peer, out);
            }
        }
        match call.purpose {
            Purpose::Notice | Purpose::Linked => {}
            Purpose::Search => {
                if status != Some(OK_STATUS) {
                    // Refused (the Matchmaker's list is full) or lost: the search
                    // is off and the host hears `invalid`, the protocol's "not done".
                    let record = self.record.as_mut().expect("checked");
                    if record.group.search.take().is_some() {
                        record.group.thaw_if_idle();
                        self.persist(out);
                        self.tell_host(out, say::INVALID);
                        let why = if status == Some(POOL_FULL_STATUS) {
                            "too many searches"
                        } else {
                            "matchmaker unavailable"
                        };
                        out.push(Effect::Log(
                            Event::warn("search_refused").with("sid", self.sid()).with("reason", why),
                        ));
                    }
                }
            }
            Purpose::Stats => {
                if let Outcome::Status(OK_STATUS, body) = &outcome {
                    self.tell_host(out, say::stats(body));
                }
            }
            Purpose::ToSlaveClient { digits } => {
                let delivered = matches!(&outcome, Outcome::Status(OK_STATUS, body) if body != CLIENT_UNKNOWN);
                if !delivered {
                    self.tell_host(out, say::unknown(&digits));
                }
            }
            Purpose::Forwarded { sender } => {
                if status == Some(QUEUE_FULL_STATUS) && self.sockets.contains_key(&sender) {
                    self.refuse(now, sender, CLOSE_HOST_UNAVAILABLE, out);
                }
            }
        }
    }

    /// A linked session answered that it does not exist: the link ends as if
    /// it had left.
    fn peer_gone(&mut self, peer: &str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        if record.group.master.as_ref().is_some_and(|m| m.sid == peer) {
            self.master_gone(peer, "master gone", out);
        } else if record.group.slaves.iter().any(|s| s.sid == peer) {
            self.slave_gone(peer, "slave gone", out);
        }
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

fn storage_error(sid: &str, op: &'static str, error: String) -> Event {
    Event::error("storage_error").with("sid", sid).with("op", op).with("error", error)
}

fn link_made(master: &str, slave: &str, offset: u32) -> Event {
    Event::info("link_made").with("master", master).with("slave", slave).with("offset", offset)
}

fn link_ended(master: &str, slave: &str, why: &'static str) -> Event {
    Event::info("link_ended").with("master", master).with("slave", slave).with("reason", why)
}
