//! What the Durable Objects share to carry out the cores' effects: the
//! session's SQLite tables, the ordered outbox of calls, the alarm, the log.
//!
//! Storage goes through the synchronous SQL API, so no other event slips in
//! between the core's decision and its record being written; the only awaits
//! are calls to other objects and the alarm, and no `RefCell` borrow is held
//! across them.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};

use futures_util::future::{select, Either};
use std::rc::Rc;

use worker::js_sys::{JsString, Promise};
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::ResponseInitExt;
use worker::worker_sys::web_sys;
use worker::{
    console_error, console_log, console_warn, Delay, Env, Result, SqlStorage, SqlStorageValue, State, WebSocket,
    WebSocketPair,
};

use crate::calls::Outcome;
use crate::calls::SessionCall;
use crate::glue::{body_text, call, matchmaker_stub, now, random, session_stub, text};
use crate::journal::{Event, Level};
use crate::matchmaking::Search;
use crate::protocol::{say, ClientParams, HostParams};
use crate::record::{SessionRecord, SocketInfo};
use crate::secrets;
use crate::session_core::{Answer, CallBody, Effect, Input, OutgoingCall, Peer, SessionCore, StorageFailure, Token};
use crate::settings::Settings;
use crate::stats::SessionCounts;
use crate::url_parts;

// ---- log -------------------------------------------------------------------------

/// Writes one event as one JSON line, for `wrangler tail` and Workers Logs.
pub fn emit(min: Level, event: &Event) {
    if crate::log::enabled(min, event.severity) {
        let line = event.to_json();
        match event.severity {
            Level::Debug | Level::Info => console_log!("{line}"),
            Level::Warn => console_warn!("{line}"),
            Level::Error => console_error!("{line}"),
        }
    }
}

// ---- the session's tables ----------------------------------------------------------

/// A session's storage: its record (one row) and the queue for an absent host.
pub struct SessionStore {
    sql: SqlStorage,
    /// The tables exist (created at most once per incarnation).
    tables: Cell<bool>,
}

#[derive(serde::Deserialize)]
struct RecordRow {
    v: String,
}

#[derive(serde::Deserialize)]
struct QueueRow {
    line: String,
}

impl SessionStore {
    pub fn new(state: &State) -> Self {
        SessionStore { sql: state.storage().sql(), tables: Cell::new(false) }
    }

