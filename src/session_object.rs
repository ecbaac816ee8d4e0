//! The Session Durable Object: one per session id, holding the host's and the
//! clients' sockets through the WebSocket Hibernation API.
//!
//! Everything it must remember across hibernation lives in SQLite storage (the
//! session record, the queue for an absent host) or in socket attachments (who
//! a socket is). Memory only caches: after a wake-up, the record is read again.
//! All storage access is the synchronous SQL API, so no other event can slip in
//! between reading and writing the record; the only awaits are the alarm API
//! and calls to other objects, and no `RefCell` borrow is held across them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use worker::{
    console_error, durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::calls::{MatchmakerCall, SessionCall, CLIENT_UNKNOWN, GONE_STATUS, POOL_FULL_STATUS};
use crate::glue::{self, call, is_internal, matchmaker_stub, now, random, session_stub, text};
use crate::matchmaking::{Destination, MasterLink, Search, SlaveLink};
use crate::protocol::{
    client_number, http, parse_host_frame, say, ClientParams, Close, HostCommand, HostFrame, HostParams, ParamError,
    CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED, CLOSE_REPLACED, CLOSE_SESSION_CLOSED, CLOSE_SESSION_FULL,
    CLOSE_TAKEN_OVER, CLOSE_TOO_BIG, MAX_FRAME_BYTES,
};
use crate::secrets;
use crate::session::{
    admit_client, admit_host, next_alarm, queue_admits, HostAdmission, HostRejection, Role, SessionRecord, SocketInfo,
    TokenBucket,
};
use crate::settings::Settings;
use crate::stats::SessionCounts;

const HOST_TAG: &str = "host";
const CLIENT_TAG: &str = "client";
/// Figures reach the Matchmaker at most this long after they change.
const STATS_DELAY_MS: f64 = 1_000.0;

fn client_tag(id: u32) -> String {
    format!("c:{id}")
}

/// Who an outgoing call goes to.
enum Peer {
    Session(String),
    Matchmaker,
}

/// What to do with the answer to an outgoing call.
enum Reply {
    Ignore,
    /// A master wrote to a slave's client: `unknown: <digits>` if it is gone.
    UnknownClient(String),
    /// `/stats`: the answer is the JSON for the host.
    Stats,
    /// A linked session is gone: forget the link as if it had left.
    PeerGone,
    /// `/join-session`: if the Matchmaker's list is full, the search is off.
    Search,
}

enum Outgoing {
    Session(SessionCall),
    Matchmaker(MatchmakerCall),
}

struct OutgoingCall {
    to: Peer,
    body: Outgoing,
    reply: Reply,
}

#[durable_object]
pub struct Session {
    state: State,
    env: Env,
    settings: Settings,
    /// `None` until read from storage in this incarnation. Shared, so the
    /// relay path reads it without copying.
    record: RefCell<Option<Option<Rc<SessionRecord>>>>,
    /// The alarm as last set by this incarnation (`None` = not known).
    alarm: Cell<Option<Option<f64>>>,
    /// Calls to other objects go out one at a time, in order.
    outbox: RefCell<VecDeque<OutgoingCall>>,
    sending: Cell<bool>,
    /// Rate-limit buckets of the sockets that sent since the last wake-up.
    buckets: RefCell<HashMap<u64, TokenBucket>>,
    /// Client sockets by id, so relaying to a client needs no tag lookup.
    /// Filled on demand; an entry goes whenever that client's socket does.
    clients: RefCell<HashMap<u32, WebSocket>>,
    /// Set when something a deadline depends on changed (the record, a
    /// socket with keep-alive); only then is the alarm recomputed, so a
    /// relayed frame never scans the sockets.
    timers_dirty: Cell<bool>,
    /// The connected host's socket and generation, so relaying to the host
    /// needs no tag lookup. Filled on demand, cleared whenever a host goes.
    host: RefCell<Option<(u32, WebSocket)>>,
}

