//! Carries out a session core's effects: sockets by token, storage, the
//! outbox and the alarm.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use worker::js_sys::JsString;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue};
use worker::worker_sys::ext::ResponseInitExt;
use worker::worker_sys::{web_sys, DurableObjectState};
use worker::{Result, State, Storage, WebSocket, WebSocketPair};

use super::session_store::SessionStore;
use crate::glue::text;
use crate::log::emit_event;
use askutron_core::journal::{Event, Level};
use askutron_core::record::SocketInfo;
use askutron_core::session::{Answer, CallBody, CallId, Effect, Input, Peer, SessionCore, StorageFailure, Token};
use askutron_core::settings::Settings;
use askutron_core::wire::say;

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
    /// The runtime's WebSocket, for the one call web_sys lacks.
    type JsSocket;
    /// `WebSocket.send` with a JS string, which web_sys only takes as `&str`.
    #[wasm_bindgen(method, js_name = send, catch)]
    fn send(this: &JsSocket, data: &JsString) -> std::result::Result<(), JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's state object, for the one call `worker` lacks.
    type HeartbeatState;
    /// When the runtime last answered this socket's heartbeat (section 7).
    #[wasm_bindgen(method, catch, js_name = getWebSocketAutoResponseTimestamp)]
    fn get_websocket_auto_response_timestamp(
        this: &HeartbeatState,
        ws: &web_sys::WebSocket,
    ) -> std::result::Result<JsValue, JsValue>;
}

/// The last heartbeat of a socket (epoch ms), if the runtime answered one.
fn last_heartbeat(state: &DurableObjectState, ws: &web_sys::WebSocket) -> Option<f64> {
    let stamp = state.unchecked_ref::<HeartbeatState>().get_websocket_auto_response_timestamp(ws).ok()?;
    stamp.dyn_ref::<worker::js_sys::Date>().map(|d| d.get_time())
}

fn send_js(ws: &web_sys::WebSocket, data: &JsString) -> std::result::Result<(), JsValue> {
    ws.unchecked_ref::<JsSocket>().send(data)
}

/// Carries out a session core's effects: its sockets (by token), its
/// storage, its outbox and its alarm.
pub struct SessionIo {
    /// The runtime's own state object, for the one call `worker` lacks.
    raw: DurableObjectState,
    pub state: State,
    /// `ctx.storage`, asked for once (the alarm is set through it).
    pub storage: Storage,
    pub store: SessionStore,
    pub log_level: Level,
    /// The sockets the core names by token, so sending needs no lookup.
    pub sockets: RefCell<HashMap<Token, WebSocket>>,
    /// The client end of the socket the current request accepted.
    pub upgrade: RefCell<Option<WebSocket>>,
    /// `"<n>: "` as JS strings, by client id, for the relay path.
    prefixes: RefCell<Vec<Option<JsString>>>,
    /// Calls the core asked for, not yet made.
    pub calls: RefCell<Vec<(CallId, Peer, CallBody)>>,
    /// The alarm the core asked for last, not yet set.
    pub alarm: Cell<Option<Option<f64>>>,
}