    /// The stored record, if the session exists. A session that never existed
    /// has no table, and reading must not create one: ids probed by clients
    /// leave no storage behind.
    pub fn read_record(&self) -> std::result::Result<Option<SessionRecord>, String> {
        let rows = match self.sql.exec("SELECT v FROM relay_session WHERE k = 'record'", None) {
            Ok(cursor) => cursor.to_array::<RecordRow>().map_err(|e| e.to_string())?,
            // The table is made with the session's first record.
            Err(e) if e.to_string().contains("no such table") => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        self.tables.set(true);
        match rows.into_iter().next() {
            Some(row) => SessionRecord::from_json(&row.v).map(Some).map_err(|e| format!("unreadable record: {e}")),
            None => Ok(None),
        }
    }

    pub fn write_record(&self, record: &SessionRecord) -> std::result::Result<(), String> {
        let sql = &self.sql;
        if !self.tables.get() {
            sql.exec(
                "CREATE TABLE IF NOT EXISTS relay_session (k TEXT PRIMARY KEY, v TEXT NOT NULL); \
                 CREATE TABLE IF NOT EXISTS relay_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
                None,
            )
            .map_err(|e| e.to_string())?;
            self.tables.set(true);
        }
        sql.exec(
            "INSERT OR REPLACE INTO relay_session (k, v) VALUES ('record', ?)",
            vec![SqlStorageValue::from(record.to_json())],
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    pub fn enqueue(&self, line: &str) -> Result<(), String> {
        self.sql
            .exec("INSERT INTO relay_queue (line) VALUES (?)", vec![SqlStorageValue::from(line.to_string())])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The queue in order. Nothing is deleted here: see `clear_queue`.
    pub fn read_queue(&self) -> Result<Vec<String>, String> {
        self.sql
            .exec("SELECT line FROM relay_queue ORDER BY seq", None)
            .and_then(|c| c.to_array::<QueueRow>())
            .map(|rows| rows.into_iter().map(|r| r.line).collect())
            .map_err(|e| e.to_string())
    }

    pub fn clear_queue(&self) -> Result<(), String> {
        self.sql.exec("DELETE FROM relay_queue", None).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Forgets the session entirely: the id is free again.
    pub fn erase(&self) -> std::result::Result<(), String> {
        self.tables.set(false);
        self.sql
            .exec("DROP TABLE IF EXISTS relay_queue", None)
            .and_then(|_| self.sql.exec("DROP TABLE IF EXISTS relay_session", None))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

// ---- calls -------------------------------------------------------------------------

/// Calls to other objects, sent one at a time in the order they were made.
/// The event that finds the outbox idle drains it; the others leave their
/// calls to it. A retry goes first, so a link's calls stay in order.
#[derive(Default)]
pub struct Outbox {
    calls: RefCell<VecDeque<OutgoingCall>>,
    draining: Cell<bool>,
}

impl Outbox {
    pub fn push(&self, call: OutgoingCall) {
        if call.retry_at.is_some() {
            self.calls.borrow_mut().push_front(call);
        } else {
            self.calls.borrow_mut().push_back(call);
        }
    }

    /// True when calls wait and no event is draining them yet.
    pub fn has_calls(&self) -> bool {
        !self.draining.get() && !self.calls.borrow().is_empty()
    }

    /// Claims the outbox for draining; false if another event drains it.
    pub fn claim(&self) -> bool {
        !self.draining.replace(true)
    }

    pub fn release(&self) {
        self.draining.set(false);
    }

    pub fn next(&self) -> Option<OutgoingCall> {
        self.calls.borrow_mut().pop_front()
    }
}

/// Sends one call and waits for its answer.
pub async fn send(env: &Env, outgoing: &OutgoingCall) -> Outcome {
    if let Some(at) = outgoing.retry_at {
        let wait = (at - worker::js_sys::Date::now()).max(0.0) as u64;
        if wait > 0 {
            Delay::from(std::time::Duration::from_millis(wait)).await;
        }
    }
    let stub = match &outgoing.to {
        Peer::Session(sid) => session_stub(env, sid),
        Peer::Matchmaker => matchmaker_stub(env),
    };
    let result = match (stub, &outgoing.body) {
        (Ok(stub), CallBody::Session(c)) => call(stub, c).await,
        (Ok(stub), CallBody::Matchmaker(c)) => call(stub, c).await,
        (Err(e), _) => Err(e),
    };
    match result {
        Ok((status, body)) => Outcome::Status(status, body),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

// ---- the alarm -------------------------------------------------------------------

/// Sets (or deletes) the object's one alarm.
pub async fn set_alarm(state: &State, at: Option<f64>) -> Result<(), String> {
    let storage = state.storage();
    let result = match at {
        Some(at) => storage.set_alarm(worker::ScheduledTime::new(worker::js_sys::Date::new(&at.into()))).await,
        None => storage.delete_alarm().await,
    };
    result.map_err(|e| e.to_string())
}

/// What a request to a Session object is.
pub enum SessionRequest {
    /// A call from another object; its JSON body is still to be read.
    Call,
    Connect(Input<'static>),
}

/// Reads a request to a Session object, as the runtime hands it over (no
/// `worker::Request`, which would read `request.cf`); a bad one gets its
/// refusal.
pub fn session_request(req: &web_sys::Request) -> std::result::Result<SessionRequest, web_sys::Response> {
    let url = req.url();
    let (path, query) = url_parts::split(&url);
    if req.method() == "POST" && path == "/internal" {
        return Ok(SessionRequest::Call);
    }
    let query = url_parts::pairs(query);
    let input = if path == "/session" {
        HostParams::from_query(query)
            .map(|params| Input::HostConnect { params, fresh_secret: secrets::secret(random()) })
    } else {
        ClientParams::from_query(query).map(|params| Input::ClientConnect { params })
    };
    input.map(SessionRequest::Connect).map_err(|e| text(400, &e.to_string()))
}

/// A call's JSON body as the session input it carries.
pub async fn session_call(req: &web_sys::Request) -> std::result::Result<Input<'static>, web_sys::Response> {
    let body = body_text(req.text()).await.map_err(|_| text(400, "bad internal call: unreadable body"))?;
    serde_json::from_str::<SessionCall>(&body)
        .map(Input::Call)
        .map_err(|e| text(400, &format!("bad internal call: {e}")))
}

/// The text frame being handled: the runtime's JS string and the copy the
/// core read. Text the core takes from the frame is sent as a slice of the JS
/// string, so a relayed message is never copied back out of wasm memory.
pub struct Incoming<'t> {
    pub js: &'t JsString,
    pub text: &'t str,
}

impl Incoming<'_> {
    /// `part` as a JS string, if it is a suffix of the frame.
    fn suffix(&self, part: &str) -> Option<JsString> {
        let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
        let (base, base_end) = (self.text.as_ptr() as usize, self.text.as_ptr() as usize + self.text.len());
        if start < base || end != base_end {
            return None;
        }
        // The offset in UTF-16 units: the prefix before it is short (`<n>: `).
        let skipped = self.text[..start - base].encode_utf16().count() as u32;
        Some(self.js.slice(skipped, self.js.length()))
    }

    fn is(&self, part: &str) -> bool {
        part.as_ptr() == self.text.as_ptr() && part.len() == self.text.len()
    }
}

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, for a plain GET to another host (the Steam API).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str) -> Promise;
    /// The runtime's WebSocket, for the one call web_sys lacks.
    type JsSocket;
    /// `WebSocket.send` with a JS string, which web_sys only takes as `&str`.
    #[wasm_bindgen(method, js_name = send, catch)]
    fn send(this: &JsSocket, data: &JsString) -> std::result::Result<(), JsValue>;
}

fn send_js(ws: &web_sys::WebSocket, data: &JsString) -> std::result::Result<(), JsValue> {
    ws.unchecked_ref::<JsSocket>().send(data)
}

// ---- the session's sockets and storage ---------------------------------------------

/// Carries out a session core's effects: its sockets (by token), its
/// storage, its outbox and its alarm.
pub struct SessionIo {
    pub state: State,
    pub store: SessionStore,
    pub log_level: Level,
    /// The sockets the core names by token, so sending needs no lookup.
    pub sockets: RefCell<HashMap<Token, WebSocket>>,
    /// The client end of the socket the current request accepted.
    pub upgrade: RefCell<Option<WebSocket>>,
    /// `"<n>: "` as JS strings, by client id, for the relay path.
    prefixes: RefCell<Vec<Option<JsString>>>,
    pub outbox: Outbox,
    /// The alarm the core asked for last, not yet set.
    pub alarm: Cell<Option<Option<f64>>>,
}

impl SessionIo {
    pub fn new(state: State, log_level: Level) -> Self {
        SessionIo {
            store: SessionStore::new(&state),
            state,
            log_level,
            sockets: RefCell::new(HashMap::new()),
            upgrade: RefCell::new(None),
            prefixes: RefCell::new(Vec::new()),
            outbox: Outbox::default(),
            alarm: Cell::new(None),
        }
    }

    /// The HTTP response for the core's answer: the accepted socket's client
    /// end, or a plain-text status.
    pub fn respond(&self, answer: Option<Answer>) -> web_sys::Response {
        match answer {
            Some(Answer::Upgrade { .. }) => match self.upgrade.borrow_mut().take() {
                Some(client) => {
                    let mut init = web_sys::ResponseInit::new();
                    init.set_status(101);
                    let _ = init.websocket(client.as_ref());
                    web_sys::Response::new_with_opt_str_and_init(None, &init)
                        .expect("an upgrade can always be answered")
                }
                None => text(500, "the socket was not accepted"),
            },
            Some(Answer::Text { status, body }) => text(status, &body),
            None => text(500, "no answer"),
        }
    }

    /// The socket's token: from the sockets this incarnation knows, else from
    /// its attachment. `None` for a socket the relay already closed.
    pub fn token_of(&self, ws: &WebSocket) -> Option<Token> {
        if let Some((&token, _)) = self.sockets.borrow().iter().find(|(_, known)| *known == ws) {
            return Some(token);
        }
        let info = ws.deserialize_attachment::<SocketInfo>().ok().flatten().filter(|i| !i.closed)?;
        self.sockets.borrow_mut().insert(info.token, ws.clone());
        Some(info.token)
    }

    /// Rebuilds a core after a wake-up: the stored record, and every live socket.
    pub fn restore(&self, settings: Settings) -> SessionCore {
        let record = match self.store.read_record() {
            Ok(record) => record,
            Err(error) => {
                emit(self.log_level, &Event::error("storage_error").with("op", "read record").with("error", error));
                None
            }
        };
        let mut infos = Vec::new();
        let mut sockets = self.sockets.borrow_mut();
        // Closed sockets too: the core must not hand out their tokens again.
        for ws in self.state.get_websockets() {
            if let Some(info) = ws.deserialize_attachment::<SocketInfo>().ok().flatten() {
                if !info.closed {
                    sockets.insert(info.token, ws);
                }
                infos.push(info);
            }
        }
        SessionCore::restore(settings, record, infos)
    }

    /// `"<n>: "` as a JS string.
    fn prefix(&self, client: u32) -> JsString {
        let mut prefixes = self.prefixes.borrow_mut();
        let i = client as usize;
        if prefixes.len() <= i {
            prefixes.resize(i + 1, None);
        }
        prefixes[i].get_or_insert_with(|| JsString::from(format!("{client}: "))).clone()
    }

    /// True when the event left calls to send or an alarm to set.
    pub fn has_pending_work(&self) -> bool {
        self.alarm.get().is_some() || self.outbox.has_calls()
    }

    /// Carries out one batch of effects in order. The record is written once,
    /// where the batch's last `Persist` stands (it holds every change before
    /// it). Returns the first storage failure, for the core.
    pub fn execute_all(
        &self,
        effects: Vec<Effect<'_>>,
        incoming: Option<&Incoming<'_>>,
        core: &RefCell<Option<SessionCore>>,
        answer: &mut Option<Answer>,
    ) -> Option<StorageFailure> {
        let last_persist = effects.iter().rposition(|e| matches!(e, Effect::Persist));
        let mut failure = None;
        for (i, effect) in effects.into_iter().enumerate() {
            if matches!(effect, Effect::Persist) && Some(i) != last_persist {
                continue;
            }
            if let Some(f) = self.execute(effect, incoming, core, answer) {
                failure.get_or_insert(f);
            }
        }
        failure
    }

    pub fn execute(
        &self,
        effect: Effect<'_>,
        incoming: Option<&Incoming<'_>>,
        core: &RefCell<Option<SessionCore>>,
        answer: &mut Option<Answer>,
    ) -> Option<StorageFailure> {
        match effect {
            Effect::Send { to, text } => {
                if let Some(ws) = self.sockets.borrow().get(&to) {
                    let from_frame = match (&text, incoming) {
                        (Cow::Borrowed(part), Some(incoming)) => incoming.suffix(part),
                        _ => None,
                    };
                    let _ = match from_frame {
                        Some(js) => send_js(ws.as_ref(), &js).map_err(|_| ()),
                        None => ws.send_with_str(&text).map_err(|_| ()),
                    };
                }
            }
            Effect::SendFromClient { to, client, message } => {
                if let Some(ws) = self.sockets.borrow().get(&to) {
                    let _ = match incoming.filter(|i| i.is(message)) {
                        Some(incoming) => {
                            send_js(ws.as_ref(), &self.prefix(client).concat(incoming.js)).map_err(|_| ())
                        }
                        None => ws.send_with_str(say::from_client(client, message)).map_err(|_| ()),
                    };
                }
            }
            Effect::Accept { socket, info } => match self.accept(socket, info.as_ref()) {
                Ok(()) => {}
                Err(e) => emit(self.log_level, &Event::error("accept_failed").with("error", e.to_string())),
            },
            Effect::Close { to, close } => {
                if let Some(ws) = self.sockets.borrow_mut().remove(&to) {
                    let _ = ws.close(Some(close.code), Some(close.reason));
                }
            }
            Effect::Attach { socket, info } => {
                if let Some(ws) = self.sockets.borrow().get(&socket) {
                    let _ = ws.serialize_attachment(&info);
                }
            }
            Effect::Persist => {
                let core = core.borrow();
                if let Some(record) = core.as_ref().and_then(SessionCore::record) {
                    return self.store.write_record(record).err().map(StorageFailure::Persist);
                }
            }
            Effect::Erase => return self.store.erase().err().map(StorageFailure::Persist),
            Effect::Enqueue { line, sender, bytes } => {
                return self.store.enqueue(&line).err().map(|error| StorageFailure::Enqueue { sender, bytes, error });
            }
            Effect::Replay { to, bytes, lines } => {
                let replayed = self.store.read_queue().and_then(|queued| {
                    if let Some(ws) = self.sockets.borrow().get(&to) {
                        for line in &queued {
                            let _ = ws.send_with_str(line);
                        }
                    }
                    self.store.clear_queue()
                });
                return replayed.err().map(|error| StorageFailure::Replay { host: to, bytes, lines, error });
            }
            Effect::Call(call) => self.outbox.push(call),
            Effect::SetAlarm(at) => self.alarm.set(Some(at)),
            Effect::Respond(a) => *answer = Some(a),
            Effect::Log(event) => emit(self.log_level, &event),
        }
        None
    }

    pub fn accept(&self, socket: Token, info: Option<&SocketInfo>) -> Result<()> {
        let pair = WebSocketPair::new()?;
        match info {
            Some(info) => {
                let tag = if info.is_host() { "host" } else { "client" };
                self.state.accept_websocket_with_tags(&pair.server, &[tag]);
                pair.server.serialize_attachment(info)?;
            }
            None => pair.server.accept()?,
        }
        self.sockets.borrow_mut().insert(socket, pair.server);
        *self.upgrade.borrow_mut() = Some(pair.client);
        Ok(())
    }
}

// ---- the Session object's runtime ------------------------------------------------

/// A Session object's runtime side: its core (rebuilt after a wake-up) and
/// what carries out the core's effects.
pub struct SessionRuntime {
    env: Env,
    settings: Settings,
    /// `None` until rebuilt in this incarnation.
    core: RefCell<Option<SessionCore>>,
    pub io: SessionIo,
}

impl SessionRuntime {
    pub fn new(state: State, env: Env) -> Self {
        let settings = crate::glue::settings(&env);
        let io = SessionIo::new(state, settings.log_level);
        SessionRuntime { env, settings, core: RefCell::new(None), io }
    }

    pub fn token_of(&self, ws: &WebSocket) -> Option<Token> {
        self.ensure_core();
        self.io.token_of(ws)
    }

    fn ensure_core(&self) {
        if self.core.borrow().is_none() {
            let core = self.io.restore(self.settings);
            *self.core.borrow_mut() = Some(core);
        }
    }

    pub fn step(&self, input: Input<'_>) -> Option<Answer> {
        self.step_with(input, None)
    }

    /// Feeds one input to the core and carries out its effects; a storage
    /// failure goes back to the core as an input of its own. `incoming`: the
    /// text frame the relayed text is cut from.
    pub fn step_with(&self, input: Input<'_>, incoming: Option<&Incoming<'_>>) -> Option<Answer> {
        self.ensure_core();
        let mut answer = None;
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let effects = self.core.borrow_mut().as_mut().expect("ensured").handle(now(), input);
            next = self.io.execute_all(effects, incoming, &self.core, &mut answer).map(Input::StorageFailed);
        }
        answer
    }

    /// `value` when the event is complete, else a promise of it after `settle`.
    pub fn settle_then(self: &Rc<Self>, value: JsValue) -> JsValue {
        if !self.io.has_pending_work() {
            return value;
        }
        let inner = self.clone();
        let promise: Promise = future_to_promise(async move {
            inner.settle().await;
            Ok(value)
        });
        promise.into()
    }

    /// Sends the queued calls in order (each answer goes back to the core),
    /// then sets the alarm.
    pub async fn settle(&self) {
        if self.io.outbox.claim() {
            while let Some(call) = self.io.outbox.next() {
                let outcome = send(&self.env, &call).await;
                self.step(Input::Answer { call, outcome });
            }
            self.io.outbox.release();
        }
        // A failed alarm goes back to the core, which asks for it again: a
        // few tries, so a passing storage fault cannot leave a session
        // without its deadlines.
        for _ in 0..3 {
            let Some(at) = self.io.alarm.take() else { break };
            match set_alarm(&self.io.state, at).await {
                Ok(()) => break,
                Err(error) => {
                    self.step(Input::StorageFailed(StorageFailure::Alarm(error)));
                }
            }
        }
    }
}

// ---- the Matchmaker's tables ---------------------------------------------------------

const MATCHMAKER_SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS searches (sid TEXT PRIMARY KEY, search TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stats (sid TEXT PRIMARY KEY, hosts INTEGER, clients INTEGER, players INTEGER)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)",
];

/// The Matchmaker's storage: one row per search, per reporting session, and
/// the arrival counter.
pub struct MatchmakerStore {
    sql: SqlStorage,
    log_level: Level,
}

/// What the Matchmaker reads back after a wake-up.
pub struct MatchmakerState {
    pub searches: Vec<Search>,
    pub next_seq: u64,
    pub stats: Vec<(String, SessionCounts)>,
}

impl MatchmakerStore {
    pub fn new(state: &State, log_level: Level) -> Self {
        MatchmakerStore { sql: state.storage().sql(), log_level }
    }

    pub fn delete_search(&self, sid: String) {
        self.exec("DELETE FROM searches WHERE sid = ?", vec![sid.into()]);
    }

    pub fn save_seq(&self, seq: u64) {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('next_seq', ?)", vec![SqlStorageValue::from(seq as i64)]);
    }

    pub fn exec(&self, query: &str, bindings: Vec<SqlStorageValue>) {
        if let Err(e) = self.sql.exec(query, Some(bindings)) {
            emit(self.log_level, &Event::error("storage_error").with("op", "matchmaker").with("error", e.to_string()));
        }
    }

    pub fn save_search(&self, search: &Search) {
        let json = serde_json::to_string(search).expect("a search serialises");
        self.exec(
            "INSERT OR REPLACE INTO searches (sid, search) VALUES (?, ?)",
            vec![search.sid.clone().into(), json.into()],
        );
    }

    pub fn save_stats(&self, sid: String, counts: SessionCounts) {
        if counts.is_zero() {
            return self.exec("DELETE FROM stats WHERE sid = ?", vec![sid.into()]);
        }
        let n = |x: u32| SqlStorageValue::from(x as i64);
        self.exec(
            "INSERT OR REPLACE INTO stats (sid, hosts, clients, players) VALUES (?, ?, ?, ?)",
            vec![sid.into(), n(counts.hosts), n(counts.clients), n(counts.players)],
        );
    }

    /// The rows a query reads; a storage error is logged, not hidden.
    fn rows<T: serde::de::DeserializeOwned>(&self, query: &str) -> Vec<T> {
        self.sql.exec(query, None).and_then(|c| c.to_array::<T>()).unwrap_or_else(|e| {
            emit(
                self.log_level,
                &Event::error("storage_error").with("op", "matchmaker read").with("error", e.to_string()),
            );
            Vec::new()
        })
    }

    /// Reads the pool and the figures back after a wake-up.
    pub fn load(&self) -> MatchmakerState {
        let sql = &self.sql;
        for ddl in MATCHMAKER_SCHEMA {
            if let Err(e) = sql.exec(ddl, None) {
                emit(self.log_level, &Event::error("storage_error").with("op", "schema").with("error", e.to_string()));
            }
        }
        #[derive(serde::Deserialize)]
        struct SearchRow {
            search: String,
        }
        #[derive(serde::Deserialize)]
        struct SeqRow {
            v: i64,
        }
        #[derive(serde::Deserialize)]
        struct StatsRow {
            sid: String,
            hosts: i64,
            clients: i64,
            players: i64,
        }
        let searches = self
            .rows::<SearchRow>("SELECT search FROM searches")
            .into_iter()
            .filter_map(|row| match serde_json::from_str::<Search>(&row.search) {
                Ok(search) => Some(search),
                Err(e) => {
                    let event =
                        Event::error("storage_error").with("op", "unreadable search").with("error", e.to_string());
                    emit(self.log_level, &event);
                    None
                }
            })
            .collect();
        let next_seq = self.rows::<SeqRow>("SELECT v FROM meta WHERE k = 'next_seq'").first().map_or(0, |r| r.v as u64);
        let stats = self
            .rows::<StatsRow>("SELECT sid, hosts, clients, players FROM stats")
            .into_iter()
            .map(|r| {
                let counts =
                    SessionCounts { hosts: r.hosts as u32, clients: r.clients as u32, players: r.players as u32 };
                (r.sid, counts)
            })
            .collect();
        MatchmakerState { searches, next_seq, stats }
    }
}

// ---- Steam -------------------------------------------------------------------------

/// A slow Steam API never holds a search longer than this.
const STEAM_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_STEAM_API_BASE: &str = "https://api.steampowered.com";

/// The Steam Web API key (a secret, or a plain variable in tests), if set.
pub fn steam_key(env: &Env) -> Option<String> {
    let key = env.secret("STEAM_API_KEY").map(|s| s.to_string());
    let key = key.or_else(|_| env.var("STEAM_API_KEY").map(|v| v.to_string()));
    key.ok().filter(|k| !k.is_empty())
}

/// The Steam ids of the searching host's friends, or why not.
pub async fn friends_of(env: &Env, search: &Search) -> std::result::Result<HashSet<String>, String> {
    let key = steam_key(env).ok_or("no Steam key")?;
    let steam_id = search.steam_user_id.as_deref().unwrap_or_default();
    let base = env.var("STEAM_API_BASE").map(|v| v.to_string());
    let base = base.unwrap_or_else(|_| DEFAULT_STEAM_API_BASE.to_string());
    let url = format!(
        "{}/ISteamUser/GetFriendList/v0001/?key={}&steamid={}&relationship=friend&format=json",
        base.trim_end_matches('/'),
        key,
        steam_id
    );
    let request = Box::pin(async move {
        let response: web_sys::Response =
            JsFuture::from(global_fetch(&url)).await.map_err(|e| format!("{e:?}"))?.unchecked_into();
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        body_text(response.text()).await.map_err(|e| format!("{e:?}"))
    });
    let timeout = Delay::from(std::time::Duration::from_millis(STEAM_TIMEOUT_MS));
    let body = match select(request, timeout).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err(format!("no answer within {STEAM_TIMEOUT_MS} ms")),
    };
    crate::matchmaking::parse_friend_list(&body).map_err(|e| e.to_string())
}