impl DurableObject for Session {
    fn new(state: State, env: Env) -> Self {
        let settings = glue::settings(&env);
        if env.var("LOG_LIFECYCLE").is_ok_and(|v| v.to_string() == "true") {
            worker::console_log!("lifecycle: session object constructed");
        }
        Session {
            state,
            env,
            settings,
            record: RefCell::new(None),
            alarm: Cell::new(None),
            outbox: RefCell::new(VecDeque::new()),
            sending: Cell::new(false),
            buckets: RefCell::new(HashMap::new()),
            host: RefCell::new(None),
            timers_dirty: Cell::new(true),
            clients: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let response = if is_internal(&req) {
            self.internal(req).await
        } else if req.path() == "/session" {
            self.connect_host(&req)
        } else {
            self.connect_client(&req)
        };
        self.settle().await;
        response
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let Some(info) = live_info(&ws) else { return Ok(()) };
        match message {
            WebSocketIncomingMessage::Binary(_) => self.refuse(&ws, info, CLOSE_BINARY),
            WebSocketIncomingMessage::String(text) if text.len() > MAX_FRAME_BYTES => {
                self.refuse(&ws, info, CLOSE_TOO_BIG)
            }
            WebSocketIncomingMessage::String(text) => self.on_frame(&ws, info, &text),
        }
        self.settle().await;
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        // A socket the relay closed itself was accounted for then; its close
        // handshake is already complete.
        let Some(info) = live_info(&ws) else { return Ok(()) };
        {
            self.depart(&info);
            // Complete the handshake the peer started; 1005/1006 may not be sent back.
            let code = if code == 1005 || code == 1006 { 1000 } else { code as u16 };
            let _ = ws.close(Some(code), Some("bye"));
        }
        self.settle().await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        if let Some(info) = live_info(&ws) {
            self.depart(&info);
        }
        self.settle().await;
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm.set(Some(None));
        self.timers_dirty.set(true);
        let now = now();
        if let Some(record) = self.live_record(now) {
            if record.expired(now) {
                self.end_session(record);
            } else {
                self.send_keep_alives(now);
                self.flush_stats(now);
            }
        }
        self.settle().await;
        Response::ok("")
    }
}

/// The socket's attachment, unless the relay already closed and counted it.
fn live_info(ws: &WebSocket) -> Option<SocketInfo> {
    ws.deserialize_attachment::<SocketInfo>().ok().flatten().filter(|i| !i.closed)
}

impl Session {
    // ---- storage -------------------------------------------------------

    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// The record as stored, read once per incarnation. A session that never
    /// existed has no table, and reading must not create one: unknown ids
    /// probed by clients leave no storage behind.
    fn record(&self) -> Option<SessionRecord> {
        self.shared_record().map(|r| (*r).clone())
    }

    fn shared_record(&self) -> Option<Rc<SessionRecord>> {
        if let Some(cached) = self.record.borrow().as_ref() {
            return cached.clone();
        }
        let loaded = self
            .sql()
            .exec("SELECT v FROM relay_session WHERE k = 'record'", None)
            .and_then(|cursor| cursor.to_array::<RecordRow>())
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| serde_json::from_str::<SessionRecord>(&row.v).ok())
            .map(Rc::new);
        *self.record.borrow_mut() = Some(loaded.clone());
        loaded
    }

    fn save(&self, record: &SessionRecord) {
        let json = serde_json::to_string(record).expect("record serialises");
        let sql = self.sql();
        let result = sql
            .exec("CREATE TABLE IF NOT EXISTS relay_session (k TEXT PRIMARY KEY, v TEXT NOT NULL)", None)
            .and_then(|_| {
                sql.exec(
                    "CREATE TABLE IF NOT EXISTS relay_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
                    None,
                )
            })
            .and_then(|_| {
                sql.exec(
                    "INSERT OR REPLACE INTO relay_session (k, v) VALUES ('record', ?)",
                    vec![SqlStorageValue::from(json)],
                )
            });
        if let Err(e) = result {
            console_error!("saving session record failed: {e}");
        }
        *self.record.borrow_mut() = Some(Some(Rc::new(record.clone())));
        self.timers_dirty.set(true);
    }

    fn enqueue(&self, line: &str) {
        if let Err(e) = self.sql().exec("INSERT INTO relay_queue (line) VALUES (?)", vec![SqlStorageValue::from(line)])
        {
            console_error!("queueing a message failed: {e}");
        }
    }