impl SessionIo {
    pub fn new(state: State, raw: DurableObjectState, log_level: Level) -> Self {
        let storage = state.storage();
        SessionIo {
            raw,
            store: SessionStore::new(&storage),
            storage,
            state,
            log_level,
            sockets: RefCell::new(HashMap::new()),
            upgrade: RefCell::new(None),
            prefixes: RefCell::new(Vec::new()),
            calls: RefCell::new(Vec::new()),
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

    /// Rebuilds a core after a wake-up: what storage holds (or why it could
    /// not be read: the core then decides nothing from a guess), and every
    /// live socket.
    pub fn restore(&self, settings: Settings) -> SessionCore {
        let held = self.state.get_websockets();
        let stored = self.store.read(held.is_empty());
        if let Err(error) = &stored {
            emit_event(self.log_level, &Event::error("storage_error").with("op", "read").with("error", error.as_str()));
        }
        let mut infos = Vec::new();
        let mut sockets = self.sockets.borrow_mut();
        // Closed sockets too: the core must not hand out their tokens again.
        for ws in held {
            if let Some(mut info) = ws.deserialize_attachment::<SocketInfo>().ok().flatten() {
                if info.resume {
                    info.heartbeat = last_heartbeat(&self.raw, ws.as_ref());
                }
                if !info.closed {
                    sockets.insert(info.token, ws);
                }
                infos.push(info);
            }
        }
        SessionCore::restore(settings, stored, infos)
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

    /// True when the event left calls to make or an alarm to set.
    pub fn has_pending_work(&self) -> bool {
        self.alarm.get().is_some() || !self.calls.borrow().is_empty()
    }

    /// Carries out one batch of effects in order. What storage keeps is
    /// written once, where the batch's last `Persist` stands (it holds every
    /// change before it). Returns every storage failure, for the core.
    pub fn execute_all(
        &self,
        effects: Vec<Effect<'_>>,
        incoming: Option<&Incoming<'_>>,
        core: &RefCell<Option<SessionCore>>,
        answer: &mut Option<Answer>,
    ) -> Vec<Input<'static>> {
        let last_persist = effects.iter().rposition(|e| matches!(e, Effect::Persist));
        let mut follow_ups = Vec::new();
        for (i, effect) in effects.into_iter().enumerate() {
            if matches!(effect, Effect::Persist) && Some(i) != last_persist {
                continue;
            }
            follow_ups.extend(self.execute(effect, incoming, core, answer));
        }
        follow_ups
    }

    pub fn execute(
        &self,
        effect: Effect<'_>,
        incoming: Option<&Incoming<'_>>,
        core: &RefCell<Option<SessionCore>>,
        answer: &mut Option<Answer>,
    ) -> Option<Input<'static>> {
        let failed = |f: StorageFailure| Some(Input::StorageFailed(f));
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
                Err(e) => emit_event(self.log_level, &Event::error("accept_failed").with("error", e.to_string())),
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
            Effect::SendUncounted { to, text } => {
                if let Some(ws) = self.sockets.borrow().get(&to) {
                    let _ = ws.send_with_str(&text);
                }
            }
            Effect::Persist => {
                let core = core.borrow();
                if let Some((record, owed)) = core.as_ref().map(SessionCore::stored) {
                    return self.store.write(record, owed).err().and_then(|e| failed(StorageFailure::Persist(e)));
                }
            }
            Effect::SaveStreams(streams) => {
                for (key, stream) in streams {
                    if let Err(error) = self.store.write_stream(&key, stream.as_ref()) {
                        emit_event(
                            self.log_level,
                            &Event::error("storage_error").with("op", "stream").with("error", error),
                        );
                    }
                }
            }
            Effect::EraseQueue => {
                if let Err(error) = self.store.erase_queue() {
                    emit_event(
                        self.log_level,
                        &Event::error("storage_error").with("op", "erase queue").with("error", error),
                    );
                }
            }
            Effect::Enqueue { line, source, bytes } => {
                return self
                    .store
                    .enqueue(&line)
                    .err()
                    .and_then(|error| failed(StorageFailure::Enqueue { source, bytes, error }));
            }
            Effect::Replay { to, after, bytes, lines, notices, numbered } => {
                let queued = match self.store.read_queue(after) {
                    Ok(queued) => queued,
                    Err(error) => return failed(StorageFailure::Replay { host: to, bytes, lines, notices, error }),
                };
                if let Some(ws) = self.sockets.borrow().get(&to) {
                    for (_, line) in &queued {
                        let _ = ws.send_with_str(line);
                    }
                }
                let through = queued.last().map_or(after, |(seq, _)| *seq);
                if let Err(error) = self.store.clear_queue(through) {
                    return failed(StorageFailure::QueueNotCleared { through, error });
                }
                if numbered {
                    // A resume host: its core numbers and keeps these lines.
                    return Some(Input::Replayed {
                        host: to,
                        lines: queued.into_iter().map(|(_, line)| line).collect(),
                    });
                }
            }
            Effect::Call { id, to, body } => self.calls.borrow_mut().push((id, to, body)),
            Effect::SetAlarm(at) => self.alarm.set(Some(at)),
            Effect::Respond(a) => *answer = Some(a),
            Effect::Log(event) => emit_event(self.log_level, &event),
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
