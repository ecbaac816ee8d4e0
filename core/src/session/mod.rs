//! The session protocol (PROTOCOL.md sections 2–6) as a pure state machine.
//!
//! [`SessionCore::handle`] takes one [`Input`] (a connect, a frame, a close,
//! the alarm, a call from another object, the answer to a call, a storage
//! failure) at a given time and returns the ordered [`Effect`]s the Durable
//! Object must carry out. No I/O, clock or randomness happens here: the time
//! and fresh secrets come in with the inputs, so every behaviour is tested
//! natively (`askutron-sim`).
//!
//! Effect order is the contract: e.g. a host connect yields `Accept`, then
//! `session:`, `secret:`, the `connected:` replay, the queue replay, and last
//! the HTTP answer. Memory here is only what hibernation may lose: the record
//! is persisted (`Effect::Persist`) whenever it changes, and each socket's
//! facts travel in its attachment (`Effect::Attach`).

mod clients;
mod commands;
mod effects;
mod faults;
mod hosting;
mod inputs;
mod links;
mod relay;
mod sockets;
mod timers;

use effects::Out;
pub use effects::{Answer, CallBody, Effect, OutgoingCall, Peer, Purpose};
pub use hosting::EndReason;
pub use inputs::{Frame, Input, StorageFailure};
use links::link_ended;
use sockets::new_token;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::journal::Event;
use crate::record::{Role, SessionRecord, SocketInfo};
use crate::settings::Settings;
use crate::wire::Close;

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

    fn persist(&mut self, out: &mut Out<'_>) {
        self.timers_dirty = true;
        out.push(Effect::Persist);
    }
}

pub(super) fn respond(out: &mut Out<'_>, status: u16, body: &str) {
    out.push(Effect::Respond(Answer::Text { status, body: body.to_string() }));
}

/// An HTTP refusal of a connect, logged with its reason.
pub(super) fn refuse_http(out: &mut Out<'_>, status: u16, body: &str) {
    out.push(Effect::Log(Event::info("request_refused").with("status", status).with("reason", body)));
    respond(out, status, body);
}