    fn drain_queue(&self) -> Vec<String> {
        let sql = self.sql();
        let lines = sql
            .exec("SELECT line FROM relay_queue ORDER BY seq", None)
            .and_then(|c| c.to_array::<QueueRow>())
            .map(|rows| rows.into_iter().map(|r| r.line).collect())
            .unwrap_or_default();
        let _ = sql.exec("DELETE FROM relay_queue", None);
        lines
    }

    /// Forgets the session entirely: the id is free again.
    fn erase(&self) {
        let sql = self.sql();
        let _ = sql.exec("DROP TABLE IF EXISTS relay_queue", None);
        let _ = sql.exec("DROP TABLE IF EXISTS relay_session", None);
        *self.record.borrow_mut() = Some(None);
        self.timers_dirty.set(true);
    }

    /// The record, after squaring it with the sockets that really exist: if
    /// the record says a host is connected but there is no host socket (the
    /// runtime restarted and the close was never delivered), the host has left.
    fn live_record(&self, now: f64) -> Option<SessionRecord> {
        let record = self.record()?;
        if record.host_away_until.is_none() && self.host_socket(&record).is_none() {
            self.host_left(record.clone(), now);
            return self.record();
        }
        Some(record)
    }

    // ---- sockets -------------------------------------------------------

    fn sockets(&self, tag: &str) -> impl Iterator<Item = (WebSocket, SocketInfo)> {
        self.state.get_websockets_with_tag(tag).into_iter().filter_map(|ws| live_info(&ws).map(|info| (ws, info)))
    }

    fn host_socket(&self, record: &SessionRecord) -> Option<(WebSocket, SocketInfo)> {
        self.sockets(HOST_TAG).find(|(_, info)| info.role == Role::Host { generation: record.host_generation })
    }

    fn client_socket(&self, id: u32) -> Option<(WebSocket, SocketInfo)> {
        self.sockets(&client_tag(id)).next()
    }

    /// Client `id`'s socket for sending, from the cache when possible.
    fn client_ws(&self, id: u32) -> Option<WebSocket> {
        if let Some(ws) = self.clients.borrow().get(&id) {
            return Some(ws.clone());
        }
        let (ws, _) = self.client_socket(id)?;
        self.clients.borrow_mut().insert(id, ws.clone());
        Some(ws)
    }

    /// Forgets cached sockets of whoever `info` describes.
    fn forget_socket(&self, info: &SocketInfo) {
        match info.role {
            Role::Host { .. } => {
                self.host.borrow_mut().take();
            }
            Role::Client { id, .. } => {
                self.clients.borrow_mut().remove(&id);
            }
        }
    }

    fn connected_ids(&self) -> BTreeSet<u32> {
        self.sockets(CLIENT_TAG).filter_map(|(_, info)| info.client_id()).collect()
    }

    /// Sends to the host if one is connected.
    fn tell_host(&self, record: &SessionRecord, line: &str) -> bool {
        let cached = match self.host.borrow().as_ref() {
            Some((generation, ws)) if *generation == record.host_generation => Some(ws.clone()),
            _ => None,
        };
        let ws = match cached {
            Some(ws) => ws,
            None => match self.host_socket(record) {
                Some((ws, _)) => {
                    *self.host.borrow_mut() = Some((record.host_generation, ws.clone()));
                    ws
                }
                None => return false,
            },
        };
        ws.send_with_str(line).is_ok()
    }

    /// Closes a socket the relay is done with, marking it first so its later
    /// close event is not counted twice.
    fn close(&self, ws: &WebSocket, mut info: SocketInfo, close: Close) {
        self.forget_socket(&info);
        info.closed = true;
        let _ = ws.serialize_attachment(&info);
        let _ = ws.close(Some(close.code), Some(close.reason));
    }

    fn accept(&self, ws: &WebSocket, info: &SocketInfo) -> Result<()> {
        if info.keep_alive.is_some() {
            self.timers_dirty.set(true);
        }
        match &info.role {
            Role::Host { .. } => self.state.accept_websocket_with_tags(ws, &[HOST_TAG]),
            Role::Client { id, .. } => self.state.accept_websocket_with_tags(ws, &[CLIENT_TAG, &client_tag(*id)]),
        }
        ws.serialize_attachment(info)
    }

    // ---- connecting ----------------------------------------------------

    fn connect_host(&self, req: &Request) -> Result<Response> {
        let url = req.url()?;
        let params = match HostParams::from_query(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned()))) {
            Ok(p) => p,
            Err(e) => return text(400, &e.to_string()),
        };
        // The router always names the session; without it there is nothing to open.
        let Some(sid) = params.id.clone() else {
            return text(400, &ParamError::SessionId { in_path: false }.to_string());
        };
        let now = now();
        let existing = self.live_record(now).filter(|r| {
            if r.expired(now) {
                self.end_session(r.clone());
                false
            } else {
                true
            }
        });
        let admission = match admit_host(existing.as_ref(), params.secret.as_deref()) {
            Ok(a) => a,
            Err(HostRejection::AlreadyExists) => return text(409, http::SESSION_EXISTS),
            Err(HostRejection::NotFoundOrBadSecret) => return text(404, http::COULD_NOT_CONNECT),
        };
        let mut record = match (admission, existing) {
            (HostAdmission::TakeOver, Some(mut record)) => {
                if let Some((old, info)) = self.host_socket(&record) {
                    self.close(&old, info, CLOSE_TAKEN_OVER);
                }
                record.host_generation += 1;
                record
            }
            _ => SessionRecord::new(sid.clone(), secrets::secret(random()), params.reconnect),
        };
        record.reconnect = params.reconnect;
        record.host_away_until = None;
        let pair = WebSocketPair::new()?;
        let info = SocketInfo::new(
            Role::Host { generation: record.host_generation },
            record.next_token(),
            params.keep_alive,
            now,
            &self.settings,
        );
        self.accept(&pair.server, &info)?;
        let host = &pair.server;
        host.send_with_str(say::session(&record.id))?;
        host.send_with_str(say::secret(&record.secret))?;
        if admission == HostAdmission::TakeOver {
            for id in self.connected_ids() {
                host.send_with_str(say::connected(id))?;
            }
            for line in self.drain_queue() {
                host.send_with_str(&line)?;
            }
            record.queued_bytes = 0;
        }
        self.save(&record);
        self.stats_changed(now);
        Response::from_websocket(pair.client)
    }

    fn connect_client(&self, req: &Request) -> Result<Response> {
        let url = req.url()?;
        let params = match ClientParams::from_query(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned()))) {
            Ok(p) => p,
            Err(e) => return text(400, &e.to_string()),
        };
        let now = now();
        let Some(mut record) = self.live_record(now).filter(|r| !r.expired(now)) else {
            return text(404, http::SESSION_NOT_FOUND);
        };
        let pair = WebSocketPair::new()?;
        let connected = self.connected_ids();
        let admission = match admit_client(&record, &connected, params.uuid.as_deref(), self.settings.max_clients) {
            Ok(a) => a,
            Err(_) => {
                // Told why, then closed; never hibernated, never counted.
                pair.server.accept()?;
                pair.server.send_with_str(say::NO_SLOTS)?;
                pair.server.close(Some(CLOSE_SESSION_FULL.code), Some(CLOSE_SESSION_FULL.reason))?;
                return Response::from_websocket(pair.client);
            }
        };
        let id = admission.id;
        if admission.replaces {
            if let Some((old, info)) = self.client_socket(id) {
                self.close(&old, info, CLOSE_REPLACED);
                self.announce(&record, id, say::disconnected);
            }
        }
        if let Some(uuid) = admission.reserve {
            record.reserved.insert(uuid, id);
        }
        let info = SocketInfo::new(
            Role::Client { id, uuid: params.uuid },
            record.next_token(),
            params.keep_alive,
            now,
            &self.settings,
        );
        self.accept(&pair.server, &info)?;
        self.save(&record);
        self.announce(&record, id, say::connected);
        self.stats_changed(now);
        Response::from_websocket(pair.client)
    }

    /// Tells this session's host about one of its clients, and the master's
    /// host too (with the id translated) when this session is a slave.
    fn announce(&self, record: &SessionRecord, id: u32, event: fn(u32) -> String) {
        self.tell_host(record, &event(id));
        if let Some(master) = &record.group.master {
            self.send(
                Peer::Session(master.sid.clone()),
                SessionCall::DeliverToHost { line: event(id + master.offset), queue: false },
                Reply::PeerGone,
            );
        }
    }

    // ---- frames --------------------------------------------------------

    fn on_frame(&self, ws: &WebSocket, mut info: SocketInfo, text: &str) {
        let now = now();
        // Live buckets are kept in memory; the attachment copy only matters
        // after hibernation, and only once a bucket runs low (an idle socket's
        // bucket refills anyway), so the relay path rarely rewrites it.
        let (rate, burst) = (self.settings.rate_per_second, self.settings.rate_burst);
        let mut bucket = self.buckets.borrow().get(&info.token).copied().unwrap_or(info.bucket);
        let allowed = bucket.take(now, rate, burst);
        self.buckets.borrow_mut().insert(info.token, bucket);
        if !allowed {
            return self.refuse(ws, info, CLOSE_RATE_LIMITED);
        }
        if bucket.tokens < burst / 2.0 {
            info.bucket = bucket;
            let _ = ws.serialize_attachment(&info);
        }
        let Some(record) = self.shared_record() else { return };
        match info.role {
            Role::Host { .. } => self.on_host_frame(ws, &record, text),
            Role::Client { id, .. } => self.on_client_frame(ws, info, &record, id, text),
        }
    }

    fn on_client_frame(&self, ws: &WebSocket, info: SocketInfo, record: &SessionRecord, id: u32, text: &str) {
        let line = say::from_client(id, text);
        if !self.tell_host(record, &line) {
            // The bound counts what clients sent, not the relay's prefixes.
            if !queue_admits(record.queued_bytes, text.len()) {
                return self.refuse(ws, info, CLOSE_HOST_UNAVAILABLE);
            }
            self.enqueue(&line);
            let mut record = record.clone();
            record.queued_bytes += text.len();
            self.save(&record);
        }
        if let Some(master) = &record.group.master {
            self.send(
                Peer::Session(master.sid.clone()),
                SessionCall::DeliverToHost { line: say::from_client(id + master.offset, text), queue: true },
                Reply::PeerGone,
            );
        }
    }

    fn on_host_frame(&self, ws: &WebSocket, record: &SessionRecord, text: &str) {
        let reply = |line: &str| {
            let _ = ws.send_with_str(line);
        };
        match parse_host_frame(text) {
            HostFrame::Invalid => reply(say::INVALID),
            HostFrame::ToClient { client, message } => {
                let Some(n) = client_number(client) else { return reply(&say::unknown(client)) };
                match record.group.destination(n) {
                    Destination::Own(n) => match self.client_ws(n) {
                        Some(client_ws) => {
                            let _ = client_ws.send_with_str(message);
                        }
                        None => reply(&say::unknown(client)),
                    },
                    Destination::Slave { sid, client: id } => self.send(
                        Peer::Session(sid.to_string()),
                        SessionCall::ToClient { id, message: message.to_string() },
                        Reply::UnknownClient(client.to_string()),
                    ),
                }
            }
            HostFrame::ToLinkedHosts { message } => {
                if let Some(master) = &record.group.master {
                    self.send(
                        Peer::Session(master.sid.clone()),
                        SessionCall::Broadcast { from: record.id.clone(), message: message.to_string() },
                        Reply::PeerGone,
                    );
                }
                self.broadcast_to_slaves(record, None, message);
            }
            HostFrame::Command(command) => self.on_command(ws, record.clone(), command),
        }
    }

    fn broadcast_to_slaves(&self, record: &SessionRecord, except: Option<&str>, message: &str) {
        for slave in record.group.slaves.iter().filter(|s| Some(s.sid.as_str()) != except) {
            self.send(
                Peer::Session(slave.sid.clone()),
                SessionCall::DeliverToHost { line: say::from_client(0, message), queue: true },
                Reply::PeerGone,
            );
        }
    }

    fn on_command(&self, ws: &WebSocket, mut record: SessionRecord, command: HostCommand) {
        match command {
            HostCommand::Version => {
                let _ = ws.send_with_str(say::version(crate::VERSION));
            }
            HostCommand::Stats => self.send_matchmaker(MatchmakerCall::Stats, Reply::Stats),
            HostCommand::JoinSession(options) => {
                if record.group.master.is_some() {
                    // A session joins one master at most.
                    let _ = ws.send_with_str(say::INVALID);
                    return;
                }
                let span =
                    record.group.frozen_span.unwrap_or_else(|| self.connected_ids().last().copied().unwrap_or(0));
                record.group.frozen_span = Some(span);
                let search = Search::new(&record.id, &options, record.group.used_ranges(span));
                record.group.search = Some(options);
                self.save(&record);
                self.send_matchmaker(MatchmakerCall::Search { search }, Reply::Search);
            }
            HostCommand::CloseSession => {
                record.group.search = None;
                record.group.thaw_if_idle();
                self.save(&record);
                self.send_matchmaker(MatchmakerCall::Cancel { sid: record.id.clone() }, Reply::Ignore);
            }
            HostCommand::LeaveSession => {
                self.leave_links(&mut record);
                self.save(&record);
            }
        }
    }

    /// `/leave-session`, also run when a session ends.
    fn leave_links(&self, record: &mut SessionRecord) {
        for slave in std::mem::take(&mut record.group.slaves) {
            self.send(Peer::Session(slave.sid), SessionCall::MasterLeft { master: record.id.clone() }, Reply::Ignore);
        }
        if let Some(master) = record.group.master.take() {
            self.send(Peer::Session(master.sid), SessionCall::SlaveLeft { slave: record.id.clone() }, Reply::Ignore);
        }
        self.stop_searching(record);
        record.group.frozen_span = None;
    }

    fn stop_searching(&self, record: &mut SessionRecord) {
        if record.group.search.take().is_some() {
            self.send_matchmaker(MatchmakerCall::Cancel { sid: record.id.clone() }, Reply::Ignore);
        }
    }

    /// Closes a socket for a bad frame; the others in the session carry on.
    fn refuse(&self, ws: &WebSocket, info: SocketInfo, close: Close) {
        self.close(ws, info.clone(), close);
        self.depart(&info);
    }

    // ---- leaving -------------------------------------------------------

    /// A socket is gone: a client's host hears of it, a host's session waits.
    fn depart(&self, info: &SocketInfo) {
        self.buckets.borrow_mut().remove(&info.token);
        self.forget_socket(info);
        let Some(record) = self.record() else { return };
        let now = now();
        match info.role {
            Role::Client { id, .. } => {
                // A client replaced by its own uuid was already accounted for.
                let replaced = self.sockets(&client_tag(id)).any(|(_, other)| other.token != info.token);
                if !replaced {
                    self.announce(&record, id, say::disconnected);
                }
                self.stats_changed(now);
            }
            Role::Host { generation } if generation == record.host_generation && record.host_away_until.is_none() => {
                self.host_left(record, now);
            }
            Role::Host { .. } => {}
        }
    }

    fn host_left(&self, mut record: SessionRecord, now: f64) {
        if !record.reconnect {
            return self.end_session(record);
        }
        record.host_away_until = Some(now + self.settings.reconnect_ms);
        // A search whose host has gone must not be matched.
        self.stop_searching(&mut record);
        record.group.thaw_if_idle();
        self.save(&record);
        self.stats_changed(now);
    }

    fn end_session(&self, mut record: SessionRecord) {
        for (ws, info) in self.sockets(CLIENT_TAG) {
            self.close(&ws, info, CLOSE_SESSION_CLOSED);
        }
        self.leave_links(&mut record);
        self.send_matchmaker(
            MatchmakerCall::Report { sid: record.id.clone(), counts: SessionCounts::default() },
            Reply::Ignore,
        );
        self.erase();
    }

    // ---- calls from other objects ---------------------------------------

    async fn internal(&self, mut req: Request) -> Result<Response> {
        let call: SessionCall = match req.json().await {
            Ok(call) => call,
            Err(e) => return text(400, &format!("bad internal call: {e}")),
        };
        let Some(mut record) = self.live_record(now()) else {
            return text(GONE_STATUS, http::SESSION_NOT_FOUND);
        };
        match call {
            SessionCall::DeliverToHost { line, queue } => self.deliver(&mut record, &line, queue),
            SessionCall::ToClient { id, message } => {
                return match self.client_ws(id) {
                    Some(ws) => {
                        let _ = ws.send_with_str(&message);
                        text(200, "ok")
                    }
                    None => text(200, CLIENT_UNKNOWN),
                };
            }
            SessionCall::Broadcast { from, message } => {
                self.deliver(&mut record, &say::from_client(0, &message), true);
                self.broadcast_to_slaves(&record, Some(&from), &message);
            }
            SessionCall::LinkedAsMaster { slave, offset, span, searching } => {
                record.group.slaves.push(SlaveLink { sid: slave.clone(), offset, span });
                if !searching {
                    record.group.search = None;
                }
                self.save(&record);
                self.deliver(&mut record, &say::added_slave(&slave), true);
            }
            SessionCall::LinkedAsSlave { master, offset } => {
                record.group.master = Some(MasterLink { sid: master.clone(), offset });
                record.group.search = None;
                self.save(&record);
                self.deliver(&mut record, &say::set_master(&master), true);
            }
            SessionCall::MasterLeft { master } => {
                if record.group.master.as_ref().is_some_and(|m| m.sid == master) {
                    record.group.master = None;
                    self.stop_searching(&mut record);
                    record.group.thaw_if_idle();
                    self.save(&record);
                    self.deliver(&mut record, say::MASTER_LEFT, true);
                }
            }
            SessionCall::SlaveLeft { slave } => {
                if let Some(pos) = record.group.slaves.iter().position(|s| s.sid == slave) {
                    record.group.slaves.remove(pos);
                    self.stop_searching(&mut record);
                    record.group.thaw_if_idle();
                    self.save(&record);
                    self.deliver(&mut record, &say::slave_left(&slave), true);
                }
            }
        }
        text(200, "ok")
    }

    /// A line for the host: sent now, or kept for the take-over.
    fn deliver(&self, record: &mut SessionRecord, line: &str, queue: bool) {
        if self.tell_host(record, line) || !queue {
            return;
        }
        if queue_admits(record.queued_bytes, line.len()) {
            self.enqueue(line);
            record.queued_bytes += line.len();
            self.save(record);
        } else {
            console_error!("session {}: queue full, a linked session's line was not kept", record.id);
        }
    }

    // ---- timers --------------------------------------------------------

    fn send_keep_alives(&self, now: f64) {
        // Due within a few ms counts as due: one alarm serves sockets whose
        // periods started close together.
        for (ws, mut info) in self.state.get_websockets().into_iter().filter_map(|ws| live_info(&ws).map(|i| (ws, i))) {
            if let Some(keep_alive) = &info.keep_alive {
                if info.keep_alive_due <= now + 5.0 {
                    let _ = ws.send_with_str(keep_alive);
                    info.keep_alive_due = now + self.settings.keep_alive_ms;
                    let _ = ws.serialize_attachment(&info);
                }
            }
        }
    }

    /// Figures changed: report them soon, batched.
    fn stats_changed(&self, now: f64) {
        if let Some(mut record) = self.record() {
            if record.stats_due.is_none() {
                record.stats_due = Some(now + STATS_DELAY_MS);
                self.save(&record);
            }
        }
    }

    fn flush_stats(&self, now: f64) {
        let Some(mut record) = self.record() else { return };
        if record.stats_due.is_none_or(|due| due > now) {
            return;
        }
        let host = self.host_socket(&record).is_some();
        let counts = SessionCounts::new(host, self.connected_ids().len() as u32);
        record.stats_due = None;
        if counts != record.stats_reported {
            record.stats_reported = counts;
            self.send_matchmaker(MatchmakerCall::Report { sid: record.id.clone(), counts }, Reply::Ignore);
        }
        self.save(&record);
    }

    /// Points the one alarm at the earliest deadline.
    async fn schedule(&self) {
        if !self.timers_dirty.replace(false) && self.alarm.get().is_some() {
            return;
        }
        let wanted = self.record().and_then(|record| {
            let keep_alives = self
                .state
                .get_websockets()
                .into_iter()
                .filter_map(|ws| live_info(&ws))
                .filter(|i| i.keep_alive.is_some())
                .map(|i| Some(i.keep_alive_due));
            next_alarm([record.host_away_until, record.stats_due].into_iter().chain(keep_alives))
        });
        let storage = self.state.storage();
        let known = match self.alarm.get() {
            Some(known) => known,
            None => storage.get_alarm().await.ok().flatten().map(|t| t as f64),
        };
        if known == wanted {
            self.alarm.set(Some(wanted));
            return;
        }
        let result = match wanted {
            Some(at) => storage.set_alarm(worker::ScheduledTime::new(worker::js_sys::Date::new(&at.into()))).await,
            None => storage.delete_alarm().await,
        };
        match result {
            Ok(()) => self.alarm.set(Some(wanted)),
            Err(e) => {
                self.alarm.set(None);
                self.timers_dirty.set(true);
                console_error!("setting the alarm failed: {e}");
            }
        }
    }

    // ---- calls to other objects ------------------------------------------

    fn send(&self, to: Peer, call: SessionCall, reply: Reply) {
        self.outbox.borrow_mut().push_back(OutgoingCall { to, body: Outgoing::Session(call), reply });
    }

    fn send_matchmaker(&self, call: MatchmakerCall, reply: Reply) {
        self.outbox.borrow_mut().push_back(OutgoingCall {
            to: Peer::Matchmaker,
            body: Outgoing::Matchmaker(call),
            reply,
        });
    }

    /// Runs at the end of every event: sends queued calls in order, then
    /// sets the alarm. Only one event drains the outbox at a time; the others
    /// leave their calls to it, which keeps calls in the order they were made.
    async fn settle(&self) {
        if !self.sending.get() {
            self.sending.set(true);
            loop {
                let next = self.outbox.borrow_mut().pop_front();
                let Some(item) = next else { break };
                self.deliver_call(item).await;
            }
            self.sending.set(false);
        }
        self.schedule().await;
    }

    async fn deliver_call(&self, item: OutgoingCall) {
        let (peer_sid, stub) = match &item.to {
            Peer::Session(sid) => (Some(sid.clone()), session_stub(&self.env, sid)),
            Peer::Matchmaker => (None, matchmaker_stub(&self.env)),
        };
        let result = match (stub, &item.body) {
            (Ok(stub), Outgoing::Session(c)) => call(&stub, c).await,
            (Ok(stub), Outgoing::Matchmaker(c)) => call(&stub, c).await,
            (Err(e), _) => Err(e),
        };
        let (status, body) = match result {
            Ok(answer) => answer,
            Err(e) => {
                console_error!("call to another object failed: {e}");
                return;
            }
        };
        let Some(record) = self.record() else { return };
        match item.reply {
            Reply::Ignore => {}
            Reply::UnknownClient(digits) if status != 200 || body == CLIENT_UNKNOWN => {
                self.tell_host(&record, &say::unknown(&digits));
            }
            Reply::UnknownClient(_) => {}
            Reply::Stats if status == 200 => {
                self.tell_host(&record, &say::stats(&body));
            }
            Reply::Stats => console_error!("stats call answered {status}: {body}"),
            Reply::PeerGone if status == GONE_STATUS => {
                // The linked session ended without us hearing: unlink it.
                if let Some(sid) = peer_sid {
                    let call = match &record.group.master {
                        Some(m) if m.sid == sid => SessionCall::MasterLeft { master: sid },
                        _ => SessionCall::SlaveLeft { slave: sid },
                    };
                    let mut record = record;
                    self.apply_peer_gone(&mut record, call);
                }
            }
            Reply::PeerGone => {}
            Reply::Search if status == POOL_FULL_STATUS => {
                // Refused: the session stops searching and admits clients
                // again; its host hears `invalid`, the protocol's "not done".
                let mut record = record;
                if record.group.search.take().is_some() {
                    record.group.thaw_if_idle();
                    self.save(&record);
                    self.tell_host(&record, say::INVALID);
                }
            }
            Reply::Search => {}
        }
    }

    fn apply_peer_gone(&self, record: &mut SessionRecord, call: SessionCall) {
        match call {
            SessionCall::MasterLeft { .. } => {
                record.group.master = None;
                record.group.thaw_if_idle();
                self.save(record);
                self.deliver(record, say::MASTER_LEFT, true);
            }
            SessionCall::SlaveLeft { slave } => {
                if let Some(pos) = record.group.slaves.iter().position(|s| s.sid == slave) {
                    record.group.slaves.remove(pos);
                    record.group.thaw_if_idle();
                    self.save(record);
                    self.deliver(record, &say::slave_left(&slave), true);
                }
            }
            _ => {}
        }
    }
}

#[derive(serde::Deserialize)]
struct RecordRow {
    v: String,
}

#[derive(serde::Deserialize)]
struct QueueRow {
    line: String,
}
